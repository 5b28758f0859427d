"""Model loading: whatever classifier the user brings, as one :class:`LoadedModel`.

A :class:`~cnnvis_tasks.models.spec.ModelSpec` says where a model comes from
(torchvision, the embedded EfficientNet-Lite0, timm, a Hugging Face folder, the
user's own function, a TorchScript archive), its weights, class names and
preprocessing.  The model is built once per process, in eval mode, with its head
sized from its checkpoint, and handed to techniques with its normalisation and
class names.  The architecture comes from its source (:mod:`.sources`), a
checkpoint's weights are fitted into it (:mod:`.fitting`), the standard weights come
from the torch hub cache or the embedded package (:mod:`.standard_weights`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnvis_tasks.errors import CnnvisError
from cnnvis_tasks.mechanisms.pixels import to_model_space
from cnnvis_tasks.models.fitting import from_checkpoint
from cnnvis_tasks.models.imagenet import IMAGENET_CATEGORIES
from cnnvis_tasks.models.names import DEFAULT_MODEL
from cnnvis_tasks.models.sources import (
    build_architecture,
    build_hf,
    build_torchvision,
    classifier_rows,
    on_meta,
    wake_zero_head,
)
from cnnvis_tasks.models.spec import (
    EMBEDDED,
    HF,
    TORCHSCRIPT,
    TORCHVISION,
    ModelSpec,
    spec_from_options,
)
from cnnvis_tasks.models.standard_weights import (
    cached_weights_path,
    check_model_name,
    default_weights,
    embedded_weights_path,
    fetch_weights,
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
        from cnnvis_tasks.mechanisms.tokens import required_input_size

        return required_input_size(self.module)

    @property
    def num_classes(self) -> int:
        return len(self.categories) if self.categories else 0

    def class_name(self, index: int) -> str:
        """Human-readable name of class ``index`` (``class N`` when unknown)."""
        if self.categories and 0 <= index < len(self.categories):
            return self.categories[index]
        return f"class {index}"


def _seeded(seed: int, make):
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        return make()
    finally:
        torch.random.set_rng_state(state)


def _given_classes(spec: ModelSpec) -> list[str] | None:
    """Class names the spec gives: a resolved list, or a file or folder to read them from."""
    from cnnvis_tasks.models.class_lists import class_names

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
        built = _seeded(seed, lambda: build_architecture(spec, pretrained=False, num_classes=rows))
        wake_zero_head(built.module)
        source = f"random (seed {seed})"
    elif spec.weights == "default":
        if spec.source == TORCHVISION:
            path = cached_weights_path(spec.target)
            if not path.is_file():
                path, _ = fetch_weights(spec.target)
            built, _, _ = from_checkpoint(spec, path, pretrained=True)
            source = f"default ({default_weights(spec.target)})"
        elif spec.source == EMBEDDED:
            built, _, _ = from_checkpoint(spec, embedded_weights_path(), pretrained=True)
            source = "default"
        else:
            built = build_architecture(spec, pretrained=True)
            source = "default" if spec.source != HF else f"default ({spec.target})"
    else:
        path = Path(spec.weights).expanduser()
        if not path.is_file():
            raise CnnvisError(f"weights {spec.weights!r} is neither 'default', 'random' nor an existing file")
        built, stored_classes, form = from_checkpoint(spec, path)
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

    from cnnvis_tasks.mechanisms.tokens import required_input_size

    check_model_name(spec.target)
    built = on_meta(lambda: build_torchvision(spec, pretrained=True, num_classes=None))
    given = _given_classes(spec)
    rows = classifier_rows(built)
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
        return build_hf(spec, from_folder=False, num_classes=None).module.eval()
    return on_meta(lambda: build_architecture(spec, pretrained=False)).module.eval()
