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
``layer=``/``parameter=`` for kernels.  A method computed inside another (the
metrics' ``explain=``, SmoothGrad's ``method=``) is a :class:`Method`, or its text::

    cv.compute("metrics", net, images, explain=[Method("grad-cam", layer="layer4"), "saliency --method guided"])
    cv.compute("smooth-grad", net, images, method=Method("integrated-gradients", steps=16))

Every keyword's value passes its option's own parser (:meth:`Option.parse`), as on
the command line and in the config.  ``docs/python.md`` has the whole story.
"""

from __future__ import annotations

import difflib
import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnvis_tasks.api.inputs import batch_pixels, class_targets, load_images
from cnnvis_tasks.errors import CnnvisError
from cnnvis_tasks.technique import SILENT, SIZED_BY_MODEL, Report, Result, Technique
from cnnvis_tasks.technique.method import Method
from cnnvis_tasks.techniques import get_technique

if TYPE_CHECKING:
    import torch
    from PIL import Image
    from torch import nn

    from cnnvis_tasks.models.loading import LoadedModel

    ImageLike = torch.Tensor | Image.Image | str | Path

# cnnvis_tasks.models.sources.IMAGENET_MEAN / _STD (a test checks): that module imports torch.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TOP1 = "top1"
__all__ = ["Method", "compute", "load_images", "load_model", "save_picture", "wrap_model"]
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

    from cnnvis_tasks.models.layers import model_device
    from cnnvis_tasks.models.loading import LoadedModel

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

    from cnnvis_tasks.mechanisms.logits import logits_only

    view = copy.copy(module)
    for key, value in vars(module).items():
        if "hooks" in key and isinstance(value, dict):
            object.__setattr__(view, key, type(value)(value))
    return logits_only(view)


def _model(model: Any, keywords: dict[str, Any]) -> LoadedModel:
    """A loaded model from what :func:`compute` was given."""
    from torch import nn

    from cnnvis_tasks.models.loading import LoadedModel

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


# --- options -----------------------------------------------------------------------------


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
        several = isinstance(value, (list, tuple))
        if several and not (option.per_row or option.repeatable):
            raise CnnvisError(f"{technique.name}: give one {name} per call (a list is for options that take several)")
        try:  # the option's own parser: the command line's and the config's
            options[name] = [option.parse(v) for v in value] if several else option.parse(value)
        except ValueError as error:
            raise CnnvisError(f"{technique.name}: {name}: {error}") from None
    missing = [
        name
        for name, option in known.items()
        if option.required and options.get(name) is None and name != technique.item
    ]
    if missing:
        raise CnnvisError(f"{technique.name} needs {', '.join(f'{name}=...' for name in missing)}")
    return options


def _settings(technique: Technique, chosen: dict[str, Any]) -> list[dict[str, Any]]:
    """One call's settings: each combination of the values of the repeatable options given
    a list (``explain=[...]``, ``layer=[...]``), as the command's rows; [{}] for none."""
    spread = {
        name: value
        for name, value in chosen.items()
        if isinstance(value, list) and technique.option(name).repeatable and not technique.option(name).per_row
    }
    return [dict(zip(spread, values)) for values in itertools.product(*spread.values())]


def _joined(results: list[Result], spread: list[str]) -> Result:
    """The results of a call's settings as one, setting after setting: their facts that
    differ go with each row (``row_facts``); maps of different shapes cannot be joined."""
    import torch

    first = results[0]
    shapes = {tuple(result.maps.shape[1:]) for result in results}
    if len(shapes) > 1:
        given = " and ".join(f"{name}=" for name in spread)
        raise CnnvisError(f"{first.technique}: the maps of the {given} values differ in shape {sorted(shapes)}")

    def cat(name: str) -> Any:
        values = [getattr(result, name) for result in results]
        return None if any(value is None for value in values) else torch.cat(values)

    same = {key: value for key, value in first.facts.items() if all(r.facts.get(key) == value for r in results)}
    rows = [
        {**{k: v for k, v in result.facts.items() if k not in same}, **(result.row_facts or [{}] * len(result))[row]}
        for result in results
        for row in range(len(result))
    ]
    numbers = {
        key: torch.cat([r.row_numbers.get(key, torch.full((len(r),), float("nan"))) for r in results])
        for key in dict.fromkeys(key for r in results for key in r.row_numbers)
    }
    layers = {result.layer for result in results}
    return Result(
        first.technique,
        maps=torch.cat([result.maps for result in results]),
        targets=cat("targets"),
        probabilities=cat("probabilities"),
        layer=first.layer if len(layers) == 1 else None,
        inputs=cat("inputs"),
        display=cat("display"),
        facts=same,
        row_facts=rows if any(rows) else None,
        row_numbers=numbers,
    )


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
    settings = _settings(technique, chosen)
    if not model.has_module_tree:
        from cnnvis_tasks.models.spec import needs_module_tree

        for setting in settings:
            why = needs_module_tree(technique, chosen | setting)
            if why:
                raise CnnvisError(f"{technique.name} cannot run on a TorchScript model ({model.name}): {why}")
    side = model.input_size
    if technique.reads_images:
        if images is None:
            raise CnnvisError(f"{technique.name} needs images")
        images = batch_pixels(images, model, chosen.get("size"))
    elif images is not None:
        raise CnnvisError(f"{technique.name} takes no images")
    else:
        import warnings

        from cnnvis_tasks.io.images import synthesis_size_note

        note = synthesis_size_note(model.name, side, chosen.get("width"), chosen.get("height"))
        if note:
            warnings.warn(note, stacklevel=2)
    targets = class_targets(technique, model, target, 0 if images is None else images.shape[0])
    if any(option.name == "target" and option.per_image for option in technique.options):
        chosen["target"] = targets
    from cnnvis_tasks.mechanisms.ascent import _frozen  # the parameters' own flags back after the call

    with _frozen(model.module):
        results = [
            technique.compute(model, images, targets, seed=seed, report=report, **(chosen | setting))
            for setting in settings
        ]
    result = results[0] if len(results) == 1 else _joined(results, sorted(settings[0]))
    result.options = chosen
    if technique.renderings:  # a technique that reduces a data set draws no picture per image
        result.render, result.first_rendering = technique.render, technique.renderings[0].name
    return result


def save_picture(result: Result, row: int, path: str | Path, rendering: str | None = None) -> Path:
    """Write one picture of row ``row`` of ``result`` (:meth:`Result.picture`) as a PNG at
    ``path`` (folders made as needed), its facts in a text chunk as the commands write
    them (:func:`cnnvis_tasks.io.outputs.read_metadata`).  Returns the path."""
    from cnnvis_tasks.io.outputs import save_png

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
    see :func:`cnnvis_tasks.models.loading.load_model` for ``weights`` and the other options."""
    from cnnvis_tasks.models.loading import load_model as load

    return load(name, weights, device, seed, **options)
