"""Building an architecture from each source a model can come from: torchvision (and
the embedded EfficientNet-Lite0), timm, a Hugging Face folder, the user's own function.

Each builder gives a :class:`Built`: the module, before any checkpoint's weights, with
what its source says about its preprocessing and classes and where its classifier's
weight is (a checkpoint's rows size the head).  torchvision (whose import takes
seconds) is imported only where a torchvision model needs it, never for the embedded
model.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnvis_tasks.errors import CnnvisError
from cnnvis_tasks.models.imagenet import IMAGENET_CATEGORIES
from cnnvis_tasks.models.spec import EMBEDDED, HF, MODULE, TIMM, TORCHVISION, ModelSpec, import_from_working_directory
from cnnvis_tasks.models.standard_weights import check_model_name, default_weights

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The original TF-Lite EfficientNet-Lite models take (x - 127) / 128 on 0..255 pixels.
LITE_MEAN = (0.5, 0.5, 0.5)
LITE_STD = (0.5, 0.5, 0.5)
# Arguments torchvision's builders set themselves when given pretrained weights.
PRETRAINED_BUILDER_KWARGS = {
    "inception_v3": {"transform_input": True, "aux_logits": True, "init_weights": False},
    "googlenet": {"transform_input": True, "aux_logits": True, "init_weights": False},
}


@dataclass
class Built:
    """An architecture as its source builds it, before weights: the module and what the
    source says about its preprocessing and classes."""

    module: nn.Module
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    classes: list[str] | None = None
    input_size: int | None = None
    preprocessing: dict[str, Any] = field(default_factory=dict)
    head_key: str | None = None  # the classifier's weight in the state dict: a checkpoint's rows size it


def build_torchvision(spec: ModelSpec, pretrained: bool, num_classes: int | None) -> Built:
    name = spec.target
    check_model_name(name)
    if spec.source == EMBEDDED:
        from efficientnet_lite_pytorch import EfficientNet

        extra = {"num_classes": num_classes} if num_classes and num_classes != 1000 else {}
        module = EfficientNet.from_name("efficientnet-lite0", **extra, **spec.arch_args)
        classes = list(IMAGENET_CATEGORIES) if pretrained else None
        return Built(module, LITE_MEAN, LITE_STD, classes, head_key="_fc.weight")
    import torchvision

    kwargs = dict(spec.arch_args)
    meta = default_weights(name).meta if pretrained else None
    if pretrained:
        kwargs = {**PRETRAINED_BUILDER_KWARGS.get(name, {}), **kwargs, "num_classes": len(meta["categories"])}
        if name.startswith("vit_"):  # as torchvision's builder: the size its weights were made at
            kwargs["image_size"] = meta["min_size"][0]
    if num_classes:
        kwargs["num_classes"] = num_classes
    module = torchvision.models.get_model(name, weights=None, **kwargs)
    transforms = default_weights(name).transforms()
    preprocessing = {"resize": transforms.resize_size[0], "crop": transforms.crop_size[0]}
    preprocessing["interpolation"] = str(transforms.interpolation.value)
    return Built(
        module,
        tuple(transforms.mean),
        tuple(transforms.std),
        list(meta["categories"]) if meta else None,
        preprocessing=preprocessing,
        head_key=_torchvision_head_key(name, json.dumps(kwargs, sort_keys=True, default=str)),
    )


@functools.cache
def _torchvision_head_key(name: str, kwargs: str) -> str | None:
    """The classifier's weight of torchvision's ``name``: the first tensor whose rows change
    with ``num_classes`` (a Linear, or SqueezeNet's 1x1 convolution), found on the meta device."""
    import torchvision

    built = {}
    for classes in (1000, 1001):
        arguments = {**json.loads(kwargs), "num_classes": classes}
        module = on_meta(lambda: torchvision.models.get_model(name, weights=None, **arguments))  # noqa: B023
        built[classes] = {key: tuple(value.shape) for key, value in module.state_dict().items()}
    changed = [
        key for key, shape in built[1000].items() if shape[:1] == (1000,) and built[1001].get(key, shape)[:1] == (1001,)
    ]
    weights = [key for key in changed if len(built[1000][key]) >= 2]
    return weights[-1] if weights else None


def _timm(spec: ModelSpec, pretrained: bool, num_classes: int | None) -> Built:
    try:
        import timm
    except ImportError:
        raise CnnvisError(f"model {spec.arch}: timm is not installed (pip install timm)") from None
    if not timm.is_model(spec.target):
        import difflib

        close = difflib.get_close_matches(spec.target, timm.list_models(), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join('timm:' + c for c in close)}?" if close else ""
        raise CnnvisError(
            f"unknown timm model {spec.target!r}{hint} (list them: python -c 'import timm; print(timm.list_models())')"
        )
    kwargs = dict(spec.arch_args)
    if num_classes:
        kwargs["num_classes"] = num_classes
    if pretrained and os.environ.get("CNNVIS_OFFLINE"):
        _hub_offline()
    try:
        module = timm.create_model(spec.target, pretrained=pretrained, **kwargs)
    except Exception as error:  # the hub client's errors have many types
        if not pretrained:
            raise CnnvisError(f"timm could not build {spec.target}: {str(error).splitlines()[0]}") from None
        raise CnnvisError(
            f"timm:{spec.target} with weights: default needs timm's pretrained weights, which are not in the "
            f"Hugging Face cache here and cannot be downloaded ({type(error).__name__}); give a weights file "
            "(weights: path/to/checkpoint) or weights: random"
        ) from None
    cfg = dict(getattr(module, "pretrained_cfg", {}) or {})
    side = cfg.get("input_size", (3, 224, 224))[-1]
    classes = list(IMAGENET_CATEGORIES) if pretrained and getattr(module, "num_classes", None) == 1000 else None
    preprocessing = {k: cfg[k] for k in ("interpolation", "crop_pct", "crop_mode") if k in cfg}
    preprocessing["input_size"] = side
    head = cfg.get("classifier")
    head = head[0] if isinstance(head, (tuple, list)) and head else head  # distilled: (head, head_dist)
    head_key = f"{head}.weight" if isinstance(head, str) else _last_linear_key(module)
    return Built(
        module,
        tuple(cfg.get("mean", IMAGENET_MEAN)),
        tuple(cfg.get("std", IMAGENET_STD)),
        classes,
        input_size=side if cfg.get("fixed_input_size") else None,
        preprocessing=preprocessing,
        head_key=head_key,
    )


def _hub_offline() -> None:
    """The Hugging Face hub client answers from its cache alone (CNNVIS_OFFLINE): without
    this it retries every download for about a minute before it gives up."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        from huggingface_hub import constants

        constants.HF_HUB_OFFLINE = True
    except (ImportError, AttributeError):
        pass


def _hf_folder(spec: ModelSpec) -> Path:
    folder = Path(spec.target).expanduser()
    if not (folder / "config.json").is_file():
        raise CnnvisError(
            f"model {spec.arch}: {folder} is not a transformers model folder (no config.json); "
            "save one with model.save_pretrained(FOLDER) and image_processor.save_pretrained(FOLDER)"
        )
    return folder


def build_hf(spec: ModelSpec, from_folder: bool, num_classes: int | None) -> Built:
    try:
        import transformers
    except ImportError:
        raise CnnvisError(
            f"model {spec.arch}: transformers is not installed (pip install 'cnnvis-tasks[hf]')"
        ) from None
    from cnnvis_tasks.mechanisms.logits import logits_only

    folder = _hf_folder(spec)
    try:
        config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True)
        if num_classes and num_classes != config.num_labels:
            config.num_labels = num_classes
        if from_folder:
            module = transformers.AutoModelForImageClassification.from_pretrained(folder, local_files_only=True)
        else:
            module = transformers.AutoModelForImageClassification.from_config(config)
    except (OSError, ValueError, KeyError) as error:
        raise CnnvisError(f"cannot load {spec.arch}: {str(error).splitlines()[0]}") from None
    labels = getattr(module.config, "id2label", None) or {}
    classes = [str(labels[i]) for i in sorted(labels)] if labels else None
    if classes and all(name == f"LABEL_{i}" for i, name in enumerate(classes)):
        classes = None  # transformers' placeholder names: no names at all
    mean, std, preprocessing = IMAGENET_MEAN, IMAGENET_STD, {}
    processor = folder / "preprocessor_config.json"
    if processor.is_file():
        settings = json.loads(processor.read_text(encoding="utf-8"))
        mean = tuple(settings.get("image_mean", mean))
        std = tuple(settings.get("image_std", std))
        for key in ("size", "crop_size", "do_center_crop", "resample"):
            if key in settings:
                preprocessing[key] = settings[key]
    from cnnvis_tasks.mechanisms.tokens import required_input_size

    module = logits_only(module)
    return Built(module, mean, std, classes, input_size=required_input_size(module), preprocessing=preprocessing)


def _module(spec: ModelSpec) -> Built:
    module_name, function_name = spec.target.rsplit(":", 1)
    import_from_working_directory()
    try:
        found = importlib.import_module(module_name)
    except ImportError as error:
        raise CnnvisError(
            f"model {spec.arch}: cannot import {module_name} (from {os.getcwd()} or the installed packages): {error}"
        ) from None
    function = getattr(found, function_name, None)
    if not callable(function):
        raise CnnvisError(f"model {spec.arch}: {module_name} has no function {function_name}")
    try:
        module = function(**spec.arch_args)
    except TypeError as error:
        raise CnnvisError(f"model {spec.arch}: calling {function_name}(**arch_args) failed: {error}") from None
    if not isinstance(module, nn.Module):
        raise CnnvisError(f"model {spec.arch}: {function_name} returned a {type(module).__name__}, not an nn.Module")
    return Built(module)  # its head is the user's: the outputs are counted by a forward pass


def build_architecture(spec: ModelSpec, pretrained: bool, num_classes: int | None = None) -> Built:
    """The architecture of ``spec``; ``pretrained``: with its source's own weights."""
    source = spec.source
    if source in (TORCHVISION, EMBEDDED):
        return build_torchvision(spec, pretrained, num_classes)
    if source == TIMM:
        return _timm(spec, pretrained, num_classes)
    if source == HF:
        return build_hf(spec, pretrained, num_classes)
    if source == MODULE:
        return _module(spec)
    raise CnnvisError(f"{spec.arch}: a TorchScript archive has no architecture to build")


def _last_linear_key(model: nn.Module) -> str | None:
    key = None
    for path, module in model.named_modules():
        if isinstance(module, nn.Linear):
            key = f"{path}.weight" if path else "weight"
    return key


def classifier_rows(built: Built) -> int | None:
    """The rows of an architecture's classifier (its number of classes), where it is known."""
    weight = built.module.state_dict().get(built.head_key) if built.head_key else None
    return int(weight.shape[0]) if weight is not None and weight.ndim >= 2 else _head_rows(built.module)


def _head_rows(model: nn.Module) -> int | None:
    last = _last_linear(model)
    return last.out_features if last is not None else None


def _last_linear(model: nn.Module) -> nn.Linear | None:
    last_linear = None
    for module in model.modules():
        if isinstance(module, nn.Linear):
            last_linear = module
    return last_linear


def wake_zero_head(model: nn.Module) -> None:
    """Give a classifier that starts at zero (torchvision's ViT, for training) the usual
    Linear initialisation: with every logit zero, every gradient and map of random
    weights would be zero, and random weights are for trying things out."""
    head = _last_linear(model)
    if head is not None and not head.weight.is_meta and not head.weight.any():
        head.reset_parameters()


def on_meta(make: Any) -> Any:
    """``make()`` on the meta device (no memory, no arithmetic); for an architecture whose
    builder computes with tensors (RegNet's widths), on the CPU."""
    try:
        with torch.device("meta"):
            return make()
    except NotImplementedError:
        return make()


def is_on_meta(model: nn.Module) -> bool:
    return any(t.is_meta for t in list(model.parameters()) + list(model.buffers()))
