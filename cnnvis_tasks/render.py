"""Turning technique tensors into pictures (uint8 arrays, H x W x 3).

Nothing here computes a technique or writes a file.  Degenerate input (a
constant or all-zero map) renders black and is reported through the returned
flag, never as NaN or an exception.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .names import DEFAULT_COLORMAP, colormap_names  # noqa: F401  (colormap_names: re-exported)

MIN_TILE = 64  # grid tiles smaller than this are enlarged (nearest neighbour)


def normalize01(values: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """Min-max scale to [0, 1]; a constant or non-finite input gives zeros and True."""
    values = values.detach().float()
    finite = torch.isfinite(values)
    if not bool(finite.all()):
        values = torch.where(finite, values, torch.zeros_like(values))
    low, high = values.min(), values.max()
    span = float(high - low)
    if span <= 0 or not math.isfinite(span):
        return torch.zeros_like(values), True
    return (values - low) / span, False


def to_uint8(image01: torch.Tensor) -> np.ndarray:
    """(3, H, W) or (H, W) float in [0, 1] to an H x W x 3 uint8 array."""
    image01 = image01.detach().float().cpu().clamp(0, 1)
    if image01.dim() == 2:
        image01 = image01.unsqueeze(0).expand(3, -1, -1)
    return (image01 * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).numpy()


def _enlarge(tiles: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour upscale (N, C, h, w) by an integer factor to >= MIN_TILE."""
    factor = max(1, math.ceil(MIN_TILE / max(1, min(tiles.shape[-2:]))))
    if factor == 1:
        return tiles
    return tiles.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)


def make_grid(tiles: torch.Tensor, nrow: int, padding: int = 2, pad_value: float = 0.0) -> torch.Tensor:
    """(N, C, h, w) tiles in rows of ``nrow``, ``padding`` pixels of ``pad_value``
    around and between them: torchvision.utils.make_grid's layout (one tile alone
    is returned unpadded, as there), without importing torchvision."""
    count, channels, height, width = tiles.shape
    if count == 1:
        return tiles[0]
    columns = min(nrow, count)
    rows = math.ceil(count / columns)
    step_y, step_x = height + padding, width + padding
    grid = tiles.new_full((channels, step_y * rows + padding, step_x * columns + padding), pad_value)
    for k, tile in enumerate(tiles):
        y, x = divmod(k, columns)
        grid[:, y * step_y + padding : (y + 1) * step_y, x * step_x + padding : (x + 1) * step_x] = tile
    return grid


def _grid(tiles01: torch.Tensor, nrow: int | None) -> np.ndarray:
    count = tiles01.shape[0]
    nrow = nrow or max(1, math.ceil(math.sqrt(count)))
    grid = make_grid(_enlarge(tiles01), nrow=nrow, padding=2, pad_value=1.0)
    return to_uint8(grid)


def channel_grid(activation: torch.Tensor, count: int = 64, nrow: int | None = None) -> tuple[np.ndarray, int]:
    """The first ``count`` channels of a (C, h, w) activation as a gray grid.

    Each channel is scaled to its own range.  Returns the picture and how many
    channels were constant (rendered black).
    """
    channels = activation.detach().float().cpu()[:count]
    tiles, constant = [], 0
    for channel in channels:
        scaled, degenerate = normalize01(channel)
        constant += degenerate
        tiles.append(scaled)
    return _grid(torch.stack(tiles).unsqueeze(1).expand(-1, 3, -1, -1), nrow), constant


def kernel_grid(weights: torch.Tensor, count: int = 25, nrow: int | None = None) -> np.ndarray:
    """The first ``count`` filters of (out, in, kh, kw) conv weights as a grid.

    A filter with 3 input channels is shown as RGB; otherwise its first input
    channel in gray.  Each filter is scaled to its own range.
    """
    filters = weights.detach().float().cpu()[:count]
    filters = filters if filters.shape[1] == 3 else filters[:, :1].expand(-1, 3, -1, -1)
    tiles = torch.stack([normalize01(f)[0] for f in filters])
    return _grid(tiles, nrow)


def gradient_color(gradient: torch.Tensor) -> tuple[np.ndarray, bool]:
    """A (3, H, W) gradient, min-max normalised over the whole tensor, as RGB."""
    scaled, degenerate = normalize01(gradient.cpu())
    return to_uint8(scaled), degenerate


def gradient_gray(gradient: torch.Tensor, percentile: float = 99.0) -> tuple[np.ndarray, bool]:
    """Max over channels of |gradient|, clipped at its ``percentile``, scaled to [0, 1]."""
    magnitude = gradient.detach().float().cpu().abs().amax(dim=0)
    ceiling = (
        torch.quantile(magnitude.flatten(), percentile / 100.0) if magnitude.numel() <= 16_000_000 else magnitude.max()
    )
    scaled, degenerate = normalize01(magnitude.clamp(max=float(ceiling)))
    return to_uint8(scaled), degenerate


def heatmap(map01: torch.Tensor, colormap: str = DEFAULT_COLORMAP) -> np.ndarray:
    """A (H, W) map in [0, 1] coloured with a matplotlib colormap, as RGB uint8."""
    import matplotlib  # only here: its import is half a second

    cmap = matplotlib.colormaps[colormap]
    rgba = cmap(map01.detach().float().cpu().clamp(0, 1).numpy())
    return (rgba[..., :3] * 255 + 0.5).astype(np.uint8)


def overlay(
    image01: torch.Tensor, map01: torch.Tensor, alpha: float = 0.5, colormap: str = DEFAULT_COLORMAP
) -> np.ndarray:
    """Blend the coloured map over a (3, H, W) image: (1 - alpha) * image + alpha * heat."""
    heat = torch.from_numpy(heatmap(map01, colormap)).float().permute(2, 0, 1) / 255.0
    blended = (1 - alpha) * image01.detach().float().cpu() + alpha * heat
    return to_uint8(blended)
