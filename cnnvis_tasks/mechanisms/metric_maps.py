"""What the attribution metrics share: a map as one number per input pixel, the order in
which a map ranks the pixels, and the target class's score.

A metric takes a model, inputs (N, C, H, W, in the model's input space), target
classes (N,) and maps (N, H, W) at the inputs' size (:func:`as_pixel_map`).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

REDUCTIONS = ("sum", "abs_sum", "max_abs")
SCORES = ("logit", "probability")


def as_pixel_map(maps: Tensor, size: tuple[int, int], reduce: str = "sum") -> Tensor:
    """(N, H, W) float maps at the input ``size`` from (N, h, w) or (N, C, h, w) maps.

    Channels are reduced per pixel, because the perturbation metrics remove a pixel's
    every channel at once: ``sum`` (default: the pixel's total signed attribution,
    which for a map that adds up to the score change, Gradient x Input or Integrated
    Gradients, is the pixel's contribution), ``abs_sum``, or ``max_abs`` (the largest
    |value| over the channels: Simonyan et al.'s saliency map, for a plain gradient
    whose sign says nothing alone).  A map at another resolution (a CAM at its layer's
    grid) is upsampled bilinearly, as the CAMs are for display."""
    if reduce not in REDUCTIONS:
        raise ValueError(f"unknown channel reduction {reduce!r}; expected one of {REDUCTIONS}")
    maps = maps.detach()
    if maps.ndim == 4:
        if reduce == "sum":
            maps = maps.sum(dim=1)
        elif reduce == "abs_sum":
            maps = maps.abs().sum(dim=1)
        else:
            maps = maps.abs().amax(dim=1)
    if maps.ndim != 3:
        raise ValueError(f"expected (N, h, w) or (N, C, h, w) maps, got shape {tuple(maps.shape)}")
    maps = maps.float() if not maps.is_floating_point() else maps
    if tuple(maps.shape[-2:]) != tuple(size):
        maps = F.interpolate(maps[:, None], size=tuple(size), mode="bilinear", align_corners=False)[:, 0]
    return maps


def pixel_order(maps: Tensor) -> Tensor:
    """(N, H*W) flat pixel indices, most relevant first; equal values keep the
    order of their index (a stable sort), so the order is the same everywhere."""
    return torch.sort(maps.flatten(1), dim=1, descending=True, stable=True).indices


def pixel_ranks(order: Tensor) -> Tensor:
    """(N, H*W): each pixel's place in ``order`` (0: removed first)."""
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    return ranks


def check_maps(inputs: Tensor, maps: Tensor) -> None:
    if maps.ndim != 3 or maps.shape[0] != inputs.shape[0] or maps.shape[1:] != inputs.shape[2:]:
        raise ValueError(
            f"maps must be (N, H, W) at the inputs' size {tuple(inputs.shape[2:])} "
            f"(see as_pixel_map), got {tuple(maps.shape)}"
        )


def target_scores(logits: Tensor, targets: Tensor, score: str) -> Tensor:
    if score == "probability":
        return logits.softmax(dim=1).gather(1, targets[:, None])[:, 0]
    if score == "logit":
        return logits.gather(1, targets[:, None])[:, 0]
    raise ValueError(f"unknown score {score!r}; expected one of {SCORES}")
