"""Deletion and insertion (Petsiuk et al. 2018): pixels are removed from the image
(deletion) or put back into a blurred copy (insertion) in order of attribution, in a
fixed number of steps; the target class probability along the way and the area under
each curve.  A faithful map has a low deletion area and a high insertion area.

Every copy goes through the model in chunks of at most ``batch_size`` under
``torch.inference_mode()`` (:func:`.attribution.copy_chunks`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from cnnvis_tasks.mechanisms.attribution import copies_per_forward, copy_chunks
from cnnvis_tasks.mechanisms.layout import forward_layout
from cnnvis_tasks.mechanisms.metric_maps import check_maps, pixel_order, pixel_ranks, target_scores
from cnnvis_tasks.mechanisms.time_budget import check_time_budget


def gaussian_blur(inputs: Tensor, sigma: float = 5.0, size: int = 11) -> Tensor:
    """Each channel blurred by a ``size`` x ``size`` Gaussian of standard deviation
    ``sigma`` (Petsiuk et al.'s insertion start: 11 and 5), edges replicated."""
    radius = size // 2
    x = torch.arange(size, dtype=inputs.dtype, device=inputs.device) - radius
    line = torch.exp(-(x**2) / (2 * sigma**2))
    line = line / line.sum()
    channels = inputs.shape[1]
    padded = F.pad(inputs, (radius, radius, radius, radius), mode="replicate")
    rows = F.conv2d(padded, line.view(1, 1, 1, size).expand(channels, 1, 1, size).contiguous(), groups=channels)
    return F.conv2d(rows, line.view(1, 1, size, 1).expand(channels, 1, size, 1).contiguous(), groups=channels)


def step_bounds(pixels: int, steps: int) -> list[int]:
    """How many pixels have moved after each of ``steps`` steps (``steps + 1`` counts, 0 to ``pixels``)."""
    if steps < 1:
        raise ValueError("deletion and insertion need at least 1 step")
    return [k * pixels // steps for k in range(steps + 1)]


def curve_area(curves: Tensor, fractions: Tensor) -> Tensor:
    """(N,) the trapezoid-rule area under (N, K) curves sampled at ``fractions`` (K,)."""
    return torch.trapezoid(curves, fractions.to(curves.dtype), dim=-1)


@torch.inference_mode()
def deletion_insertion(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    maps: Tensor,
    *,
    steps: int = 28,
    fill: Tensor | float = 0.0,
    blur_sigma: float = 5.0,
    blur_size: int = 11,
    batch_size: int = 16,
) -> dict[str, Tensor]:
    """Petsiuk et al.'s deletion and insertion curves of each image's target class
    probability, pixels moved in ``pixel_order(maps)`` in ``steps`` equal steps.

    Deletion replaces pixels (every channel) by ``fill``: by default 0, which on
    normalised inputs is the data set's mean colour (Petsiuk et al. fill their
    normalised tensors with zeros), so the removed part carries no edge of its own.
    Insertion starts from :func:`gaussian_blur` of the image and puts the original
    pixels back.  ``steps`` = 28 moves 224 x 8 pixels a step at 224 x 224, as theirs.

    Returns ``deletion`` and ``insertion`` (N, steps + 1), ``fractions`` (steps + 1,)
    of pixels moved, and ``deletion_auc`` / ``insertion_auc`` (N,): trapezoid areas
    over the fractions 0 to 1."""
    check_maps(inputs, maps)
    n, _, height, width = inputs.shape
    pixels = height * width
    bounds = torch.tensor(step_bounds(pixels, steps), device=inputs.device)
    ranks = pixel_ranks(pixel_order(maps)).to(inputs.device)
    fill = torch.as_tensor(fill, dtype=inputs.dtype, device=inputs.device)
    shared_fill = fill.dim() < 4 or fill.shape[0] == 1  # one deleted-everything image for every image
    fill = fill.expand_as(inputs)
    blurred = gaussian_blur(inputs, blur_sigma, blur_size)
    points = steps + 1
    # copies 0..steps: deletion after k steps; steps+1..: insertion after k steps.  Three need
    # no map and no copy of their own: deletion's first and insertion's last are the image
    # itself (one forward for both), deletion's last is the fill (one for every image)
    curves = torch.empty(n, 2 * points, dtype=torch.float32, device=inputs.device)
    untouched = [0, points - 1, 2 * points - 1]
    images_per_forward = copies_per_forward(batch_size, pixels, inputs.device, forward_only=True)
    shared = model(forward_layout(fill[:1])).float() if shared_fill else None
    for start in range(0, n, images_per_forward):
        check_time_budget()
        chunk = slice(start, start + images_per_forward)
        scores = target_scores(model(forward_layout(inputs[chunk])).float(), targets[chunk], "probability")
        curves[chunk, 0] = curves[chunk, 2 * points - 1] = scores
        logits = shared.expand(len(targets[chunk]), -1) if shared_fill else model(forward_layout(fill[chunk])).float()
        curves[chunk, points - 1] = target_scores(logits, targets[chunk], "probability")
    varying = torch.tensor([k for k in range(2 * points) if k not in untouched], device=inputs.device)
    for owners, slot in copy_chunks(n, len(varying), batch_size, inputs.device, pixels=pixels, forward_only=True):
        which = varying[slot]
        deleting = (which < points).view(-1, 1, 1, 1)
        moved = ranks[owners] < bounds[which % points, None]
        moved = moved.view(-1, 1, height, width)
        start = torch.where(deleting, inputs[owners], blurred[owners])
        finish = torch.where(deleting, fill[owners], inputs[owners])
        logits = model(forward_layout(torch.where(moved, finish, start)))
        curves[owners, which] = target_scores(logits.float(), targets[owners], "probability")
    fractions = bounds.double() / pixels
    deletion, insertion = curves[:, :points], curves[:, points:]
    return {
        "deletion": deletion,
        "insertion": insertion,
        "fractions": fractions.float(),
        "deletion_auc": curve_area(deletion.double(), fractions).float(),
        "insertion_auc": curve_area(insertion.double(), fractions).float(),
    }
