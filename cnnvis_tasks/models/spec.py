"""What a model is, before it is built: where it comes from, its weights, classes and
preprocessing.  One description serves the config (``models:`` entries), the command
line (``--model --weights --classes --mean --std --input-size``) and Python.

The ``arch`` spellings:

- ``NAME``: a torchvision classifier, or the embedded ``efficientnet_lite0``;
- ``timm:NAME``: any timm architecture;
- ``hf:FOLDER``: a Hugging Face ``transformers`` image classifier saved with ``save_pretrained``;
- ``module:package.module:function``: the user's own code, called with ``arch_args``;
- ``torchscript``: ``weights`` is a ``torch.jit`` archive.

Torch-free: the workflow reads and checks these at every start.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from cnnvis_tasks.errors import CnnvisError
from cnnvis_tasks.models.names import EMBEDDED_MODEL

TORCHVISION, EMBEDDED, TIMM, HF, MODULE, TORCHSCRIPT = "torchvision", "embedded", "timm", "hf", "module", "torchscript"
_PREFIXES = {"timm:": TIMM, "hf:": HF, "module:": MODULE}
_MODULE_TARGET = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
ARCH_HELP = (
    "a torchvision name (resnet18), efficientnet_lite0 (embedded), timm:NAME, hf:FOLDER (a transformers "
    "save_pretrained folder), module:package.module:function (your own code) or torchscript"
)


def arch_source(arch: str) -> tuple[str, str]:
    """(source, what to build) of an ``arch`` spelling, e.g. ``("timm", "convnext_atto")``."""
    if arch == TORCHSCRIPT:
        return TORCHSCRIPT, ""
    for prefix, source in _PREFIXES.items():
        if arch.startswith(prefix):
            target = arch[len(prefix) :].strip()
            if not target:
                raise CnnvisError(f"model {arch!r}: give what follows {prefix!r} (e.g. {prefix}{_EXAMPLES[source]})")
            if source == MODULE and not _MODULE_TARGET.match(target):
                raise CnnvisError(
                    f"model {arch!r}: write module:package.module:function, a function that returns the nn.Module"
                )
            return source, target
    return (EMBEDDED if arch == EMBEDDED_MODEL else TORCHVISION), arch


_EXAMPLES = {TIMM: "resnet18", HF: "path/to/folder", MODULE: "mypackage.models:build"}


@dataclass(frozen=True)
class ModelSpec:
    """One model as the user describes it.

    ``name`` is the model's name in results and in the gallery; ``classes`` is either
    the source of the class names (a file, ``{"from": "folders"}``, a list) or, once
    resolved, the list itself; ``mean``/``std``/``input_size`` None: the source's own.
    """

    name: str
    arch: str
    weights: str = "default"
    classes: Any = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    input_size: int | None = None
    arch_args: Mapping[str, Any] = field(default_factory=dict)
    trust_pickle: bool = False

    def __post_init__(self) -> None:
        arch_source(self.arch)  # a malformed spelling fails here, once
        for key in ("mean", "std"):
            value = getattr(self, key)
            if value is not None:
                object.__setattr__(self, key, _three_numbers(value, key))
        if self.std is not None and any(v <= 0 for v in self.std):
            raise CnnvisError(f"model {self.name}: std must be positive, got {list(self.std)}")
        if self.input_size is not None and (not isinstance(self.input_size, int) or self.input_size < 8):
            raise CnnvisError(f"model {self.name}: input_size must be a whole number of pixels >= 8")
        if isinstance(self.classes, list):
            object.__setattr__(self, "classes", tuple(self.classes))
        object.__setattr__(self, "arch_args", dict(self.arch_args or {}))

    @property
    def source(self) -> str:
        return arch_source(self.arch)[0]

    @property
    def target(self) -> str:
        return arch_source(self.arch)[1]

    @property
    def weights_file(self) -> str | None:
        """The weights file, when the model has one (hf: the folder holds its weights)."""
        return None if self.weights in ("default", "random") else self.weights

    @property
    def may_be_pickled_model(self) -> bool:
        """A trusted weights file may hold the whole model: then ``arch`` only names it."""
        return self.trust_pickle and self.weights_file is not None

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("classes", "mean", "std"):
            if isinstance(data[key], tuple):
                data[key] = list(data[key])
        return data

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=1, sort_keys=True)


def _three_numbers(value: Any, key: str) -> tuple[float, ...]:
    if isinstance(value, str):
        value = [part for part in re.split(r"[,\s]+", value.strip()) if part]
    try:
        numbers = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise CnnvisError(f"{key}: give three numbers, one per channel (R, G, B), e.g. 0.485,0.456,0.406") from None
    if len(numbers) != 3:
        raise CnnvisError(f"{key}: give three numbers, one per channel (R, G, B); got {len(numbers)}")
    return numbers


_SPEC_FIELDS = {f.name for f in fields(ModelSpec)}


def spec_from_config(name: str, entry: Mapping[str, Any], weights_override: str | None = None) -> ModelSpec:
    """The :class:`ModelSpec` of the config's ``models.NAME`` entry (``arch`` defaults to NAME)."""
    values = {key: value for key, value in entry.items() if key in _SPEC_FIELDS and value is not None}
    values["arch"] = entry.get("arch") or name
    if weights_override:
        values["weights"] = weights_override
    return ModelSpec(name=name, **values)


def read_spec_file(path: str | Path) -> ModelSpec:
    """A model description written by the workflow (``RESULTS/models/NAME.json``)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CnnvisError(f"model file not found: {path}") from None
    except (OSError, ValueError) as error:
        raise CnnvisError(f"cannot read model file {path}: {error}") from None
    if not isinstance(data, dict) or set(data) - _SPEC_FIELDS or "name" not in data or "arch" not in data:
        raise CnnvisError(f"{path} is not a model file (keys {', '.join(_SPEC_FIELDS)})")
    return ModelSpec(**data)


def spec_from_options(
    model: str,
    weights: str = "default",
    *,
    classes: str | Sequence[str] | None = None,
    mean: Any = None,
    std: Any = None,
    input_size: int | None = None,
    arch_args: str | Mapping[str, Any] | None = None,
    trust_pickle: bool = False,
    model_file: str | Path | None = None,
    name: str | None = None,
) -> ModelSpec:
    """The :class:`ModelSpec` the command-line options describe (``--model-file`` alone, or the others)."""
    if model_file is not None:
        return read_spec_file(model_file)
    if isinstance(arch_args, str):
        try:
            arch_args = json.loads(arch_args) if arch_args.strip() else {}
        except ValueError as error:
            raise CnnvisError(f"--arch-args: not JSON ({error}); e.g. '{{\"num_classes\": 5}}'") from None
        if not isinstance(arch_args, dict):
            raise CnnvisError("--arch-args: give a JSON object of keyword arguments, e.g. '{\"width\": 2}'")
    return ModelSpec(
        name=name or model,
        arch=model,
        weights=weights,
        classes=classes or None,
        mean=mean,
        std=std,
        input_size=input_size,
        arch_args=arch_args or {},
        trust_pickle=trust_pickle,
    )


def import_from_working_directory() -> None:
    """Let ``module:`` models import the user's own code beside their config."""
    import os
    import sys

    here = os.getcwd()
    if here not in sys.path:
        sys.path.insert(0, here)


def needs_module_tree(technique: Any, values: Mapping[str, Any]) -> str | None:
    """Why a technique setting cannot run on a model without named layers (a
    TorchScript archive), or None when it can."""
    if "layer" in values or any(option.name == "layer" for option in technique.options):
        return "it reads a named layer's activations"
    if "parameter" in values:
        return "it reads a named layer's weights"
    if str(values.get("method", "vanilla")) in ("guided", "deconv"):
        return f"{values['method']} backpropagation replaces the model's ReLU backward"
    if int(values.get("randomisation_stages", 0) or 0) > 0:
        return "randomisation re-initialises named layers (set randomisation_stages: 0)"
    for option in technique.options:  # a method inside: the metrics' --explain, SmoothGrad's --method
        if option.kind == "method" and values.get(option.name) is not None:
            from cnnvis_tasks.technique.method import slot_of

            try:
                inner = slot_of(technique, option.name).parse(values[option.name])
            except CnnvisError:
                return None  # the config check or the command reports the text itself
            why = needs_module_tree(inner.technique, inner.options)
            if why:
                return why
    return None
