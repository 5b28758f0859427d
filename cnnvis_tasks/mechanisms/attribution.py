"""Attributions built on an input gradient: Gradient x Input, Integrated Gradients,
SmoothGrad, and Occlusion (which needs no gradient).

The gradient wrappers take a *gradient function* ``gradient(inputs, targets)``:
the gradient of each input's target logit with respect to that input, under any
backward rule (:func:`rule_gradient`: vanilla, guided backpropagation, deconvnet).
They differ in one step:

* Gradient x Input: ``x * gradient(x)``;
* Integrated Gradients: ``(x - baseline)`` times the gradient averaged along the
  straight path from the baseline to ``x`` (Gauss-Legendre nodes, captum's
  default, or the trapezoid rule);
* SmoothGrad: the mean (or mean of squares) of any attribution over noisy copies
  of ``x``, the noise Gaussian with a standard deviation that is a fraction of
  each image's value range, drawn from a seeded generator.

Each runs many copies of an image through the model (path points, noisy copies,
occluded copies); copies of all images go through in chunks of ``batch_size``, so
memory is bounded by the batch size, not by the number of steps or samples.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import Tensor, nn

from cnnvis_tasks.mechanisms.layout import forward_layout
from cnnvis_tasks.mechanisms.time_budget import check_time_budget

GradientFn = Callable[[Tensor, Tensor], Tensor]  # (inputs, targets) -> d logit[target] / d inputs
# (inputs, targets, owners) -> attributions; owners: each input's image index (SmoothGrad's copies)
AttributionFn = Callable[[Tensor, Tensor, Tensor], Tensor]

RULES = ("gausslegendre", "trapezoid")


def rule_gradient(model: nn.Module, method: str = "vanilla") -> GradientFn:
    """The input gradient of ``model`` under a ReLU backward rule (:mod:`.relu_rules`),
    in the inputs' own precision (float64 inputs give float64 gradients)."""
    from cnnvis_tasks.mechanisms.relu_rules import METHODS, relu_backward_rule

    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")

    def gradient(inputs: Tensor, targets: Tensor) -> Tensor:
        x = inputs.detach().requires_grad_(True)
        rule = contextlib.nullcontext() if method == "vanilla" else relu_backward_rule(method)
        with torch.enable_grad():
            with rule:
                logits = model(x)
            # images are independent in eval mode: one backward of the summed scores
            (grad,) = torch.autograd.grad(logits.gather(1, targets[:, None]).sum(), x)
        return grad

    return gradient


# Pixels a batch-size's worth of copies may hold: up to 2:1 photos at 224 px keep the whole
# batch size; a far larger image (a 4000 x 20 strip is 1.8 M pixels at 96 px) goes fewer
# copies per forward, so its copies cost the memory of a batch of photos, not steps times more.
PIXELS_PER_COPY = 224 * 448


# A forward without gradient on the CPU runs fastest when its batch fits the caches: on
# 2 threads, deletion and insertion on EfficientNet-Lite0 took 24 ms per 224 px copy in
# batches of 16 and 14 ms in batches of 3 or 4 (8: 19 to 23 ms), with identical numbers
# (a copy's arithmetic did not depend on its batch; tests/test_metric_pins.py pins the
# metrics at batch sizes 1, 5 and 16).  So the metrics' copies go at most this many
# pixels per thread into one forward on the CPU.
CPU_PIXELS_PER_THREAD = 2 * 224 * 224


def copies_per_forward(batch_size: int, pixels: int, device=None, forward_only: bool = False) -> int:
    """``batch_size``, less for images of more than :data:`PIXELS_PER_COPY` pixels (at least 1);
    for copies that only go forward on the CPU (``forward_only``), at most
    :data:`CPU_PIXELS_PER_THREAD` pixels per thread as well."""
    count = max(1, min(batch_size, batch_size * PIXELS_PER_COPY // max(1, pixels)))
    if forward_only and torch.device(device or "cpu").type == "cpu":
        count = max(1, min(count, CPU_PIXELS_PER_THREAD * torch.get_num_threads() // max(1, pixels)))
    return count


def copy_chunks(
    images: int,
    copies: int,
    batch_size: int,
    device,
    by_image: bool = True,
    pixels: int = 0,
    forward_only: bool = False,
) -> Iterator[tuple[Tensor, Tensor]]:
    """``images * copies`` copies of images of ``pixels`` pixels in chunks of at most
    ``batch_size`` (:func:`copies_per_forward`; ``forward_only``: copies that need no
    gradient): (owner image, copy number) index tensors per chunk; every copy of the first
    image first (``by_image``), or copy 0 of every image first.  A time budget in force
    (:mod:`.time_budget`) is checked before each chunk."""
    total = images * copies
    batch_size = copies_per_forward(batch_size, pixels, device, forward_only)
    for start in range(0, total, batch_size):
        check_time_budget()  # a computation under a time budget stops between chunks, not after them all
        index = torch.arange(start, min(start + batch_size, total), device=device)
        yield (index // copies, index % copies) if by_image else (index % images, index // images)


def _pixels(inputs: Tensor) -> int:
    return int(inputs.shape[-2] * inputs.shape[-1])


def path_points(steps: int, rule: str = "gausslegendre") -> tuple[list[float], list[float]]:
    """Integration nodes in [0, 1] along the path and their weights (summing to 1).

    ``gausslegendre``: the Gauss-Legendre nodes mapped to [0, 1] (exact for a
    polynomial integrand of degree < 2 x steps).  ``trapezoid``: ``steps`` evenly
    spaced points from 0 to 1, the end points weighing half as much.
    """
    if rule == "gausslegendre":
        if steps < 1:
            raise ValueError("Gauss-Legendre integration needs at least 1 step")
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return (0.5 * (nodes + 1)).tolist(), (0.5 * weights).tolist()
    if rule == "trapezoid":
        if steps < 2:
            raise ValueError("the trapezoid rule needs at least 2 steps")
        weights = [1.0 / (steps - 1)] * steps
        weights[0] = weights[-1] = 0.5 / (steps - 1)
        return np.linspace(0.0, 1.0, steps).tolist(), weights
    raise ValueError(f"unknown integration rule {rule!r}; expected one of {RULES}")


def gradient_x_input(gradient: GradientFn, inputs: Tensor, targets: Tensor) -> Tensor:
    """The gradient times the input, element by element."""
    return inputs * gradient(inputs, targets)


def integrated_gradients(
    gradient: GradientFn,
    inputs: Tensor,
    baselines: Tensor,
    targets: Tensor,
    *,
    steps: int = 50,
    rule: str = "gausslegendre",
    batch_size: int = 16,
) -> Tensor:
    """``(inputs - baselines)`` times the gradient integrated along the straight path
    from each baseline to its input (Sundararajan et al. 2017)."""
    alphas, weights = path_points(steps, rule)
    alpha = torch.tensor(alphas, dtype=inputs.dtype, device=inputs.device)
    weight = torch.tensor(weights, dtype=inputs.dtype, device=inputs.device)
    baselines = baselines.expand_as(inputs)
    total = torch.zeros_like(inputs)
    # Path point by path point, every image's at once: the chunks captum's internal batches make.
    for owners, step in copy_chunks(
        inputs.shape[0], steps, batch_size, inputs.device, by_image=False, pixels=_pixels(inputs)
    ):
        start, end = baselines[owners], inputs[owners]
        points = start + alpha[step].view(-1, 1, 1, 1) * (end - start)
        grads = gradient(points, targets[owners])
        total.index_add_(0, owners, grads * weight[step].view(-1, 1, 1, 1))
    return (inputs - baselines) * total


def noise_spread(inputs: Tensor, noise: float) -> Tensor:
    """(N,) standard deviations: ``noise`` times each image's max - min."""
    flat = inputs.detach().flatten(1)
    return noise * (flat.amax(dim=1) - flat.amin(dim=1))


def smooth_grad(
    attribution: AttributionFn,
    inputs: Tensor,
    targets: Tensor,
    *,
    samples: int = 50,
    noise: float = 0.15,
    squared: bool = False,
    seed: int = 0,
    batch_size: int = 16,
) -> Tensor:
    """The mean of ``attribution`` (of its square: SmoothGrad-Squared) over ``samples``
    noisy copies of each input (Smilkov et al. 2017).

    Each image's noise comes from its own CPU generator seeded with ``seed``, one
    copy (C x H x W standard normal draws) at a time, then moved to the inputs'
    device: an image gets the same noise whatever its batch, batch size or device.
    These are the draws of ``torch.manual_seed(seed); torch.randn(samples, C, H, W)``
    whenever C x H x W is a multiple of 16 (the CPU generator's block).
    """
    n = inputs.shape[0]
    spread = noise_spread(inputs, noise)
    generators = [torch.Generator().manual_seed(seed) for _ in range(n)]
    shape = tuple(inputs.shape[1:])
    total = torch.zeros_like(inputs)
    for owners, _ in copy_chunks(n, samples, batch_size, inputs.device, pixels=_pixels(inputs)):
        draws = torch.stack([torch.randn(shape, generator=generators[o]) for o in owners.tolist()])
        noisy = inputs[owners] + draws.to(inputs.device, inputs.dtype) * spread[owners].view(-1, 1, 1, 1)
        values = attribution(noisy, targets[owners], owners)
        total.index_add_(0, owners, values * values if squared else values)
    return total / samples


@torch.inference_mode()
def target_scores(model: nn.Module, inputs: Tensor, targets: Tensor, batch_size: int = 16) -> Tensor:
    """(N,) each input's target logit, ``batch_size`` inputs per forward."""
    scores = [
        model(inputs[start : start + batch_size]).gather(1, targets[start : start + batch_size, None])[:, 0]
        for start in range(0, inputs.shape[0], max(1, batch_size))
    ]
    return torch.cat(scores)


def completeness_error(attributions: Tensor, scores: Tensor, baseline_scores: Tensor) -> tuple[Tensor, Tensor]:
    """(N,) |sum of attributions - (f(x) - f(baseline))|, absolute and relative to
    |f(x) - f(baseline)| (Integrated Gradients' completeness axiom)."""
    change = (scores - baseline_scores).double()
    error = (attributions.double().flatten(1).sum(dim=1) - change).abs()
    relative = error / change.abs().clamp_min(1e-12)
    return error.to(attributions.dtype), relative.to(attributions.dtype)


def window_starts(size: int, patch: int, stride: int) -> list[int]:
    """Where the windows start along one side: every ``stride``, the last one
    reaching the edge (cut off there when the steps do not fit exactly)."""
    return [k * stride for k in range(math.ceil((size - patch) / stride) + 1)]


@torch.inference_mode()
def occlusion(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    *,
    patch: int = 32,
    stride: int = 16,
    fill: Tensor | float = 0.0,
    batch_size: int = 16,
    scores: Tensor | None = None,
) -> Tensor:
    """(N, H, W): the drop in each image's target logit when a ``patch`` x ``patch``
    window (every channel) is set to ``fill``, averaged over the windows that cover
    each pixel (Zeiler and Fergus 2014).  The window slides by ``stride`` (at most
    ``patch``: every pixel is covered); ``fill`` broadcasts to the inputs.  ``scores``:
    the unoccluded target logits, if known."""
    n, _, height, width = inputs.shape
    ph, pw = min(patch, height), min(patch, width)
    if stride > min(ph, pw):
        raise ValueError(f"the stride ({stride}) must be at most the patch size ({min(ph, pw)})")
    tops, lefts = window_starts(height, ph, stride), window_starts(width, pw, stride)
    windows = [(top, left) for top in tops for left in lefts]
    fill = torch.as_tensor(fill, dtype=inputs.dtype, device=inputs.device).expand_as(inputs)
    if scores is None:
        scores = model(forward_layout(inputs)).gather(1, targets[:, None])[:, 0]
    drops = torch.empty(n, len(windows), dtype=scores.dtype, device=inputs.device)
    for owners, where in copy_chunks(n, len(windows), batch_size, inputs.device, pixels=_pixels(inputs)):
        occluded = inputs[owners]
        for k, (owner, window) in enumerate(zip(owners.tolist(), where.tolist())):
            top, left = windows[window]
            place = (slice(None), slice(top, top + ph), slice(left, left + pw))
            occluded[k][place] = fill[owner][place]
        drops[owners, where] = scores[owners] - model(forward_layout(occluded)).gather(1, targets[owners, None])[:, 0]
    return spread_windows(drops.view(n, 1, len(tops), len(lefts)), (ph, pw), stride, (height, width))


def spread_windows(values: Tensor, patch: tuple[int, int], stride: int, size: tuple[int, int]) -> Tensor:
    """(N, 1, rows, cols) window values to (N, H, W): each pixel the mean over the windows covering it."""
    ones = torch.ones(1, 1, *patch, dtype=values.dtype, device=values.device)
    height, width = size
    total = nn.functional.conv_transpose2d(values, ones, stride=stride)[:, 0, :height, :width]
    count = nn.functional.conv_transpose2d(torch.ones_like(values[:1]), ones, stride=stride)[:, 0, :height, :width]
    return total / count
