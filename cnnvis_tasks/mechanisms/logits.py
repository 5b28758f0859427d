"""A classifier whose forward returns its logits tensor.

Hugging Face's classifiers return an output object (``ImageClassifierOutput``);
every technique wants the class scores.  :func:`logits_only` changes the model's
class, not its structure: its layer paths stay its own
(``vit.layers.11.layernorm_before``), hooks on it and on its submodules keep
working, and a deep copy or a pickle of it is one of the same kind.
"""

from __future__ import annotations

import copyreg
from typing import Any

import torch
from torch import nn

from cnnvis_tasks.errors import CnnvisError

# base class -> its logits-only subclass
_SUBCLASSES: dict[type, type] = {}


def logits_only(module: nn.Module) -> nn.Module:
    """``module`` itself, its class swapped for a subclass whose ``forward(pixel_values, ...)``
    returns the logits tensor: an output's ``.logits`` (or ``["logits"]``), a tuple's first
    element; a tensor passes unchanged.  Idempotent."""
    if not getattr(type(module), "_cnnvis_logits_only", False):
        module.__class__ = _subclass(type(module))
    return module


def _subclass(base: type) -> type:
    if base not in _SUBCLASSES:

        def forward(self, pixel_values, *args: Any, **kwargs: Any) -> torch.Tensor:
            return _logits(base.forward(self, pixel_values, *args, **kwargs), self)

        def __reduce_ex__(self, protocol: int):  # noqa: N807
            # pickle names an instance's class: this one is made anew from its base when loading
            reduced = base.__reduce_ex__(self, protocol)
            if isinstance(reduced, tuple) and reduced[0] is copyreg.__newobj__ and reduced[1][0] is type(self):
                return (_rebuilt, (base, *reduced[1][1:]), *reduced[2:])
            return reduced

        namespace = {
            "_cnnvis_logits_only": True,
            "forward": forward,
            "__reduce_ex__": __reduce_ex__,
            "__module__": base.__module__,
            "__qualname__": base.__qualname__,
            "__doc__": base.__doc__,
        }
        _SUBCLASSES[base] = type(base.__name__, (base,), namespace)
    return _SUBCLASSES[base]


def _logits(output: Any, module: nn.Module) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    scores = getattr(output, "logits", None)
    if scores is None and isinstance(output, dict):
        scores = output.get("logits")
    if scores is None and isinstance(output, (tuple, list)) and output:
        scores = output[0]
    if not isinstance(scores, torch.Tensor):
        raise CnnvisError(
            f"{type(module).__name__} returns a {type(output).__name__}: expected class scores, as a tensor, "
            "an object with .logits, or a tuple whose first element is the scores"
        )
    return scores


def _rebuilt(base: type, *args: Any) -> nn.Module:
    """An empty instance of ``base``'s logits-only subclass (its state is set after)."""
    cls = _subclass(base)
    return cls.__new__(cls, *args)
