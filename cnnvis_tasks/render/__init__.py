"""Turning technique tensors into pictures (uint8 arrays, H x W x 3).

Nothing here computes a technique or writes a file.  Degenerate input (a
constant or all-zero map) renders black and is reported through the returned
flag, never as NaN or an exception.

The work is done in NumPy, in float32 and in the order of operations of the
torch code it replaced (pixel for pixel the same pictures): NumPy runs on the
calling thread and releases the GIL, so rows render on the runner's writer
threads while torch's own threads compute the next batch, with no second team
of torch threads competing for the same cores.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from cnnvis_tasks.models.names import DEFAULT_COLORMAP, colormap_names  # noqa: F401  (colormap_names: re-exported)

MIN_TILE = 64  # grid tiles smaller than this are enlarged (nearest neighbour)
_QUANTILE_LIMIT = 16_000_000  # larger magnitudes are clipped at their maximum (a sort would cost too much)


def as_array(values: Any) -> np.ndarray:
    """A tensor (any device) or array as a float32 NumPy array, without a copy where it is one already."""
    if isinstance(values, torch.Tensor):
        values = values.detach()
        if values.device.type != "cpu":
            values = values.cpu()
        if values.dtype != torch.float32:
            values = values.float()
        return values.numpy()
    return np.asarray(values, dtype=np.float32)


def _normalized(values: np.ndarray) -> tuple[np.ndarray, bool]:
    finite = np.isfinite(values)
    if not finite.all():
        values = np.where(finite, values, np.float32(0))
    low, high = values.min(), values.max()
    span = float(high - low)
    if span <= 0 or not math.isfinite(span):
        return np.zeros(values.shape, dtype=np.float32), True
    return (values - low) / np.float32(span), False


def normalize01(values: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, bool]:
    """Min-max scale to [0, 1]; a constant or non-finite input gives zeros and True."""
    scaled, degenerate = _normalized(as_array(values))
    return torch.from_numpy(scaled), degenerate


def _bytes(values01: np.ndarray) -> np.ndarray:
    """round(255 x values) as torch's ``(x.clamp(0, 1) * 255 + 0.5).to(uint8)`` did, in place on a copy."""
    scaled = np.clip(values01, 0, 1)
    scaled *= np.float32(255)
    scaled += np.float32(0.5)
    return scaled.astype(np.uint8)


def to_uint8(image01: torch.Tensor | np.ndarray) -> np.ndarray:
    """(3, H, W) or (H, W) float in [0, 1] to an H x W x 3 uint8 array."""
    image01 = as_array(image01)
    if image01.ndim == 2:
        return np.repeat(_bytes(image01)[:, :, None], 3, axis=2)
    return _bytes(image01.transpose(1, 2, 0))


def _enlarge(tiles: np.ndarray) -> np.ndarray:
    """Nearest-neighbour upscale (N, C, h, w) by an integer factor to >= MIN_TILE."""
    factor = max(1, math.ceil(MIN_TILE / max(1, min(tiles.shape[-2:]))))
    if factor == 1:
        return tiles
    return tiles.repeat(factor, axis=-2).repeat(factor, axis=-1)


def make_grid(tiles: Any, nrow: int, padding: int = 2, pad_value: float = 0.0) -> Any:
    """(N, C, h, w) tiles in rows of ``nrow``, ``padding`` pixels of ``pad_value``
    around and between them: torchvision.utils.make_grid's layout (one tile alone
    is returned unpadded, as there), without importing torchvision.  A tensor
    gives a tensor, an array an array."""
    if isinstance(tiles, torch.Tensor):
        return torch.from_numpy(make_grid(as_array(tiles), nrow, padding, pad_value))
    count, channels, height, width = tiles.shape
    if count == 1:
        return tiles[0]
    columns = min(nrow, count)
    rows = math.ceil(count / columns)
    step_y, step_x = height + padding, width + padding
    grid = np.full((channels, step_y * rows + padding, step_x * columns + padding), pad_value, dtype=tiles.dtype)
    for k, tile in enumerate(tiles):
        y, x = divmod(k, columns)
        grid[:, y * step_y + padding : (y + 1) * step_y, x * step_x + padding : (x + 1) * step_x] = tile
    return grid


def _grid(tiles01: np.ndarray, nrow: int | None) -> np.ndarray:
    count = tiles01.shape[0]
    nrow = nrow or max(1, math.ceil(math.sqrt(count)))
    return to_uint8(make_grid(_enlarge(tiles01), nrow=nrow, padding=2, pad_value=1.0))


def channel_grid(activation: torch.Tensor, count: int = 64, nrow: int | None = None) -> tuple[np.ndarray, int]:
    """The first ``count`` channels of a (C, h, w) activation as a gray grid.

    Each channel is scaled to its own range.  Returns the picture and how many
    channels were constant (rendered black).
    """
    tiles, constant = [], 0
    for channel in as_array(activation)[:count]:
        scaled, degenerate = _normalized(channel)
        constant += degenerate
        tiles.append(scaled)
    stacked = np.stack(tiles)[:, None]
    return _grid(np.broadcast_to(stacked, (len(tiles), 3, *stacked.shape[-2:])), nrow), constant


def kernel_grid(weights: torch.Tensor, count: int = 25, nrow: int | None = None) -> np.ndarray:
    """The first ``count`` filters of (out, in, kh, kw) conv weights as a grid.

    A filter with 3 input channels is shown as RGB; otherwise its first input
    channel in gray.  Each filter is scaled to its own range.
    """
    filters = as_array(weights)[:count]
    if filters.shape[1] != 3:
        filters = np.broadcast_to(filters[:, :1], (filters.shape[0], 3, *filters.shape[-2:]))
    return _grid(np.stack([_normalized(f)[0] for f in filters]), nrow)


def gradient_color(gradient: torch.Tensor) -> tuple[np.ndarray, bool]:
    """A (3, H, W) gradient, min-max normalised over the whole tensor, as RGB."""
    scaled, degenerate = _normalized(as_array(gradient))
    return to_uint8(scaled), degenerate


def _quantile(values: np.ndarray, q: float) -> np.float32:
    """``torch.quantile(values, q)`` (linear) of finite float32 values to the last bit, from
    the two order statistics it needs rather than a sort: its rank in double precision
    from q in single, its weight in single, and torch's own lerp (NumPy's rounds otherwise)."""
    rank = float(np.float32(q)) * (values.size - 1)
    below, above = math.floor(rank), math.ceil(rank)
    ordered = np.partition(values, (below, above))
    ends = torch.tensor([[ordered[below]], [ordered[above]]])
    weight = torch.tensor([rank - below], dtype=torch.float32)
    return np.float32(torch.lerp(ends[0], ends[1], weight)[0].item())


def gradient_gray(gradient: torch.Tensor, percentile: float = 99.0) -> tuple[np.ndarray, bool]:
    """Max over channels of |gradient|, clipped at its ``percentile``, scaled to [0, 1]."""
    magnitude = np.abs(as_array(gradient)).max(axis=0)
    if magnitude.size > _QUANTILE_LIMIT:
        ceiling = magnitude.max()
    elif np.isfinite(magnitude).all():
        ceiling = _quantile(magnitude.reshape(-1), percentile / 100.0)
    else:  # NaN makes the quantile NaN: torch's own answer, whatever it is
        ceiling = torch.quantile(torch.from_numpy(magnitude).reshape(-1), percentile / 100.0).numpy()
    scaled, degenerate = _normalized(np.minimum(magnitude, np.float32(ceiling)))
    return to_uint8(scaled), degenerate


@functools.cache
def _colormap_table(colormap: str) -> tuple[np.ndarray, np.ndarray]:
    """The colormap's N colours as uint8 RGB, rounded as each picture used to round
    them, and the same as float32 fractions of 255 (for overlays)."""
    import matplotlib  # only here: its import is half a second

    cmap = matplotlib.colormaps[colormap]
    table = (cmap(np.arange(cmap.N))[:, :3] * 255 + 0.5).astype(np.uint8)
    return table, table.astype(np.float32) / np.float32(255)


def _color_index(map01: np.ndarray, count: int) -> np.ndarray:
    """Each value's entry by matplotlib's rule: floor(value x N), 1.0 the last."""
    scaled = np.clip(map01, 0, 1)
    scaled *= np.float32(count)
    return np.minimum(scaled.astype(np.intp), count - 1)


def heatmap(map01: torch.Tensor | np.ndarray, colormap: str = DEFAULT_COLORMAP) -> np.ndarray:
    """A (H, W) map in [0, 1] coloured with a matplotlib colormap, as RGB uint8."""
    table, _ = _colormap_table(colormap)
    return np.take(table, _color_index(as_array(map01), len(table)), axis=0)


def overlay(
    image01: torch.Tensor | np.ndarray,
    map01: torch.Tensor | np.ndarray,
    alpha: float = 0.5,
    colormap: str = DEFAULT_COLORMAP,
) -> np.ndarray:
    """Blend the coloured map over a (3, H, W) image: (1 - alpha) * image + alpha * heat."""
    table, fractions = _colormap_table(colormap)
    blended = np.take(fractions, _color_index(as_array(map01), len(table)), axis=0)
    blended *= np.float32(alpha)
    blended += np.float32(1 - alpha) * as_array(image01).transpose(1, 2, 0)
    return _bytes(blended)


def _figure_pixels(figure: Any) -> np.ndarray:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[:, :, :3].copy()


def metric_curves(curves: dict[str, Sequence[float]], title: str = "", dpi: int = 80) -> np.ndarray:
    """One image's trust-metric curves as an RGB uint8 picture: deletion and insertion
    (target probability against the fraction of pixels changed), ROAD's most- and
    least-relevant-first changes of the target logit at their fractions, and the randomisation correlation
    per stage; panels without data are left out.  Figures are made without pyplot, so
    writer threads may draw side by side."""
    from matplotlib.figure import Figure

    panels = [
        name
        for name, keys in (
            ("deletion", ("deletion", "insertion")),
            ("road", ("road_morf", "road_lerf")),
            ("randomisation", ("randomisation",)),
        )
        if any(curves.get(key) for key in keys)
    ] or ["deletion"]
    figure = Figure(figsize=(2.6 * len(panels), 2.4), dpi=dpi, layout="constrained")
    if title:
        figure.suptitle(title, fontsize=8)
    for axes, panel in zip(figure.subplots(1, len(panels), squeeze=False)[0], panels):
        axes.tick_params(labelsize=6)
        if panel == "deletion":
            for key, colour in (("deletion", "tab:red"), ("insertion", "tab:green")):
                values = list(curves.get(key) or [])
                if values:
                    axes.plot(np.linspace(0, 1, len(values)), values, color=colour, label=key)
            axes.set_xlabel("fraction of pixels", fontsize=7)
            axes.set_ylabel("target probability", fontsize=7)
        elif panel == "road":
            for key, colour, label in (("road_morf", "tab:red", "MoRF"), ("road_lerf", "tab:green", "LeRF")):
                values = list(curves.get(key) or [])
                if values:
                    fractions = np.arange(1, len(values) + 1) / (len(values) + 1)
                    axes.plot(fractions, values, marker="o", markersize=3, color=colour, label=label)
            axes.set_xlabel("fraction imputed (ROAD)", fontsize=7)
            axes.set_ylabel("change in the target logit", fontsize=7)
        else:
            values = [np.nan if v is None else v for v in curves.get("randomisation") or []]
            axes.plot(np.arange(1, len(values) + 1), values, marker="o", markersize=3, color="tab:blue")
            axes.set_xticks(np.arange(1, len(values) + 1))
            axes.set_ylim(-1.05, 1.05)
            axes.set_xlabel("layers randomised (stages)", fontsize=7)
            axes.set_ylabel("rank correlation", fontsize=7)
        if panel == "deletion":
            axes.set_ylim(-0.02, 1.02)
        if panel != "randomisation":
            axes.legend(fontsize=6)
    return _figure_pixels(figure)


def method_curves(means: dict[str, dict[str, list[float]]], title: str = "", dpi: int = 90) -> np.ndarray | None:
    """Each method's curves averaged over a data set (``{method: {curve: values}}``, see
    :func:`cnnvis_tasks.techniques.metrics.mean_curves`), as one RGB uint8 picture: deletion,
    insertion, and the randomisation correlation per stage, one line per method; None
    when there is nothing to draw."""
    from matplotlib.figure import Figure

    panels = [
        (key, label)
        for key, label in (
            ("deletion", "deletion: target probability (lower is better)"),
            ("insertion", "insertion: target probability (higher is better)"),
            ("randomisation", "randomisation: rank correlation (lower: explains the model)"),
        )
        if any(key in curves for curves in means.values())
    ]
    if not panels:
        return None
    figure = Figure(figsize=(3.6 * len(panels), 3.0), dpi=dpi, layout="constrained")
    if title:
        figure.suptitle(title, fontsize=9)
    for axes, (key, label) in zip(figure.subplots(1, len(panels), squeeze=False)[0], panels):
        axes.tick_params(labelsize=7)
        axes.set_title(label, fontsize=7)
        for method, curves in sorted(means.items()):
            values = [np.nan if v is None else v for v in curves.get(key) or []]
            if not values:
                continue
            if key == "randomisation":
                axes.plot(np.arange(1, len(values) + 1), values, marker="o", markersize=3, label=method)
                axes.set_xticks(np.arange(1, len(values) + 1))
                axes.set_xlabel("layers randomised, from the head (stages)", fontsize=7)
                axes.set_ylim(-1.05, 1.05)
            else:
                axes.plot(np.linspace(0, 1, len(values)), values, label=method)
                axes.set_xlabel(f"fraction of pixels {'removed' if key == 'deletion' else 'inserted'}", fontsize=7)
        axes.legend(fontsize=6)
    return _figure_pixels(figure)
