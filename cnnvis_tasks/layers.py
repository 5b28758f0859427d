"""Addressing modules inside a model by their dotted path (``features.29``)."""

from __future__ import annotations

import difflib

import torch
from torch import nn

from .errors import CnnvisError


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
