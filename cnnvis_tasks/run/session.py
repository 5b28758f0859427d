"""What a pass runs with (:class:`Session`: the model, its device, the seed) and how its images are sized."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cnnvis_tasks.technique import SIZE

if TYPE_CHECKING:
    import torch

    from cnnvis_tasks.models.loading import LoadedModel


@dataclass
class Session:
    """What a technique runs with: the model (loaded once per process), its device, the random seed."""

    model: LoadedModel
    device: torch.device
    seed: int = 0
    quiet: bool = False
    io_workers: int = 0  # threads that decode, render and write beside the compute (0: none, serial)


def input_crop(model: LoadedModel, size: int | None, warn: Callable[[str], None]) -> int | None:
    """The square side images are cropped to for ``model`` (None: any size runs, they
    are resized to shorter side ``size``); warns once when that is not what ``size`` asks
    (``size`` None: the user asked for none, the default stood)."""
    from cnnvis_tasks.io.images import fixed_size_note

    side = model.input_size
    note = fixed_size_note(model.name, side, size) if side else None
    if note:
        warn(note)
    return side


def decoding_size(size: int | None) -> int:
    """The shorter side images are resized to: ``size``, or the default when none was given."""
    return SIZE.default if size is None else size
