"""What one image of a technique costs, as the scheduler's cost model sees it
(:mod:`cnnvis_tasks.workflow.costs` turns it into a job's ``mem_mb`` and ``runtime``).

Each technique's description carries one :class:`Cost`; the cost model itself names no
technique.  Imports neither torch nor click."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


def once(_options: Mapping[str, Any], _pixels: int) -> float:
    return 1.0


@dataclass(frozen=True)
class Cost:
    """``activation``: the memory of one batch over a plain forward's (a gradient method keeps
    every layer's output for its backward: 6-6.5 times, measured); ``work``: forwards'
    worth of computation per image and pass (a forward and a backward: about 3);
    ``copies``: its batches are filled with copies of each image (noisy, masked, along a
    path), so they are full however few images a job has; ``passes(options, pixels)``:
    how many times it does that work per image, from its options (steps, samples, masked
    copies) with their defaults filled in."""

    activation: float = 6.5
    work: float = 3.0
    copies: bool = False
    passes: Callable[[Mapping[str, Any], int], float] = once


GRADIENT = Cost()  # a forward and a backward (saliency, the CAMs)
FORWARD = Cost(activation=1.0, work=1.0)  # a forward that keeps nothing (predictions, feature maps)
WEIGHTS_ONLY = Cost(activation=0.0, work=0.0)  # reads the weights, runs no image (kernels)


def option_passes(*names: str, unset: float = 1.0) -> Callable[[Mapping[str, Any], int], float]:
    """``passes`` as the product of the options ``names`` (steps, samples, octaves); an
    option without a value (its default depends on another option) counts ``unset``."""

    def passes(options: Mapping[str, Any], _pixels: int) -> float:
        values = (options.get(name) for name in names)
        return float(math.prod(unset if value is None else max(float(value), 1.0) for value in values))

    return passes
