"""The class each image is explained for, shared by the gradient techniques.

Targets are checked on the CPU: a range check of a tensor on the GPU would make
the host wait for the forward pass to finish before it could queue the backward.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import CnnvisError


def host_targets(targets, n: int) -> Tensor | None:
    """``targets`` (any integer sequence or tensor) as (n,) int64 on the CPU; None
    (each image's top-1 class) stays None.  Call it before the forward pass."""
    if targets is None:
        return None
    targets = torch.as_tensor(targets).detach().to("cpu").reshape(-1)
    if targets.dtype.is_floating_point or targets.dtype.is_complex or targets.dtype == torch.bool:
        raise CnnvisError(f"target classes must be integer class indices, got dtype {targets.dtype}")
    if targets.numel() != n:
        raise CnnvisError(f"got {targets.numel()} target classes for {n} images")
    return targets.long()


def target_indices(host: Tensor | None, logits: Tensor) -> Tensor:
    """The (N,) target classes on the logits' device: each image's top-1 class where
    ``host`` is None, else ``host`` once its range is checked against the logits."""
    if logits.dim() != 2 or (host is not None and logits.shape[0] != host.numel()):
        raise CnnvisError(f"the model outputs a tensor of shape {tuple(logits.shape)}, not class scores (N, classes)")
    if host is None:
        return logits.detach().argmax(dim=1)
    classes = logits.shape[1]
    bad = (host < 0) | (host >= classes)
    if bad.any():
        raise CnnvisError(
            f"target class {int(host[bad][0])} is out of range: this model has classes 0..{classes - 1}"
        )
    return host.to(logits.device, non_blocking=True)  # from pageable memory: staged at once, no wait
