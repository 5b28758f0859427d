"""Raw convolution weights, addressed by layer path or by parameter index."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from cnnvis_tasks.errors import CnnvisError
from cnnvis_tasks.models.layers import get_module


@dataclass
class KernelResult:
    weights: Tensor  # detached, (out, in, kh, kw) for a 2-D conv
    name: str  # parameter name, e.g. "features.0.weight"


def kernel_weights(model: nn.Module, layer: str | None = None, parameter_index: int | None = None) -> KernelResult:
    """The conv weight of module ``layer``, or the ``parameter_index``-th entry of
    ``model.named_parameters()`` (the seed's numbering); exactly one of the two.
    """
    if (layer is None) == (parameter_index is None):
        raise CnnvisError("give exactly one of a layer or a parameter index for kernels")
    if layer is not None:
        weight = getattr(get_module(model, layer), "weight", None)
        if not isinstance(weight, Tensor) or weight.dim() < 3:
            shape = f"a weight of shape {tuple(weight.shape)}" if isinstance(weight, Tensor) else "no weight"
            raise CnnvisError(f"layer {layer!r} has {shape}, not convolution kernels")
        return KernelResult(weight.detach(), f"{layer}.weight")

    params = list(model.named_parameters())
    valid = [i for i, (_, p) in enumerate(params) if p.dim() >= 3]
    hint = f"convolution weights are at indices {', '.join(map(str, valid[:5]))}{', ...' if len(valid) > 5 else ''}"
    if not 0 <= parameter_index < len(params):
        raise CnnvisError(f"parameter index {parameter_index} out of range 0..{len(params) - 1}; {hint}")
    name, weight = params[parameter_index]
    if weight.dim() < 3:
        raise CnnvisError(
            f"parameter {parameter_index} is {name!r} of shape {tuple(weight.shape)}, not convolution kernels; {hint}"
        )
    return KernelResult(weight.detach(), name)
