"""Localisation: does a map point at the object a person marked?

* :func:`localisation`: the share of a map's positive attribution inside a bounding box;
* :func:`pointing_game` (Zhang et al. 2018): whether the map's largest value lies on the
  object;
* :func:`rank_accuracy` (Arras et al. 2022, relevance rank accuracy): the share of the K
  highest-ranked pixels that lie on the object, K its size in pixels.

The object is an (N, H, W) region: a segmentation mask, or a box as :func:`box_masks`
draws it.  These are plausibility checks: they tell whether the map points at what a
person marked, not whether the model used it.
"""

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
    positive = maps.detach().double().clamp_min(0)
    inside = box_masks(boxes.to(maps.device), tuple(maps.shape[1:]))
    total = positive.flatten(1).sum(dim=1)
    share = (positive * inside).flatten(1).sum(dim=1) / total
    defined = (total > 0) & inside.flatten(1).any(dim=1)
    return torch.where(defined, share, torch.full_like(share, math.nan)).to(maps.dtype)


def box_masks(boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """(N, H, W) bool: the pixels whose centre lies inside each (N, 4) box ``x0, y0, x1, y1``
    (see :func:`localisation` for the convention)."""
    height, width = size
    boxes = boxes.to(dtype=torch.float64)
    ys = torch.arange(height, device=boxes.device, dtype=torch.float64) + 0.5
    xs = torch.arange(width, device=boxes.device, dtype=torch.float64) + 0.5
    inside_y = (ys[None] >= boxes[:, 1:2]) & (ys[None] < boxes[:, 3:4])  # (N, H)
    inside_x = (xs[None] >= boxes[:, 0:1]) & (xs[None] < boxes[:, 2:3])  # (N, W)
    return inside_y[:, :, None] & inside_x[:, None, :]


def _regions(maps: Tensor, regions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Flat maps (float64), flat bool regions and which rows have a region at all (a row of
    NaN, or one with no pixel in it, has none)."""
    if regions.shape != maps.shape:
        raise ValueError(f"expected regions {tuple(maps.shape)} like the maps, got {tuple(regions.shape)}")
    regions = regions.to(maps.device)
    defined = ~regions.isnan().flatten(1).any(dim=1) if regions.is_floating_point() else None
    inside = regions.nan_to_num(0.0).bool() if regions.is_floating_point() else regions.bool()
    inside = inside.flatten(1)
    has = inside.any(dim=1) if defined is None else defined & inside.any(dim=1)
    return maps.detach().double().flatten(1), inside, has


def pointing_game(maps: Tensor, regions: Tensor) -> Tensor:
    """(N,) 1.0 where a pixel holding the map's largest value lies in the region (any, when
    several share it), else 0.0; NaN where the row has no region.  Quantus's
    ``PointingGame`` (unweighted)."""
    flat, inside, has = _regions(maps, regions)
    top = flat == flat.amax(dim=1, keepdim=True)
    hit = (top & inside).any(dim=1).double()
    return torch.where(has, hit, torch.full_like(hit, math.nan)).to(maps.dtype)


def rank_accuracy(maps: Tensor, regions: Tensor) -> Tensor:
    """(N,) the share of the K highest-ranked pixels of each map that lie in its region of K
    pixels (ties in the order of their index, as :func:`.metric_maps.pixel_order`); NaN
    where the row has no region.  Quantus's ``RelevanceRankAccuracy``."""
    from cnnvis_tasks.mechanisms.metric_maps import pixel_order, pixel_ranks

    flat, inside, has = _regions(maps, regions)
    ranks = pixel_ranks(pixel_order(flat))
    size = inside.sum(dim=1, keepdim=True)
    hits = (inside & (ranks < size)).sum(dim=1).double()
    share = hits / size[:, 0].clamp_min(1).double()
    return torch.where(has, share, torch.full_like(share, math.nan)).to(maps.dtype)
