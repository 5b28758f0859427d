"""Metrics of attribution maps: do they say what the model does?

Each metric is a function from a model, inputs (N, C, H, W, in the model's input
space), target classes (N,) and maps to numbers per image:

* :func:`deletion_insertion` (Petsiuk et al. 2018): pixels are removed from the
  image (deletion) or put back into a blurred copy (insertion) in order of
  attribution, in a fixed number of steps; the target class probability along the
  way and the area under each curve.  A faithful map has a low deletion area and a
  high insertion area.
* :func:`road` and :func:`road_combined` (Rong et al. 2022, "ROAD"): a share of the
  most (or least) relevant pixels is replaced by noisy linear imputation from their
  neighbours; the change in the target score.
* :func:`randomisation` (Adebayo et al. 2018): the Spearman rank correlation between
  the maps of the trained model and those of copies whose layers are re-initialised
  in cascade from the head down.  A map that depends on what the model learned
  decorrelates.
* :func:`localisation`: the share of positive attribution inside a bounding box.

Every model input goes through in chunks of at most ``batch_size`` copies under
``torch.inference_mode()`` (:func:`.attribution.copy_chunks`).  ROAD's imputation
is CPU work (a sparse linear system per copy, scipy).
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .attribution import copy_chunks
from .layout import forward_layout

REDUCTIONS = ("sum", "abs_sum", "max_abs")
SCORES = ("logit", "probability")
ORDERS = ("most", "least")
FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
# Rong et al.'s neighbour weights: the four edge neighbours 1/6 each, the four corners 1/12.
NEIGHBOUR_WEIGHTS = (
    ((1, 1), 1 / 12),
    ((0, 1), 1 / 6),
    ((-1, 1), 1 / 12),
    ((1, -1), 1 / 12),
    ((0, -1), 1 / 6),
    ((-1, -1), 1 / 12),
    ((1, 0), 1 / 6),
    ((-1, 0), 1 / 6),
)


# ---------------------------------------------------------------------------- maps


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


def _check_maps(inputs: Tensor, maps: Tensor) -> None:
    if maps.ndim != 3 or maps.shape[0] != inputs.shape[0] or maps.shape[1:] != inputs.shape[2:]:
        raise ValueError(
            f"maps must be (N, H, W) at the inputs' size {tuple(inputs.shape[2:])} "
            f"(see as_pixel_map), got {tuple(maps.shape)}"
        )


def _target_scores(logits: Tensor, targets: Tensor, score: str) -> Tensor:
    if score == "probability":
        return logits.softmax(dim=1).gather(1, targets[:, None])[:, 0]
    if score == "logit":
        return logits.gather(1, targets[:, None])[:, 0]
    raise ValueError(f"unknown score {score!r}; expected one of {SCORES}")


# ------------------------------------------------------------ deletion / insertion


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
    _check_maps(inputs, maps)
    n, _, height, width = inputs.shape
    pixels = height * width
    bounds = torch.tensor(step_bounds(pixels, steps), device=inputs.device)
    ranks = pixel_ranks(pixel_order(maps)).to(inputs.device)
    fill = torch.as_tensor(fill, dtype=inputs.dtype, device=inputs.device).expand_as(inputs)
    blurred = gaussian_blur(inputs, blur_sigma, blur_size)
    points = steps + 1
    # copies 0..steps: deletion after k steps; steps+1..: insertion after k steps
    curves = torch.empty(n, 2 * points, dtype=torch.float32, device=inputs.device)
    for owners, which in copy_chunks(n, 2 * points, batch_size, inputs.device, pixels=pixels):
        deleting = (which < points).view(-1, 1, 1, 1)
        moved = ranks[owners] < bounds[which % points, None]
        moved = moved.view(-1, 1, height, width)
        start = torch.where(deleting, inputs[owners], blurred[owners])
        finish = torch.where(deleting, fill[owners], inputs[owners])
        logits = model(forward_layout(torch.where(moved, finish, start)))
        curves[owners, which] = _target_scores(logits.float(), targets[owners], "probability")
    fractions = bounds.double() / pixels
    deletion, insertion = curves[:, :points], curves[:, points:]
    return {
        "deletion": deletion,
        "insertion": insertion,
        "fractions": fractions.float(),
        "deletion_auc": curve_area(deletion.double(), fractions).float(),
        "insertion_auc": curve_area(insertion.double(), fractions).float(),
    }


# --------------------------------------------------------------------------- ROAD


@functools.lru_cache(maxsize=16)
def dissection_ranks(height: int, width: int, leaf: int = 8) -> np.ndarray:
    """(H*W,) each pixel's place in a nested-dissection order of the H x W grid:
    halves first, the row or column between them last, recursively.  Unknowns
    numbered in this order give the imputation's 3 x 3 stencil system an LU
    factorisation with little fill-in (about half the time of SuperLU's own
    column ordering at 224 x 224)."""
    order: list[np.ndarray] = []
    grid = np.arange(height * width).reshape(height, width)

    def split(top: int, bottom: int, left: int, right: int) -> None:
        if (bottom - top) * (right - left) <= leaf * leaf:
            order.append(grid[top:bottom, left:right].ravel())
        elif bottom - top >= right - left:
            middle = (top + bottom) // 2
            split(top, middle, left, right)
            split(middle + 1, bottom, left, right)
            order.append(grid[middle, left:right])
        else:
            middle = (left + right) // 2
            split(top, bottom, left, middle)
            split(top, bottom, middle + 1, right)
            order.append(grid[top:bottom, middle])

    split(0, height, 0, width)
    ranks = np.empty(height * width, dtype=np.int64)
    ranks[np.concatenate(order)] = np.arange(height * width)
    return ranks


def impute_linear(image: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """(C, K) values for the K ``removed`` pixels (an (H, W) bool mask) of a
    (C, H, W) ``image``, in the order of their flat index: each the weighted mean
    of its neighbours (:data:`NEIGHBOUR_WEIGHTS`, those inside the image, kept or
    imputed alike), all solved together as one sparse linear system (Rong et al.)."""
    from scipy.sparse import csc_matrix
    from scipy.sparse.linalg import splu

    channels, height, width = image.shape
    flat = image.reshape(channels, -1).astype(np.float64)
    unknown = np.flatnonzero(removed.ravel())
    count = len(unknown)
    if count == 0:
        return np.zeros((channels, 0))
    # number the unknowns in nested-dissection order (see dissection_ranks)
    placed = unknown[np.argsort(dissection_ranks(height, width)[unknown], kind="stable")]
    variable = np.full(height * width, -1, dtype=np.int64)
    variable[placed] = np.arange(count)
    rows_at, cols_at = np.divmod(placed, width)
    weight_inside = np.zeros(count)
    right_side = np.zeros((count, channels))
    rows, cols, values = [np.arange(count)], [np.arange(count)], []
    for (down, across), weight in NEIGHBOUR_WEIGHTS:
        r, c = rows_at + down, cols_at + across
        inside = (r >= 0) & (r < height) & (c >= 0) & (c < width)
        weight_inside += weight * inside
        equation = np.flatnonzero(inside)
        neighbour = r[inside] * width + c[inside]
        other = variable[neighbour]
        imputed = other >= 0
        rows.append(equation[imputed])
        cols.append(other[imputed])
        values.append(np.full(int(imputed.sum()), weight))
        known = ~imputed
        right_side[equation[known]] -= weight * flat[:, neighbour[known]].T
    values.insert(0, -weight_inside)
    system = csc_matrix((np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))), shape=(count, count))
    # symmetric and negative definite (every block of unknowns touches a known pixel): no pivoting needed
    factors = splu(system, permc_spec="NATURAL", diag_pivot_thresh=0.0, options={"SymmetricMode": True})
    solution = factors.solve(right_side)
    return solution[variable[unknown]].T


def removal_masks(maps: Tensor, fractions: Sequence[float], order: str) -> Tensor:
    """(N, F, H, W) bool: the pixels ROAD removes.  ``most``: every pixel at or above
    the (1 - fraction) quantile of its map (linear interpolation); ``least``: at or
    below the fraction quantile.  As Rong et al. and pytorch-grad-cam, equal values at
    the threshold go together, so a map with many equal values (the zeros of a
    ReLU'd CAM) may remove more than the fraction; :func:`road` reports how much."""
    if order not in ORDERS:
        raise ValueError(f"unknown order {order!r}; expected one of {ORDERS}")
    flat = maps.detach().flatten(1).double().cpu()
    levels = torch.tensor([1.0 - f if order == "most" else f for f in fractions], dtype=torch.float64)
    if not all(0.0 <= f <= 1.0 for f in fractions):
        raise ValueError(f"fractions must lie in [0, 1], got {tuple(fractions)}")
    thresholds = torch.quantile(flat, levels, dim=1).T[:, :, None]  # (N, F, 1)
    masks = flat[:, None] >= thresholds if order == "most" else flat[:, None] <= thresholds
    return masks.view(maps.shape[0], len(fractions), *maps.shape[1:])


def road_copy(image: Tensor, removed: Tensor, noise: float, generator: torch.Generator | None) -> Tensor:
    """``image`` (C, H, W, CPU) with its ``removed`` pixels imputed (:func:`impute_linear`)
    plus Gaussian noise of standard deviation ``noise``."""
    out = image.clone()
    mask = removed.numpy()
    if not mask.any():
        return out
    solution = torch.from_numpy(impute_linear(image.numpy(), mask)).to(image.dtype)
    if noise:
        # one (C, K) draw, the numbers pytorch-grad-cam draws for its imputed pixels
        solution = solution + noise * torch.randn(solution.shape, generator=generator).to(image.dtype)
    out.view(out.shape[0], -1)[:, torch.from_numpy(np.flatnonzero(mask.ravel()))] = solution
    return out


@torch.inference_mode()
def _road_changes(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    maps: Tensor,
    fractions: Sequence[float],
    orders: Sequence[str],
    noise: float,
    seed: int,
    score: str,
    batch_size: int,
) -> dict[str, Tensor]:
    _check_maps(inputs, maps)
    n, channels, height, width = inputs.shape
    if score not in SCORES:
        raise ValueError(f"unknown score {score!r}; expected one of {SCORES}")
    masks = torch.cat([removal_masks(maps, fractions, order) for order in orders], dim=1)  # (N, O*F, H, W)
    host = inputs.detach().float().cpu()
    # each image its own generator, drawn copy by copy: an image's noise does not depend on its batch
    generators = [torch.Generator().manual_seed(seed) for _ in range(n)]
    base = torch.cat(
        [
            _target_scores(
                model(forward_layout(inputs[start : start + batch_size])).float(),
                targets[start : start + batch_size],
                score,
            )
            for start in range(0, n, max(1, batch_size))
        ]
    )
    copies = masks.shape[1]
    after = torch.empty(n, copies, dtype=torch.float32, device=inputs.device)
    for owners, which in copy_chunks(n, copies, batch_size, inputs.device, pixels=height * width):
        batch = torch.stack(
            [road_copy(host[o], masks[o, k], noise, generators[o]) for o, k in zip(owners.tolist(), which.tolist())]
        )
        logits = model(forward_layout(batch.to(inputs.device, inputs.dtype)))
        after[owners, which] = _target_scores(logits.float(), targets[owners], score)
    change = (after - base[:, None]).view(n, len(orders), len(fractions))
    removed = masks.flatten(2).float().mean(dim=2).view(n, len(orders), len(fractions))
    out = {}
    for k, order in enumerate(orders):
        out[order] = change[:, k]
        out[f"{order}_removed"] = removed[:, k].to(inputs.device)
    return out


def road(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    maps: Tensor,
    *,
    fractions: Sequence[float] = FRACTIONS,
    order: str = "most",
    noise: float = 0.01,
    seed: int = 0,
    score: str = "logit",
    batch_size: int = 16,
) -> dict[str, Tensor]:
    """ROAD (Rong et al. 2022): for each fraction, the change in the target score
    (``logit`` or softmax ``probability``) when that share of the most (``order`` =
    ``most``) or least relevant pixels (:func:`removal_masks`) is imputed from its
    neighbours (:func:`impute_linear`) plus noise (standard deviation ``noise``, in
    input units; each image's from its own generator seeded with ``seed``).

    Returns ``changes`` (N, F), after minus before (a faithful map: strongly negative
    for ``most``, near zero for ``least``), and ``removed`` (N, F), the share of pixels
    actually imputed.  Equal to pytorch-grad-cam's ``ROADMostRelevantFirst(100 * (1 - f))``
    / ``ROADLeastRelevantFirst(100 * (1 - f))`` with its ``ClassifierOutputTarget``."""
    out = _road_changes(model, inputs, targets, maps, fractions, (order,), noise, seed, score, batch_size)
    return {"changes": out[order], "removed": out[f"{order}_removed"]}


def road_combined(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    maps: Tensor,
    *,
    fractions: Sequence[float] = FRACTIONS,
    noise: float = 0.01,
    seed: int = 0,
    score: str = "logit",
    batch_size: int = 16,
) -> dict[str, Tensor]:
    """Both ROAD orders in one pass, and ``combined`` (N,): (mean change removing the
    least relevant - mean change removing the most relevant) / 2, pytorch-grad-cam's
    ``ROADCombined`` (higher: more faithful).  Each image draws its noise for the
    least-relevant copies first, as ``ROADCombined`` does."""
    out = _road_changes(model, inputs, targets, maps, fractions, ("least", "most"), noise, seed, score, batch_size)
    out["combined"] = (out["least"].mean(dim=1) - out["most"].mean(dim=1)) / 2
    return out


# -------------------------------------------------------------- model randomisation


def average_ranks(values: Tensor) -> Tensor:
    """(N, M) float64 ranks 1..M of each row, tied values sharing their mean rank."""
    ranks = torch.empty(values.shape, dtype=torch.float64, device=values.device)
    for row, line in enumerate(values):
        _, inverse, counts = torch.unique(line, sorted=True, return_inverse=True, return_counts=True)
        ends = torch.cumsum(counts, 0).double()
        ranks[row] = (ends - (counts.double() - 1) / 2)[inverse]
    return ranks


def spearman(first: Tensor, second: Tensor) -> Tensor:
    """(N,) Spearman rank correlation of each pair of flattened maps, in float64
    (NaN where a map is constant)."""
    a = average_ranks(first.detach().flatten(1).double())
    b = average_ranks(second.detach().flatten(1).double())
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    return (a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1))


Stage = str | Sequence[str]


def _names(stage: Stage) -> list[str]:
    return [stage] if isinstance(stage, str) else list(stage)


def reinitialise(model: nn.Module, names: Sequence[str], seed: int) -> int:
    """Re-initialise every submodule of the modules ``names`` of ``model`` that has
    a ``reset_parameters`` (``_reset_parameters``: attention) with the global
    generators seeded with ``seed``, restored afterwards.  Returns how many tensors
    of parameters and buffers changed."""
    devices = sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})
    changed = 0
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for name in names:
            for module in model.get_submodule(name).modules():
                reset = getattr(module, "reset_parameters", None) or getattr(module, "_reset_parameters", None)
                if reset is None:
                    continue
                before = [t.clone() for t in (*module.parameters(recurse=False), *module.buffers(recurse=False))]
                with torch.no_grad():
                    reset()
                after = (*module.parameters(recurse=False), *module.buffers(recurse=False))
                changed += sum(not torch.equal(b, a) for b, a in zip(before, after))
    return changed


def randomisation(
    compute_map: Callable[[nn.Module], Tensor],
    model: nn.Module,
    stages: Sequence[Stage],
    *,
    seed: int = 0,
    absolute: bool = True,
    reference: Tensor | None = None,
) -> Tensor:
    """(len(stages), N) float64: Spearman correlation between ``compute_map(model)``
    (or ``reference``, the same maps when the caller has them already)
    and ``compute_map`` of a copy of ``model`` whose ``stages`` (module names, or lists
    of names, from the head down) are re-initialised in cascade: row k after stages
    0..k (Adebayo et al. 2018's cascading randomisation).  Stage k is re-initialised
    with seed ``seed + k`` (:func:`reinitialise`); ``model`` itself is never changed.

    ``absolute`` (default): correlate |maps|, as Adebayo et al.'s main figures do for
    gradients, whose sign flips easily; this is the stricter check (a map that only
    flips sign still counts as unchanged).  ``absolute=False``: the signed maps."""
    reference = (compute_map(model) if reference is None else reference).detach()
    randomised = copy.deepcopy(model)
    rows = []
    for k, stage in enumerate(stages):
        if not reinitialise(randomised, _names(stage), seed + k):
            raise ValueError(f"stage {stage!r} has no parameters to re-initialise")
        maps = compute_map(randomised).detach()
        if absolute:
            rows.append(spearman(reference.abs(), maps.abs()))
        else:
            rows.append(spearman(reference, maps))
    del randomised
    return torch.stack(rows)


def _owns_parameters(module: nn.Module) -> bool:
    return next(module.parameters(), None) is not None


def _blocks(module: nn.Module, prefix: str) -> list[tuple[str, nn.Module]]:
    """Parameter-owning children of ``module``, lists of blocks (Sequential, ModuleList) opened."""
    out = []
    for name, child in module.named_children():
        if not _owns_parameters(child):
            continue
        full = f"{prefix}{name}"
        if isinstance(child, (nn.Sequential, nn.ModuleList)):
            out.extend(_blocks(child, full + "."))
        else:
            out.append((full, child))
    return out


def cascade_stages(model: nn.Module, count: int = 5) -> list[list[str]]:
    """A default cascade of ``count`` stages (fewer if the model has fewer blocks),
    from the head down, for :func:`randomisation`.

    The model's *blocks* are its parameter-owning children, lists of blocks
    (``nn.Sequential``, ``nn.ModuleList``: ResNet's ``layer1``, EfficientNet's
    ``_blocks``/``features``, VGG's ``features``) opened into their members; while
    there are fewer than ``count`` blocks, the largest other block is opened too (a
    ViT's ``encoder``).  The last block (the classifier) is stage 0 alone; the others,
    from the top, are split into ``count - 1`` runs of consecutive blocks as equal in
    number as possible (the upper runs one longer).  Parameters a module holds
    directly (a ViT's position embedding) belong to no block and stay trained."""
    blocks = _blocks(model, "")
    while len(blocks) < count:
        openable = [(sum(p.numel() for p in m.parameters()), i) for i, (_, m) in enumerate(blocks) if _blocks(m, "")]
        if not openable:
            break
        _, index = max(openable)
        name, module = blocks[index]
        blocks[index : index + 1] = _blocks(module, name + ".")
    names = [name for name, _ in blocks][::-1]
    if not names:
        raise ValueError("the model has no parameters to re-initialise")
    head, rest = names[:1], names[1:]
    runs = min(count - 1, len(rest))
    if runs <= 0:
        return [head]
    sizes = [len(rest) // runs + (1 if k < len(rest) % runs else 0) for k in range(runs)]
    stages, start = [head], 0
    for size in sizes:
        stages.append(rest[start : start + size])
        start += size
    return stages


# ------------------------------------------------------------------- localisation


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
