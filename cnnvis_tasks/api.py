"""The Python verb: every technique called the same way, the function behind its command.

    import cnnvis_tasks as cv

    model = cv.load_model("efficientnet_lite0")
    images = cv.load_images(["images/chelsea.png", "images/coffee.png"], crop=True)
    result = cv.compute("grad-cam", model, images, targets=[281, None])
    result.maps, result.targets, result.probabilities, result.layer
    overlay = result.picture(0, "overlay")            # an H x W x 3 uint8 array

Techniques without images take their items instead: ``targets`` for class-viz,
``filter=[...]`` for filter-viz, ``layer=``/``parameter=`` for kernels.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import CnnvisError
from .technique import SILENT, SIZED_BY_MODEL, Report, Result, Technique
from .techniques import get_technique

if TYPE_CHECKING:
    import torch

    from .models import LoadedModel


def load_images(paths: Sequence[str | Path], size: int = 224, *, crop: bool = False) -> torch.Tensor:
    """Images as one (N, 3, H, W) batch in [0, 1], shorter side ``size`` (0: as they are);
    ``crop``: the central ``size`` x ``size`` square of each, so that any images share a batch."""
    import torch

    from .images import center_crop, open_rgb, resize_shorter_side, to_tensor

    tensors = []
    for path in paths:
        image = resize_shorter_side(open_rgb(path), size)
        tensors.append(to_tensor(center_crop(image, size) if crop and size else image))
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) > 1:
        raise CnnvisError(
            f"images of different sizes {sorted(shapes)} cannot share a batch; "
            "give crop=True, or compute them one at a time"
        )
    return torch.stack(tensors)


def _fitted(paths: Sequence[str | Path], side: int) -> torch.Tensor:
    """Images for a model of fixed input size, as the commands read them: each one's
    centre, ``side`` x ``side`` (:func:`cnnvis_tasks.images.fit_square`)."""
    import torch

    from .images import load_image

    return torch.stack([load_image(path, crop=side) for path in paths])


def _options(technique: Technique, given: dict[str, Any]) -> dict[str, Any]:
    known = {option.name: option for option in technique.options}
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise CnnvisError(f"{technique.name} has no option {', '.join(unknown)}; its options: {', '.join(known)}")
    options = technique.defaults()
    for name in SIZED_BY_MODEL:  # not given: the model decides (a ViT takes its own size only)
        if name in options and name not in given:
            options[name] = None
    for name, value in given.items():
        option = known[name]
        if isinstance(value, (list, tuple)) and option.per_row:
            options[name] = [option.parse(v) for v in value]
        elif isinstance(value, (list, tuple)):
            raise CnnvisError(f"{technique.name}: give one {name} per call (a list is for options that vary per row)")
        else:
            options[name] = option.parse(value)
        problem = option.check(value) if option.check and value is not None else None
        if problem:
            raise CnnvisError(f"{technique.name}: {name}: {problem}")
    missing = [
        name
        for name, option in known.items()
        if option.required and options.get(name) is None and name != technique.item
    ]
    if missing:
        raise CnnvisError(f"{technique.name} needs {', '.join(f'{name}=...' for name in missing)}")
    return options


def compute(
    technique: str | Technique,
    model: LoadedModel | str,
    images: torch.Tensor | Sequence[str | Path] | None = None,
    targets: Sequence[int | None] | torch.Tensor | None = None,
    *,
    seed: int = 0,
    report: Report = SILENT,
    **options: Any,
) -> Result:
    """Run ``technique`` on one batch and return its :class:`~cnnvis_tasks.technique.Result`.

    ``model``: a :func:`load_model` result or a model name (loaded with its
    default weights, on the CPU).  ``images``: (N, 3, H, W) pixels in [0, 1] or
    image paths (read at ``size``); techniques without images take None.
    ``targets``: a class index per image, None for each image's top-1 class
    (also as an entry); for class-viz, the classes to visualise.  Other
    keywords are the technique's options, as on its command line
    (``cnnvis-tasks NAME --help``), with their defaults."""
    technique = get_technique(technique)
    if isinstance(model, str):
        from .models import load_model

        model = load_model(model)
    chosen = _options(technique, options)
    if technique.reads_images:
        if images is None:
            raise CnnvisError(f"{technique.name} needs images")
        side = model.input_size
        if not hasattr(images, "shape"):
            size = chosen.get("size")
            images = _fitted(list(images), side) if side else load_images(list(images), 224 if size is None else size)
        elif side and tuple(images.shape[-2:]) != (side, side):
            raise CnnvisError(
                f"{model.name} takes {side} x {side} inputs only, got {images.shape[-1]} x {images.shape[-2]}: "
                f"load them with load_images(paths, {side}, crop=True)"
            )
        images = images.to(model.device)
    elif images is not None:
        raise CnnvisError(f"{technique.name} takes no images")
    else:
        from .images import synthesis_size_note

        note = synthesis_size_note(model.name, model.input_size, chosen.get("width"), chosen.get("height"))
        if note:
            warnings.warn(note, stacklevel=2)
    if technique.item == "target" and targets is None:
        raise CnnvisError(f"{technique.name} needs targets: the classes to visualise")
    result = technique.compute(model, images, targets, seed=seed, report=report, **chosen)
    result.options = chosen
    return result


def load_model(name: str = "efficientnet_lite0", weights: str = "default", device: str = "cpu", seed: int = 0):
    """A model ready for :func:`compute` (see :func:`cnnvis_tasks.models.load_model`)."""
    from .models import load_model as load

    return load(name, weights, device, seed)
