"""The class each image is explained for, shared by the gradient techniques.

Nothing here makes the host wait for a GPU once the forward pass is queued.  A
blocking copy to the GPU (``.to(device)``) waits for everything queued before
it, and a non-blocking one from ordinary (pageable) host memory may too, as the
CUDA driver stages it; after the forward, either could stall the host until the
forward finished and leave the GPU idle while the backward is queued.  So the
caller's targets are copied before the forward, from pinned memory without
blocking, and the range check, which needs the number of classes, runs on a
host copy.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from ..errors import CnnvisError


class RequestedTargets(NamedTuple):
    """Target classes a caller asked for: on the host for checks, and on the images' device."""

    host: Tensor  # (n,) int64 on the CPU
    on_device: Tensor  # the same values, (n,) int64 on the images' device


def _copy_to(host: Tensor, device: torch.device) -> Tensor:
    """``host`` on ``device``; to a GPU through pinned memory, so the host does not wait."""
    if device.type == "cuda":
        return host.pin_memory().to(device, non_blocking=True)
    return host.to(device)


def request_targets(targets, n: int, device: torch.device | str) -> RequestedTargets | None:
    """``targets`` (an integer sequence or tensor, anywhere) for ``n`` images on ``device``.

    None (each image's top-1 class) stays None.  Call it before the forward pass.
    Targets already on a GPU are read back to the host here, once, for the range
    check (which waits for the GPU's queue): an index out of range would
    otherwise be a device-side assert.
    """
    if targets is None:
        return None
    given = torch.as_tensor(targets).detach().reshape(-1)
    if given.numel() == 0:
        given = given.long()  # torch.as_tensor([]) is a float tensor
    if given.dtype.is_floating_point or given.dtype.is_complex or given.dtype == torch.bool:
        raise CnnvisError(f"target classes must be integer class indices, got dtype {given.dtype}")
    if given.numel() != n:
        raise CnnvisError(f"got {given.numel()} target classes for {n} images")
    device = torch.device(device)
    host = given.to("cpu").long()
    on_device = given.long() if given.device == device else _copy_to(host, device)
    return RequestedTargets(host=host, on_device=on_device)


def target_indices(requested: RequestedTargets | None, logits: Tensor, n: int) -> Tensor:
    """The (n,) target classes of n images on the logits' device: each image's top-1
    class where ``requested`` is None, else the requested classes once checked
    against the logits, which must be (n, classes)."""
    if logits.dim() != 2 or logits.shape[0] != n:
        raise CnnvisError(f"the model outputs a tensor of shape {tuple(logits.shape)}, not class scores (N, classes)")
    if requested is None:
        return logits.detach().argmax(dim=1)
    classes = logits.shape[1]
    bad = (requested.host < 0) | (requested.host >= classes)
    if bad.any():
        raise CnnvisError(
            f"target class {int(requested.host[bad][0])} is out of range: this model has classes 0..{classes - 1}"
        )
    if requested.on_device.device != logits.device:  # a model that returns its logits elsewhere
        return requested.on_device.to(logits.device)
    return requested.on_device
