"""What the input-space attributions share (saliency, Gradient x Input, Integrated
Gradients, SmoothGrad): a 3 x H x W map per image rendered in color and gray, the
backward rule through ReLUs, and the clean forward that fixes the target classes."""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnvis_tasks.technique import CHOICE, Option, Rendered, Rendering, Result

METHODS = ("vanilla", "guided", "deconv")
RENDERINGS = (
    Rendering("color", "the gradient min-max normalised over all channels, as RGB"),
    Rendering("gray", "max |gradient| over channels, clipped at its 99th percentile"),
)
ATTRIBUTION_RENDERINGS = (
    Rendering("color", "the attribution min-max normalised over all channels, as RGB"),
    Rendering("gray", "max |attribution| over channels, clipped at its 99th percentile"),
)
RAW = "Raw {what} per image (.npy, 3 x H x W float32, w.r.t. the normalised input)."


def method_option(default: tuple[str, ...] = ("vanilla",)) -> Option:
    """A repeatable ``--method``: the backward rule through every ReLU."""
    return Option(
        "method",
        CHOICE,
        "vanilla",
        "How gradients pass back through ReLUs: the plain gradient, guided backpropagation, or deconvnet.",
        choices=METHODS,
        repeatable=True,
        config_default=list(default),
    )


def render_map(values: Any, renderings: tuple[str, ...], what: str) -> Rendered:
    """A 3 x H x W map as color (min-max over all channels) and gray (max |value|
    over channels, clipped at its 99th percentile) pictures."""
    from cnnvis_tasks import render as draw

    pictures, degenerate = {}, False
    for rendering in renderings:
        draw_one = draw.gradient_color if rendering == "color" else draw.gradient_gray
        picture, degenerate = draw_one(values)
        pictures[rendering] = (picture, {})
    warnings = []
    if degenerate or not np.abs(draw.as_array(values)).max() > 0:  # NumPy: renders on writer threads
        warnings.append(f"the {what} is all zero; rendered black")
    return Rendered(pictures, warnings)


def renderer(noun: str):
    """The ``render`` of a technique whose rows are 3 x H x W maps, named in warnings
    by the row's method and ``noun`` ("guided Gradient x Input")."""

    def render(result: Result, row: int, renderings: tuple[str, ...], options: dict[str, Any]) -> Rendered:
        return render_map(result.maps[row], renderings, f"{result.facts['method']} {noun}")

    return render


def clean_pass(model, x, targets):
    """The forward of the unchanged images: (target classes, their logits (N,), probabilities (N,))."""
    import torch

    from cnnvis_tasks.mechanisms.targets import request_targets, target_indices, target_probabilities

    wanted = request_targets(targets, x.shape[0], x.device)
    with torch.inference_mode():
        logits = model(x)
    chosen = target_indices(wanted, logits, x.shape[0])
    scores = logits.gather(1, chosen[:, None])[:, 0].float()
    # clones: plain tensors, usable outside inference mode
    return chosen.clone(), scores.clone(), target_probabilities(logits, chosen).clone()
