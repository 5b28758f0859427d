"""Recording module outputs during a forward pass.

``capture_outputs`` is the one mechanism (feature maps, Grad-CAM, gradient
ascent).  Its hooks keep each module's *original* output and hand a clone on to
the rest of the network, so a later in-place op (VGG's ``ReLU(inplace=True)``
right after a conv) modifies the clone, never the recorded tensor, and gradients
taken with respect to the recorded tensor stay correct.

A module called several times in one forward (ResNet reuses one ``nn.ReLU`` per
block, EfficientNet-Lite reuses ``_swish`` for stem and head) is recorded at its
LAST call.  :class:`LayerTap` stops a forward early without breaking that rule:
the first forward through a model's requested modules runs to the end and
counts the calls; later forwards, whatever their input size, are abandoned after
the last call of every requested module.  (So a small input that only the rest
of the network would reject, as deep dream's smallest octaves, still works.)
"""

from __future__ import annotations

import weakref
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import partial
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from cnnvis_tasks.errors import CnnvisError
from cnnvis_tasks.mechanisms.tokens import as_feature_map
from cnnvis_tasks.models.layers import get_module, meta_copy, model_device


class StopForward(Exception):
    """Raised by a hook to abandon the rest of the forward pass."""


class Call(NamedTuple):
    """One finished module call: its path, output, and the output's version counter."""

    path: str
    output: Any
    version: int | None


@contextmanager
def _forward_hooks(modules: Mapping[str, nn.Module], hook: Callable) -> Iterator[None]:
    """Register ``hook(path, module, inputs, output)`` on each module; always remove."""
    handles = []
    try:
        for path, module in modules.items():
            handles.append(module.register_forward_hook(partial(hook, path)))
        yield
    finally:
        for handle in handles:
            handle.remove()


class Captured(dict):
    """path -> output of the module's last call; ``calls`` counts every call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()


@contextmanager
def capture_outputs(
    model: nn.Module,
    paths: list[str],
    stop_after_calls: Mapping[str, int] | None = None,
    as_leaf: bool = False,
) -> Iterator[Captured]:
    """Record the outputs of the modules at ``paths`` while the block runs.

    Yields a :class:`Captured` dict path -> output that fills during the forward
    pass; each entry is the module's own output tensor of its last call
    (downstream modules get a clone).  With ``stop_after_calls`` (path -> number
    of calls in one forward) the forward pass is abandoned once every path has
    had that many calls: the rest of the with-block is then skipped and the
    block exits normally.  With ``as_leaf`` each recorded output is a detached
    leaf that requires grad, so autograd records only what follows the layer
    (gradients with respect to the layer need nothing before it).  Hooks are
    removed on exit, also on errors.
    """
    modules = {path: get_module(model, path) for path in dict.fromkeys(paths)}
    captured = Captured()

    def hook(path, _module, _inputs, output):
        if as_leaf and isinstance(output, Tensor):
            output = output.detach().requires_grad_(True)
        captured[path] = output
        captured.calls[path] += 1
        if stop_after_calls is not None and all(captured.calls[p] >= stop_after_calls.get(p, 1) for p in modules):
            raise StopForward
        return output.clone() if isinstance(output, Tensor) else None

    with _forward_hooks(modules, hook):
        try:
            yield captured
        except StopForward:
            pass


# Per model: paths -> how often each path is called in a forward (the same at any input size).
_CALL_COUNTS: weakref.WeakKeyDictionary[nn.Module, dict] = weakref.WeakKeyDictionary()


class LayerTap:
    """Forward passes that return the outputs of ``paths`` and stop once all are recorded.

    ``tap(x)`` runs ``model(x)`` and returns a :class:`Captured` dict of the
    layers' outputs (their last call); gradients flow through them as usual.
    The first forward runs to the end and counts the calls (remembered per
    model, so later taps of the same layers stop early at once).
    """

    def __init__(self, model: nn.Module, paths: list[str]):
        self.model = model
        self.paths = list(dict.fromkeys(paths))
        for path in self.paths:
            get_module(model, path)  # an unknown layer fails here, with close matches

    def __call__(self, x: Tensor) -> Captured:
        known = _CALL_COUNTS.setdefault(self.model, {})
        key = tuple(self.paths)
        with capture_outputs(self.model, self.paths, stop_after_calls=known.get(key)) as outputs:
            self.model(x)
        if key not in known:
            known[key] = {path: outputs.calls[path] for path in self.paths}
        return outputs


def meta_calls(model: nn.Module, input_shape: tuple[int, ...]) -> list[Call] | None:
    """Every module call in one shape-only forward.

    Runs on a hook-free meta copy, so no arithmetic is done and the model is
    untouched.  None if the model cannot run there (an op without a meta
    kernel, data-dependent control flow, ...).
    """
    try:
        dry = meta_copy(model)
        modules = {name: m for name, m in dry.named_modules() if name}
        calls: list[Call] = []
        with _forward_hooks(modules, partial(_record, calls)), torch.no_grad():
            dry(torch.empty(input_shape, device="meta"))
    except Exception:
        return None
    return calls


def _record(calls: list[Call], path: str, _module, _inputs, output) -> None:
    version = output._version if isinstance(output, Tensor) else None
    calls.append(Call(path, output, version))


def device_calls(model: nn.Module, input_shape: tuple[int, ...]) -> list[Call]:
    """Every module call in one forward of zeros on the model's device, under ``no_grad``
    (not ``inference_mode``: version counters tell an in-place op's output from its input)."""
    calls: list[Call] = []
    modules = {name: m for name, m in model.named_modules() if name}
    with _forward_hooks(modules, partial(_record, calls)), torch.no_grad():
        model(torch.zeros(input_shape, device=model_device(model)))
    return calls


def trace_calls(model: nn.Module, input_shape: tuple[int, ...]) -> list[Call]:
    """Every module call of one forward of zeros, in the order the calls finish.

    Children finish before their parents, so for one output tensor the
    innermost module comes first.  Runs on a meta copy when possible
    (:func:`meta_calls`), else on the model's device (:func:`device_calls`).
    Outputs are kept alive in the list, so their ``id()`` values stay unique.
    """
    calls = meta_calls(model, tuple(input_shape))
    return device_calls(model, tuple(input_shape)) if calls is None else calls


def _describe(output: Any) -> str:
    if isinstance(output, Tensor):
        return f"a tensor of shape {tuple(output.shape)}"
    return f"a {type(output).__name__}"


def captured_tensor(outputs: Mapping[str, Any], path: str) -> Tensor:
    """The captured output of ``path``; a clear error if the layer did not run or gave no tensor."""
    if path not in outputs:
        raise CnnvisError(f"layer {path!r} is not run in the model's forward pass")
    output = outputs[path]
    if not isinstance(output, Tensor):
        raise CnnvisError(f"layer {path!r} outputs {_describe(output)}, not a tensor")
    return output


def captured_feature_map(outputs: Mapping[str, Any], path: str, model: nn.Module) -> Tensor:
    """The captured output of ``path`` of ``model`` as (N, C, h, w) (a transformer's tokens
    laid out on their grid: :func:`.tokens.as_feature_map`); a clear error if there is none."""
    return as_feature_map(captured_tensor(outputs, path), model, path)


def feature_maps(model: nn.Module, images: Tensor, paths: list[str]) -> dict[str, Tensor]:
    """Each layer's activation (N, C, h, w) for ``images``, from one forward pass.

    The first forward runs to the end and counts how often each layer is called;
    later ones stop right after the last call of every requested layer, so
    early layers do not pay for the rest of the network.
    """
    tap = LayerTap(model, paths)
    with torch.inference_mode():
        outputs = tap(images)
    return {path: captured_feature_map(outputs, path, model).detach() for path in tap.paths}
