"""ROAD (Rong et al. 2022, "Remove And Debias"): a share of the most (or least)
relevant pixels is replaced by noisy linear imputation from their neighbours; the
change in the target score.

The imputation is CPU work (a sparse linear system per copy, scipy; a chunk's systems are
solved on as many threads as torch uses); the copies go through the model in chunks of
at most ``batch_size`` under ``torch.inference_mode()`` (:func:`.attribution.copy_chunks`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch import Tensor, nn

from cnnvis_tasks.mechanisms.attribution import copy_chunks
from cnnvis_tasks.mechanisms.layout import forward_layout
from cnnvis_tasks.mechanisms.metric_maps import SCORES, check_maps, target_scores

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


def imputed_values(image: Tensor, removed: Tensor) -> Tensor | None:
    """(C, K) values :func:`impute_linear` gives the K ``removed`` pixels of ``image`` (C, H, W,
    CPU), in the image's dtype; None when nothing is removed."""
    mask = removed.numpy()
    if not mask.any():
        return None
    return torch.from_numpy(impute_linear(image.numpy(), mask)).to(image.dtype)


def road_copy(
    image: Tensor,
    removed: Tensor,
    noise: float,
    generator: torch.Generator | None,
    solution: Tensor | None = None,
) -> Tensor:
    """``image`` (C, H, W, CPU) with its ``removed`` pixels imputed (:func:`impute_linear`;
    ``solution``: :func:`imputed_values`, when already solved) plus Gaussian noise of
    standard deviation ``noise``."""
    out = image.clone()
    mask = removed.numpy()
    if not mask.any():
        return out
    if solution is None:
        solution = imputed_values(image, removed)
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
    check_maps(inputs, maps)
    n, channels, height, width = inputs.shape
    if score not in SCORES:
        raise ValueError(f"unknown score {score!r}; expected one of {SCORES}")
    masks = torch.cat([removal_masks(maps, fractions, order) for order in orders], dim=1)  # (N, O*F, H, W)
    host = inputs.detach().float().cpu()
    # each image its own generator, drawn copy by copy: an image's noise does not depend on its batch
    generators = [torch.Generator().manual_seed(seed) for _ in range(n)]
    base = torch.cat(
        [
            target_scores(
                model(forward_layout(inputs[start : start + batch_size])).float(),
                targets[start : start + batch_size],
                score,
            )
            for start in range(0, n, max(1, batch_size))
        ]
    )
    copies = masks.shape[1]
    after = torch.empty(n, copies, dtype=torch.float32, device=inputs.device)
    # SuperLU lets go of the GIL while it factorises: a chunk's systems are solved side by
    # side (NumPy and SciPy only: the threads need no inference mode); the noise is then
    # drawn copy by copy, in order, as before
    with ThreadPoolExecutor(max_workers=max(1, torch.get_num_threads())) as solvers:
        for owners, which in copy_chunks(
            n, copies, batch_size, inputs.device, pixels=height * width, forward_only=True
        ):
            pairs = list(zip(owners.tolist(), which.tolist()))
            solutions = solvers.map(lambda pair: imputed_values(host[pair[0]], masks[pair[0], pair[1]]), pairs)
            batch = torch.stack(
                [
                    road_copy(host[o], masks[o, k], noise, generators[o], solution)
                    for (o, k), solution in zip(pairs, solutions)
                ]
            )
            logits = model(forward_layout(batch.to(inputs.device, inputs.dtype)))
            after[owners, which] = target_scores(logits.float(), targets[owners], score)
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
