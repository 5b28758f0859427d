"""The class each image is explained for: the one place targets are checked and resolved.

A caller asks for a class index per image, or for an image's top-1 prediction
(None, or -1 inside a tensor).  Both are resolved from the logits of the very
forward pass that is explained, so a batch that mixes the two needs no extra
forward.

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

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from cnnvis_tasks.errors import CnnvisError

TOP1 = -1  # in a target tensor: the image's top-1 prediction


class RequestedTargets(NamedTuple):
    """Target classes a caller asked for: on the host for checks, and on the images' device."""

    host: Tensor  # (n,) int64 on the CPU; TOP1 where the prediction is explained
    on_device: Tensor  # the same values, (n,) int64 on the images' device


def check_class_indices(indices: Sequence[int] | Tensor, classes: int) -> None:
    """Every index is a class of a model with ``classes`` outputs (TOP1 passes)."""
    values = indices.tolist() if isinstance(indices, Tensor) else list(indices)
    for index in values:
        if index is not None and index != TOP1 and not 0 <= int(index) < classes:
            raise CnnvisError(f"class index {int(index)} out of range: this model has classes 0..{classes - 1}")


def _copy_to(host: Tensor, device: torch.device) -> Tensor:
    """``host`` on ``device``; to a GPU through pinned memory, so the host does not wait."""
    if device.type == "cuda":
        return host.pin_memory().to(device, non_blocking=True)
    return host.to(device)


def request_targets(targets, n: int, device: torch.device | str) -> RequestedTargets | None:
    """``targets`` for ``n`` images on ``device``: None (every image's top-1 class),
    or a sequence or tensor of class indices in which None or -1 asks for the top-1.

    Call it before the forward pass.  Targets already on a GPU are read back to the
    host here, once, for the range check (which waits for the GPU's queue): an
    index out of range would otherwise be a device-side assert.
    """
    if targets is None:
        return None
    if isinstance(targets, Tensor):
        given = targets.detach().reshape(-1)
    else:
        given = torch.as_tensor([TOP1 if t is None else t for t in targets])
    if given.numel() == 0:
        given = given.long()  # torch.as_tensor([]) is a float tensor
    if given.dtype.is_floating_point or given.dtype.is_complex or given.dtype == torch.bool:
        raise CnnvisError(f"target classes must be integer class indices, got dtype {given.dtype}")
    if given.numel() != n:
        raise CnnvisError(f"got {given.numel()} target classes for {n} images")
    device = torch.device(device)
    host = given.to("cpu").long()
    if bool((host < TOP1).any()):
        raise CnnvisError(f"class index {int(host[host < TOP1][0])} out of range: class indices are >= 0")
    if bool((host == TOP1).all()):
        return None
    on_device = given.long() if given.device == device else _copy_to(host, device)
    return RequestedTargets(host=host, on_device=on_device)


def target_indices(requested: RequestedTargets | None, logits: Tensor, n: int) -> Tensor:
    """The (n,) target classes of n images on the logits' device: each image's top-1
    class where none was requested, else the requested class once checked
    against the logits, which must be (n, classes)."""
    if logits.dim() != 2 or logits.shape[0] != n:
        raise CnnvisError(f"the model outputs a tensor of shape {tuple(logits.shape)}, not class scores (N, classes)")
    if requested is None:
        return logits.detach().argmax(dim=1)
    check_class_indices(requested.host, logits.shape[1])
    wanted = requested.on_device
    if wanted.device != logits.device:  # a model that returns its logits elsewhere
        wanted = wanted.to(logits.device)
    if bool((requested.host == TOP1).any()):  # decided on the host copy: no wait for the device
        return torch.where(wanted == TOP1, logits.detach().argmax(dim=1), wanted)
    return wanted


def target_probabilities(logits: Tensor, targets: Tensor) -> Tensor:
    """(N,) softmax probability of each image's target class."""
    return torch.softmax(logits.float(), dim=1).gather(1, targets[:, None])[:, 0]
