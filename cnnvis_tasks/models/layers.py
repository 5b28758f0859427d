"""Addressing modules inside a model by their dotted path (``features.29``); a model's device
and its hook-free copy on the meta device."""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import os
import sys
from itertools import chain
from typing import Any

import torch
from torch import nn

from cnnvis_tasks.errors import CnnvisError


def get_module(model: nn.Module, path: str) -> nn.Module:
    """Return the submodule at ``path``; unknown paths raise with close matches."""
    modules = dict(model.named_modules())
    if path in modules and path != "":
        return modules[path]
    candidates = [name for name in modules if name]
    close = difflib.get_close_matches(path, candidates, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise CnnvisError(f"unknown layer {path!r}{hint} (list layers with: cnnvis-tasks layers --model ...)")


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (the CPU for a model without any)."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def meta_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` on the meta device (no data, no arithmetic) without any hooks."""
    memo: dict[int, Any] = {}
    for t in chain(model.parameters(), model.buffers()):
        meta = torch.empty_like(t, device="meta")
        memo[id(t)] = nn.Parameter(meta, t.requires_grad) if isinstance(t, nn.Parameter) else meta
    for module in model.modules():  # hooks others registered must not see this dry run
        for name, value in vars(module).items():
            if "hooks" in name and isinstance(value, dict):
                memo[id(value)] = type(value)()
    return copy.deepcopy(model, memo)


# Attributes every module has (parameters, buffers, children, hooks): described
# separately or not part of the architecture.
_MODULE_INTERNALS = frozenset(vars(nn.Module())) - {"training"}


def _plain(value: Any) -> bool:
    if isinstance(value, (bool, int, float, str, type(None))):
        return True
    return isinstance(value, (tuple, list)) and all(_plain(item) for item in value)


def _code_identity(kind: type) -> list[Any]:
    """The files (with size and time) that define ``kind`` and its module bases, and their packages' versions."""
    identity = []
    for cls in kind.__mro__:
        if cls is nn.Module or not issubclass(cls, nn.Module):
            continue
        module = sys.modules.get(cls.__module__)
        source = getattr(module, "__file__", None)
        try:
            stat = os.stat(source) if source else None
        except OSError:
            stat = None
        package = sys.modules.get(cls.__module__.split(".")[0])
        identity.append(
            [
                f"{cls.__module__}.{cls.__qualname__}",
                source,
                stat and [stat.st_size, stat.st_mtime_ns],
                str(getattr(package, "__version__", "")),
            ]
        )
    return identity


def architecture_key(model: nn.Module) -> str:
    """A digest of what decides a forward pass's structure, not its numbers.

    Each module's path, class and plain settings (numbers, strings, tuples of
    them: kernel sizes, strides, flags), each parameter's and buffer's shape and
    dtype, the source files of the module classes (size and time) and the
    versions of torch and of the packages defining them.  The weights' values
    are left out: equal for two checkpoints of one model.
    """
    modules, classes = [], {}
    for path, module in model.named_modules():
        kind = type(module)
        classes.setdefault(kind, None)
        settings = {name: value for name, value in vars(module).items() if name not in _MODULE_INTERNALS}
        modules.append(
            [
                path,
                f"{kind.__module__}.{kind.__qualname__}",
                sorted((name, repr(value)) for name, value in settings.items() if _plain(value)),
                [[name, list(t.shape), str(t.dtype)] for name, t in module.named_parameters(recurse=False)],
                [[name, list(t.shape), str(t.dtype)] for name, t in module.named_buffers(recurse=False)],
            ]
        )
    code = [_code_identity(kind) for kind in classes]
    text = json.dumps([torch.__version__, code, modules], default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def layer_table(model: nn.Module, input_size: int = 224) -> list[tuple[str, str, tuple[int, ...] | None]]:
    """Every named module with its type and output shape for one input image.

    Shapes are computed on the ``meta`` device (no arithmetic, no memory) when the
    model's ops support it, else with a real forward pass on the model's device.
    Modules that never run in the forward pass get shape ``None``.
    """
    shapes: dict[str, tuple[int, ...]] = {}
    handles = []
    for name, module in model.named_modules():
        if not name:
            continue

        def record(_module, _inputs, output, name=name):
            if isinstance(output, torch.Tensor) and name not in shapes:
                shapes[name] = tuple(output.shape[1:])

        handles.append(module.register_forward_hook(record))
    try:
        with torch.inference_mode():
            model(torch.zeros(1, 3, input_size, input_size, device=model_device(model)))
    finally:
        for handle in handles:
            handle.remove()
    return [(name, type(module).__name__, shapes.get(name)) for name, module in model.named_modules() if name]
