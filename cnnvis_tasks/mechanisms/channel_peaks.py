"""Where each channel of a layer responds: its peak per image, and the input patch that peak sees.

* :func:`channel_peaks`: per image and channel, the score (the maximum, or the mean,
  of the channel's activation over positions) and the position of the maximum.
* :func:`receptive_field`: the side of the input square one position of a layer
  sees, measured from the gradient of the unit at the centre of the grid: the
  extent of the pixels it depends on (its theoretical receptive field).  Where that
  is (nearly) the whole input (attention, global pooling inside the network, very
  deep layers), the side of the square around the unit that holds
  :data:`EFFECTIVE_SHARE` of the gradient's mass instead (its effective receptive
  field, Luo et al. 2016).
* :func:`peak_boxes`: the square patch of that side around each peak, on the input.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from cnnvis_tasks.mechanisms.capture import LayerTap, captured_feature_map

STATISTICS = ("max", "mean")
EFFECTIVE_SHARE = 0.9  # of the gradient's mass, where the theoretical field is the whole input
WHOLE_INPUT = 0.9  # a theoretical field this share of the input's side (or more) counts as all of it


def channel_peaks(activation: Tensor, statistic: str = "max") -> tuple[Tensor, Tensor]:
    """``activation`` (N, C, h, w) -> score (N, C) and the flat position of each channel's
    maximum (N, C), row-major on the h x w grid."""
    if statistic not in STATISTICS:
        raise ValueError(f"statistic must be one of {', '.join(STATISTICS)}, not {statistic!r}")
    flat = activation.flatten(2).float()
    peak, position = flat.max(dim=2)
    return (peak if statistic == "max" else flat.mean(dim=2)), position


def receptive_field(model: nn.Module, layer: str, inputs: Tensor) -> tuple[int, int]:
    """(side in input pixels, grid (h, w)) for ``layer`` of ``model`` on inputs shaped like
    ``inputs``: see the module doc."""
    # a seeded noise input, not a data set's image: the same field whichever images a job has
    generator = torch.Generator().manual_seed(0)
    probe = torch.randn((1, *inputs.shape[1:]), generator=generator, dtype=torch.float32)
    probe = probe.to(device=inputs.device, dtype=inputs.dtype).requires_grad_(True)
    with torch.enable_grad():
        activation = captured_feature_map(LayerTap(model, [layer])(probe), layer, model)
        h, w = activation.shape[-2:]
        activation[:, :, h // 2, w // 2].abs().sum().backward()
    mass = probe.grad.detach().abs().sum(dim=(0, 1)).double()  # (H, W)
    height, width = mass.shape
    rows = torch.nonzero(mass.sum(dim=1) > 0).flatten()
    cols = torch.nonzero(mass.sum(dim=0) > 0).flatten()
    if len(rows) == 0:  # the unit does not depend on the input (a constant): one cell of the grid
        return max(round(height / h), round(width / w)), (h, w)
    side = int(max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1))
    if side < WHOLE_INPUT * max(height, width):
        return side, (h, w)
    centre = ((h // 2 + 0.5) * height / h, (w // 2 + 0.5) * width / w)
    total = float(mass.sum())
    low, high = max(round(height / h), round(width / w), 1), max(height, width)
    while low < high:  # the smallest square around the unit holding EFFECTIVE_SHARE of the mass
        middle = (low + high) // 2
        y0, y1 = _span(centre[0], middle, height)
        x0, x1 = _span(centre[1], middle, width)
        if float(mass[y0:y1, x0:x1].sum()) >= EFFECTIVE_SHARE * total:
            high = middle
        else:
            low = middle + 1
    return low, (h, w)


def _span(middle: float, side: int, extent: int) -> tuple[int, int]:
    start = int(round(middle - side / 2))
    start = min(max(start, 0), max(extent - side, 0))
    return start, min(start + side, extent)


def peak_boxes(position: Tensor, grid: tuple[int, int], side: int, size: tuple[int, int]) -> Tensor:
    """The square of ``side`` around each peak (flat positions on ``grid`` (h, w)), on an input of
    ``size`` (width, height), moved to lie inside it: (..., 4) as x0, y0, x1, y1 in input pixels."""
    h, w = grid
    width, height = size
    y = (torch.div(position, w, rounding_mode="floor").double() + 0.5) * (height / h)
    x = (torch.remainder(position, w).double() + 0.5) * (width / w)
    corners = []
    for middle, extent in ((x, width), (y, height)):
        half = min(side, extent) / 2
        low = torch.clamp(middle - half, min=0.0, max=extent - 2 * half)
        corners.append((low, low + 2 * half))
    (x0, x1), (y0, y1) = corners
    return torch.stack([x0, y0, x1, y1], dim=-1).float()
