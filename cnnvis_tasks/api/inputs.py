"""What the Python verb takes besides the model: images as one batch of pixels, targets as class indices.

Paths and PIL images are read as the commands read them (EXIF orientation applied,
resized on the shorter side, or a model of fixed input size's central square);
tensors are checked (shape, dtype, range) and taken as they are.  Every mistake is
one :class:`~cnnvis_tasks.errors.CnnvisError` line.  Imports torch only when called.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnvis_tasks.errors import CnnvisError
from cnnvis_tasks.technique import Technique

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from cnnvis_tasks.models.loading import LoadedModel


# --- images ------------------------------------------------------------------------------


def _rgb(item: Any) -> Image.Image:
    """A path read as the commands read it (EXIF orientation applied), or a PIL image as RGB."""
    from PIL import Image

    from cnnvis_tasks.io.images import _to_rgb, open_rgb

    if isinstance(item, Image.Image):
        return _to_rgb(item)
    if isinstance(item, (str, Path)):
        return open_rgb(item)
    raise CnnvisError(f"images: expected paths or PIL images, got a {type(item).__name__}")


def load_images(paths: Sequence[str | Path | Image.Image], size: int = 224, *, crop: bool = False) -> torch.Tensor:
    """Images (paths or PIL images) as one (N, 3, H, W) batch in [0, 1], shorter side
    ``size`` (0: as they are); ``crop``: the central ``size`` x ``size`` square of each,
    so that any images share a batch."""
    import torch

    from cnnvis_tasks.io.images import center_crop, resize_shorter_side, to_tensor

    tensors = []
    for path in paths:
        image = resize_shorter_side(_rgb(path), size)
        tensors.append(to_tensor(center_crop(image, size) if crop and size else image))
    if not tensors:
        raise CnnvisError("no images given")
    shapes = {tuple(t.shape[1:]) for t in tensors}
    if len(shapes) > 1:
        sizes = ", ".join(f"{w} x {h}" for h, w in sorted(shapes))
        raise CnnvisError(
            f"images of different sizes ({sizes}) cannot share a batch: load them with "
            "load_images(paths, crop=True) (their central squares), or compute them one at a time"
        )
    return torch.stack(tensors)


def _fitted(paths: Sequence[str | Path | Image.Image], side: int) -> torch.Tensor:
    """Images for a model of fixed input size, as the commands read them: each one's
    centre, ``side`` x ``side`` (:func:`cnnvis_tasks.io.images.fit_square`)."""
    import torch

    from cnnvis_tasks.io.images import fit_square, to_tensor

    return torch.stack([to_tensor(fit_square(_rgb(path), side)) for path in paths])


def batch_pixels(images: Any, model: LoadedModel, size: int | None) -> torch.Tensor:
    """``images`` as an (N, 3, H, W) float batch in [0, 1] on the model's device."""
    import torch
    from PIL import Image

    side = model.input_size
    if isinstance(images, (str, Path, Image.Image)):
        images = [images]
    if isinstance(images, Sequence) and images and all(isinstance(item, torch.Tensor) for item in images):
        images = [item[None] if item.dim() == 3 else item for item in images]
        if len({tuple(item.shape[1:]) for item in images}) > 1:
            raise CnnvisError("images: tensors of different sizes cannot share a batch")
        images = torch.cat(images)
    if not isinstance(images, torch.Tensor):
        if not isinstance(images, Sequence) or isinstance(images, (bytes, bytearray)):
            raise CnnvisError(
                "images: expected a tensor (N, 3, H, W) or (3, H, W) in [0, 1], a PIL image, a path, "
                f"or a list of them, not a {type(images).__name__}"
            )
        if not images:
            raise CnnvisError("no images given")
        images = _fitted(list(images), side) if side else load_images(list(images), 224 if size is None else size)
        return images.to(model.device)
    if images.dim() == 3:
        images = images[None]
    if images.dim() != 4 or images.shape[1] != 3 or images.shape[0] == 0:
        raise CnnvisError(f"images: expected a tensor of shape (N, 3, H, W) or (3, H, W), got {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        images = images.float() / 255
    elif not images.dtype.is_floating_point:
        raise CnnvisError(f"images: expected float pixels in [0, 1] (or uint8), got dtype {images.dtype}")
    low, high = images.aminmax()
    if not (float(low) >= 0 and float(high) <= 1):  # NaN fails too
        raise CnnvisError(
            f"images: pixels must lie in [0, 1], these span {float(low):.3g}..{float(high):.3g} "
            "(give them unnormalised: the model's mean and std are applied for you)"
        )
    if side and tuple(images.shape[-2:]) != (side, side):
        raise CnnvisError(
            f"{model.name} takes {side} x {side} inputs only, got {images.shape[-1]} x {images.shape[-2]}: "
            f"load them with load_images(paths, {side}, crop=True)"
        )
    return images.to(model.device)


# --- targets -----------------------------------------------------------------------------


def _class_index(value: Any, model: LoadedModel) -> int | None:
    """One target: None for the top-1 class, else a class index."""
    import numpy as np
    import torch

    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, np.generic):  # a NumPy scalar: the Python number
        value = value.item()
    if value is None or (isinstance(value, str) and value.strip().lower() in ("top1", "top-1")):
        return None
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, str)):
        raise CnnvisError(f"target: give a class index (int), a class name or 'top1', not a {type(value).__name__}")
    if isinstance(value, str):
        if value.strip().lower() == "label":
            raise CnnvisError(
                "target='label' reads each image's label from an image list (commands and workflow); "
                "in Python give the class itself: an index or a name"
            )
        if model.categories:
            from cnnvis_tasks.models.labels import resolve_label

            return resolve_label(value, model.categories, model.name)
        if not value.strip().isdigit():
            raise CnnvisError(f"target {value!r}: {model.name} has no class names (give classes=[...] with the module)")
        value = int(value)
    index = int(value)
    if index < 0:
        raise CnnvisError(f"target: class index must be >= 0, got {index}")
    if model.categories and index >= len(model.categories):
        raise CnnvisError(
            f"target: class index {index} out of range: {model.name} has classes 0..{len(model.categories) - 1}"
        )
    return index


def _as_list(target: Any) -> list[Any] | None:
    """The entries of a list, tuple, array or 1-d tensor of targets; None for a single target."""
    import numpy as np
    import torch

    if isinstance(target, (torch.Tensor, np.ndarray)):
        return target.reshape(-1).tolist() if target.ndim > 0 else None
    if isinstance(target, (list, tuple)):
        return list(target)
    return None


def class_targets(technique: Technique, model: LoadedModel, target: Any, count: int) -> list[int | None] | None:
    """The class of each image (None: its top-1), or for class-viz the classes to visualise."""
    given = _as_list(target)
    if technique.item == "target":
        if given is None:
            given = [target]
        classes = [_class_index(value, model) for value in given]
        if not classes or None in classes:
            raise CnnvisError(f"{technique.name} needs target=: the classes to visualise (an index, a name, or a list)")
        return classes
    if not any(option.name == "target" for option in technique.options):
        if given is None and _class_index(target, model) is None:
            return None
        raise CnnvisError(f"{technique.name} takes no target=: its maps do not depend on a class")
    if given is None:
        return None if (index := _class_index(target, model)) is None else [index] * count
    if len(given) != count:
        raise CnnvisError(f"got {len(given)} targets for {count} images: give one for all images, or one per image")
    classes = [_class_index(value, model) for value in given]
    return None if all(index is None for index in classes) else classes
