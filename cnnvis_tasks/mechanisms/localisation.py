"""Localisation: the share of a map's positive attribution inside a bounding box."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def localisation(maps: Tensor, boxes: Tensor) -> Tensor:
    """(N,) the share of each map's positive attribution that lies inside its box.

    ``maps`` (N, H, W) at the input size; ``boxes`` (N, 4) ``x0, y0, x1, y1`` in pixel
    coordinates with the image's top-left corner at (0, 0) and a pixel (row i,
    column j) inside when its centre (j + 0.5, i + 0.5) is, left and top edges
    included, right and bottom edges not (so the box 0, 0, W, H holds every pixel,
    x1 is one past the last column, and boxes that touch share no pixel).  Negative
    values count as 0: they are evidence against the class, not for it, and would
    let a map score above 1.  NaN where a map has no positive value, or where its box
    holds no pixel centre (a thin box once the image is scaled down)."""
    if maps.ndim != 3 or boxes.shape != (maps.shape[0], 4):
        raise ValueError(f"expected (N, H, W) maps and (N, 4) boxes, got {tuple(maps.shape)} and {tuple(boxes.shape)}")
    n, height, width = maps.shape
    positive = maps.detach().double().clamp_min(0)
    boxes = boxes.to(device=maps.device, dtype=torch.float64)
    ys = torch.arange(height, device=maps.device, dtype=torch.float64) + 0.5
    xs = torch.arange(width, device=maps.device, dtype=torch.float64) + 0.5
    inside_y = (ys[None] >= boxes[:, 1:2]) & (ys[None] < boxes[:, 3:4])  # (N, H)
    inside_x = (xs[None] >= boxes[:, 0:1]) & (xs[None] < boxes[:, 2:3])  # (N, W)
    inside = inside_y[:, :, None] & inside_x[:, None, :]
    total = positive.flatten(1).sum(dim=1)
    share = (positive * inside).flatten(1).sum(dim=1) / total
    defined = (total > 0) & inside.flatten(1).any(dim=1)
    return torch.where(defined, share, torch.full_like(share, math.nan)).to(maps.dtype)
