"""The Python verb: every technique called the same way, the function behind its command.

    import cnnvis_tasks as cv

    result = cv.compute("grad-cam", my_module, "images/chelsea.png", target="tabby", classes=names)
    result = cv.compute("grad-cam", "resnet50", images, target=[281, None], layer="layer4")
    result.maps, result.targets, result.probabilities, result.layer
    overlay = result.picture(0, "overlay")             # an H x W x 3 uint8 array
    cv.save_picture(result, 0, "out/cat.png", "overlay")

``model`` is any classifier ``nn.Module`` (:func:`wrap_model`), a model name
(:func:`load_model`) or a loaded model.  Techniques without images take their
items instead: ``target=`` for class-viz, ``filter=[...]`` for filter-viz,
``layer=``/``parameter=`` for kernels.  ``docs/python.md`` has the whole story.
"""

from __future__ import annotations

import difflib
import numbers
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import CnnvisError
from .technique import SILENT, SIZED_BY_MODEL, Report, Result, Technique
from .techniques import get_technique

if TYPE_CHECKING:
    import torch
    from PIL import Image
    from torch import nn

    from .models import LoadedModel

    ImageLike = torch.Tensor | Image.Image | str | Path

# cnnvis_tasks.models.IMAGENET_MEAN / _STD (a test checks): that module imports torch.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TOP1 = "top1"
# compute's own keywords, offered with the technique's options when a keyword is misspelt.
_OWN_KEYWORDS = ("target", "layer", "mean", "std", "classes", "input_size", "seed", "report")


# --- models ------------------------------------------------------------------------------


def wrap_model(
    module: nn.Module,
    *,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    classes: Sequence[str] | None = None,
    name: str | None = None,
    input_size: int | None = None,
    device: str | torch.device | None = None,
) -> LoadedModel:
    """Any classifier as a model :func:`compute` takes.

    ``module`` takes images normalised with ``mean``/``std`` (ImageNet's by default)
    and returns class scores (N, classes): a tensor, or an object with ``.logits``
    (Hugging Face), or a tuple or list whose first element is the scores.  ``classes``:
    the class names, in index order (targets by name, captions).  ``input_size``: the
    one square side the module takes (images given as paths are centre-cropped to it,
    tensors are checked).  ``device``: move the module there (in place); by default it
    stays where its parameters are.

    Nothing is copied: the model is a view of the module that shares its parameters and
    submodules, so its layers are the module's own objects under their own paths, and
    the module itself keeps its class, hooks and output.  The module is switched to
    eval mode (``module.eval()``, and left so); :func:`compute` switches its
    parameters' ``requires_grad`` off for the call only.
    """
    import torch
    from torch import nn

    from .layers import model_device
    from .models import LoadedModel

    if not isinstance(module, nn.Module):
        raise CnnvisError(f"wrap_model takes a torch.nn.Module, got a {type(module).__name__}")
    mean, std = _three("mean", mean), _three("std", std)
    if any(value <= 0 for value in std):
        raise CnnvisError(f"std must be positive, got {std}")
    if classes is not None:
        if isinstance(classes, str) or not all(isinstance(c, str) for c in classes):
            raise CnnvisError("classes: give a list of class names (strings), in class-index order")
        classes = list(classes)
    if input_size is not None and (not isinstance(input_size, int) or isinstance(input_size, bool) or input_size < 1):
        raise CnnvisError(f"input_size must be a positive int (the side of square inputs), got {input_size!r}")
    if device is not None:
        module.to(torch.device(device))
    module.eval()
    scripted = isinstance(module, torch.jit.ScriptModule)  # compiled: no class to view, no layers to hook
    return LoadedModel(
        name=name or type(module).__name__,
        module=module if scripted else _logits_only(module),
        mean=mean,
        std=std,
        categories=classes,
        weights="as given",
        device=model_device(module),
        input_side=input_size,
        has_module_tree=not scripted,
    )


def _three(what: str, values: Any) -> tuple[float, float, float]:
    try:
        numbers_ = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        numbers_ = ()
    if len(numbers_) != 3:
        raise CnnvisError(f"{what} must be three numbers (one per RGB channel), got a {type(values).__name__}")
    return numbers_  # type: ignore[return-value]


def _logits_only(module: nn.Module) -> nn.Module:
    """A view of ``module`` whose forward returns its class-score tensor
    (:func:`~cnnvis_tasks.mechanisms.logits.logits_only`).

    The view is a shallow copy: it shares the module's parameters, buffers and
    submodules (no memory; the same layer paths and module objects) and has hook
    tables of its own, so the caller's module keeps its class, its hooks and its
    output."""
    import copy

    from .mechanisms.logits import logits_only

    view = copy.copy(module)
    for key, value in vars(module).items():
        if "hooks" in key and isinstance(value, dict):
            object.__setattr__(view, key, type(value)(value))
    return logits_only(view)


def _model(model: Any, keywords: dict[str, Any]) -> LoadedModel:
    """A loaded model from what :func:`compute` was given."""
    from torch import nn

    from .models import LoadedModel

    given = {name: value for name, value in keywords.items() if value is not None}
    if isinstance(model, nn.Module):
        return wrap_model(model, **given)
    if isinstance(model, str):
        return load_model(model, **given)
    if isinstance(model, LoadedModel):
        if given:
            listed = ", ".join(f"{name}=" for name in given)
            raise CnnvisError(f"{listed}: a loaded model has its own; give them to load_model or wrap_model")
        return model
    raise CnnvisError(
        f"model: give an nn.Module, a model name or a loaded model (load_model, wrap_model), "
        f"not a {type(model).__name__}"
    )


# --- images ------------------------------------------------------------------------------


def _rgb(item: Any) -> Image.Image:
    """A path read as the commands read it (EXIF orientation applied), or a PIL image as RGB."""
    from PIL import Image

    from .images import _to_rgb, open_rgb

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

    from .images import center_crop, resize_shorter_side, to_tensor

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
    centre, ``side`` x ``side`` (:func:`cnnvis_tasks.images.fit_square`)."""
    import torch

    from .images import fit_square, to_tensor

    return torch.stack([to_tensor(fit_square(_rgb(path), side)) for path in paths])


def _pixels(images: Any, model: LoadedModel, size: int | None) -> torch.Tensor:
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


# --- targets and options -----------------------------------------------------------------


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
            from .labels import resolve_label

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


def _targets(technique: Technique, model: LoadedModel, target: Any, count: int) -> list[int | None] | None:
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


def _layer_path(layer: Any, model: LoadedModel) -> Any:
    """A module object as its path in the model; a path (or a list) as given."""
    from torch import nn

    if isinstance(layer, (list, tuple)):
        return [_layer_path(item, model) for item in layer]
    if not isinstance(layer, nn.Module):
        return layer
    if layer is model.module or layer._modules is model.module._modules:  # the module _logits_only views
        raise CnnvisError("layer: that is the whole model; give a layer inside it (layer=model.layer4)")
    for path, module in model.module.named_modules():
        if module is layer:
            return path
    raise CnnvisError(f"layer: the {type(layer).__name__} given is not a module of {model.name}")


def _unknown_keyword(technique: Technique, names: Sequence[str]) -> CnnvisError:
    """A misspelt keyword's one-line error: close matches and the technique's options."""
    if "targets" in names:
        return CnnvisError("targets= is spelt target=: the class to explain, once for all images or one per image")
    known = [option.name for option in technique.options]
    close = difflib.get_close_matches(names[0], [*known, *_OWN_KEYWORDS], n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(dict.fromkeys(close))}?" if close else ""
    return CnnvisError(f"{technique.name} has no option {', '.join(names)}{hint} (its options: {', '.join(known)})")


def _options(technique: Technique, given: dict[str, Any]) -> dict[str, Any]:
    known = {option.name: option for option in technique.options}
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise _unknown_keyword(technique, unknown)
    options = technique.defaults()
    for name in SIZED_BY_MODEL:  # not given: the model decides (a ViT takes its own size only)
        if name in options and name not in given:
            options[name] = None
    for name, value in given.items():
        option = known[name]
        try:
            if isinstance(value, (list, tuple)) and option.per_row:
                options[name] = [option.parse(v) for v in value]
            elif isinstance(value, (list, tuple)):
                raise CnnvisError(
                    f"{technique.name}: give one {name} per call (a list is for options that vary per row)"
                )
            else:
                options[name] = option.parse(value)
        except ValueError as error:
            raise CnnvisError(f"{technique.name}: {name}: {error}") from None
        if option.choices and options[name] is not None:
            wrong = [v for v in (value if isinstance(value, (list, tuple)) else [value]) if v not in option.choices]
            if wrong:
                close = difflib.get_close_matches(str(wrong[0]), option.choices, n=1, cutoff=0.6)
                hint = f"; did you mean {close[0]}?" if close else ""
                raise CnnvisError(
                    f"{technique.name}: {name} {wrong[0]!r} is not one of {', '.join(option.choices)}{hint}"
                )
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


# --- the verb ----------------------------------------------------------------------------


def compute(
    technique: str | Technique,
    model: nn.Module | LoadedModel | str,
    images: ImageLike | Sequence[ImageLike] | None = None,
    target: int | str | Sequence[int | str | None] | None = TOP1,
    layer: nn.Module | str | None = None,
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    classes: Sequence[str] | None = None,
    input_size: int | None = None,
    seed: int = 0,
    report: Report = SILENT,
    **options: Any,
) -> Result:
    """Run ``technique`` on one batch and return its :class:`~cnnvis_tasks.technique.Result`.

    ``model``: an ``nn.Module`` (with ``mean``, ``std``, ``classes``, ``input_size``
    as in :func:`wrap_model`), a model name (:func:`load_model`, default weights; the
    same keywords apply) or a loaded model.  ``images``: a tensor (N, 3, H, W) or (3, H, W) in [0, 1], a PIL
    image, a path, or a list of them (paths and PIL images are resized as the
    commands do: shorter side ``size``, 224 by default); None for techniques
    without images.  ``target``: the class to explain: ``"top1"`` (each image's
    prediction), a class index, a class name, or a list with one per image (None
    entries: top-1); for class-viz, the classes to visualise.  ``layer``: a module
    of the model or its path (``"layer4.1"``).  Other keywords are the technique's
    options, as on its command line (``cnnvis-tasks NAME --help``), with their
    defaults; a keyword it does not know is an error."""
    technique = get_technique(technique)
    unknown = sorted(set(options) - {option.name for option in technique.options})
    if unknown:  # before a model is loaded
        raise _unknown_keyword(technique, unknown)
    model = _model(model, {"mean": mean, "std": std, "classes": classes, "input_size": input_size})
    if layer is not None:
        options["layer"] = _layer_path(layer, model)
    chosen = _options(technique, options)
    if not model.has_module_tree:
        from .model_spec import needs_module_tree

        why = needs_module_tree(technique, chosen)
        if why:
            raise CnnvisError(f"{technique.name} cannot run on a TorchScript model ({model.name}): {why}")
    side = model.input_size
    if technique.reads_images:
        if images is None:
            raise CnnvisError(f"{technique.name} needs images")
        images = _pixels(images, model, chosen.get("size"))
    elif images is not None:
        raise CnnvisError(f"{technique.name} takes no images")
    else:
        import warnings

        from .images import synthesis_size_note

        note = synthesis_size_note(model.name, side, chosen.get("width"), chosen.get("height"))
        if note:
            warnings.warn(note, stacklevel=2)
    targets = _targets(technique, model, target, 0 if images is None else images.shape[0])
    if any(option.name == "target" and option.per_image for option in technique.options):
        chosen["target"] = targets
    from .mechanisms.ascent import _frozen  # the parameters' own flags back after the call

    with _frozen(model.module):
        result = technique.compute(model, images, targets, seed=seed, report=report, **chosen)
    result.options = chosen
    return result


def save_picture(result: Result, row: int, path: str | Path, rendering: str | None = None) -> Path:
    """Write one picture of row ``row`` of ``result`` (:meth:`Result.picture`) as a PNG at
    ``path`` (folders made as needed), its facts in a text chunk as the commands write
    them (:func:`cnnvis_tasks.outputs.read_metadata`).  Returns the path."""
    from .outputs import save_png

    technique = get_technique(result.technique)
    names = [r.name for r in technique.renderings]
    if rendering is not None and rendering not in names:
        raise CnnvisError(f"{technique.name} has no rendering {rendering!r}; its renderings: {', '.join(names)}")
    if not 0 <= row < len(result):
        raise CnnvisError(f"row {row} out of range: the result has rows 0..{len(result) - 1}")
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise CnnvisError(f"save_picture writes PNG files: give a path ending in .png, not {path.name!r}")
    picture = result.picture(row, rendering)
    record = {"technique": technique.name, "rendering": rendering or names[0], **result.to_host().record(row)}
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_png(path, picture, record)


def load_model(
    name: str = "efficientnet_lite0", weights: str = "default", device: str = "cpu", seed: int = 0, **options: Any
) -> LoadedModel:
    """A model ready for :func:`compute` by name (``resnet50``, ``timm:convnext_atto``, ...);
    see :func:`cnnvis_tasks.models.load_model` for ``weights`` and the other options."""
    from .models import load_model as load

    return load(name, weights, device, seed, **options)
