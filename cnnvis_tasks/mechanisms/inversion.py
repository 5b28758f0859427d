"""Feature inversion (Mahendran and Vedaldi 2015, "Understanding Deep Image
Representations by Inverting Them"): an image whose activation at one layer matches
a photo's, found by Adam from a seeded start.

Per image the loss is

    ||phi(x) - phi(x0)||^2 / ||phi(x0)||^2  +  alpha_weight * R_alpha(x)  +  tv_weight * R_TV(x)

on the normalised image x (model space), with the regularisers of the paper scaled
to per-pixel means so their weights do not depend on the image size:

* ``R_alpha(x) = mean |x / B|^alpha``, B the largest magnitude a valid pixel takes
  in model space: at most 1 inside the valid range, steep outside it (alpha = 6);
* ``R_TV(x) = mean ((x[i, j+1] - x[i, j])^2 + (x[i+1, j] - x[i, j])^2)^(beta / 2)``
  on ``x / B``, the total variation of order beta (beta = 2: smooth, 1: piecewise
  constant); in units of B, a weight means the same for every model's normalisation.

Robust mode optimises the decorrelated Fourier image of class visualisation and
warps each step with its random pad / jitter / zoom / rotation; the photo is warped
by the same draw and its activation taken again, so the two stay aligned (a warped
x compared with the unwarped photo's map would be pulled towards the mean of the
shifts, a blur).  Plain mode optimises the pixels from the seed's uniform random
start.  The forward passes stop after the layer (:class:`LayerTap`), so early
layers are cheap; the photo's activation is taken once under inference mode.
Every image of a batch has its own loss; a batch equals separate runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from cnnvis_tasks.mechanisms.ascent import _frozen, _model_space_images, _report, _start_image, transform_padding
from cnnvis_tasks.mechanisms.capture import LayerTap, captured_tensor
from cnnvis_tasks.mechanisms.pixels import to_model_space
from cnnvis_tasks.models.layers import model_device
from cnnvis_tasks.technique import SILENT, Report

# The paper's choices for CNNs: a 6-norm keeps pixels in range, TV of order 2 smooths.
ALPHA, BETA = 6.0, 2.0


@dataclass
class InversionResult:
    """Outcome of one inversion over a batch of N images."""

    images: torch.Tensor  # (N, 3, H, W) in [0, 1], pixel space, detached
    loss_start: torch.Tensor  # (N,) the whole loss at the start, no transforms
    loss_end: torch.Tensor  # (N,) the whole loss on the final image, no transforms
    relative_error: torch.Tensor  # (N,) ||phi(x) - phi0||^2 / ||phi0||^2 on the final image
    steps: int


def relative_error(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``||f - t||^2 / ||t||^2`` per image (N,); an all-zero target divides by a tiny number."""
    n = target.shape[0]
    difference = (features - target).reshape(n, -1).pow(2).sum(1)
    return difference / target.reshape(n, -1).pow(2).sum(1).clamp_min(1e-12)


def alpha_norm(x: torch.Tensor, bound: float, alpha: float = ALPHA) -> torch.Tensor:
    """``mean |x / bound|^alpha`` per image (N,)."""
    return (x / bound).abs().pow(alpha).flatten(1).mean(1)


def total_variation(x: torch.Tensor, bound: float, beta: float = BETA) -> torch.Tensor:
    """``mean ((dx^2 + dy^2) / bound^2)^(beta / 2)`` per image (N,), over positions with both neighbours."""
    x = x / bound
    dx = x[..., :-1, 1:] - x[..., :-1, :-1]
    dy = x[..., 1:, :-1] - x[..., :-1, :-1]
    squared = dx.pow(2) + dy.pow(2)
    # beta < 2 has an infinite derivative at 0: a tiny floor keeps flat regions finite
    values = squared if beta == 2 else (squared + 1e-8).pow(beta / 2)
    return values.flatten(1).mean(1)


def pixel_bound(mean, std) -> float:
    """The largest magnitude a pixel in [0, 1] takes in model space."""
    ends = to_model_space(torch.tensor([0.0, 1.0]).reshape(2, 1, 1, 1), mean, std)
    return float(ends.abs().max())


def _paired_transform(generator: torch.Generator, pad: int) -> Callable[[torch.Tensor, torch.Tensor], tuple]:
    """The robust transform applied with one random draw to the image and to the photo."""
    from cnnvis_tasks.mechanisms.parameterization import random_transform

    def transform(x, x0):
        state = generator.get_state()
        warped_photo = random_transform(x0, generator, pad=pad)
        generator.set_state(state)
        return random_transform(x, generator, pad=pad), warped_photo

    return transform


def feature_inversion(
    model: nn.Module,
    images: torch.Tensor,
    layer: str,
    *,
    mean,
    std,
    steps: int,
    lr: float,
    alpha_weight: float,
    tv_weight: float,
    tv_beta: float = BETA,
    alpha: float = ALPHA,
    robust: bool = True,
    seed: int = 0,
    report: Report = SILENT,
) -> InversionResult:
    """Invert ``layer``'s activation of each of ``images`` (pixel space, (N, 3, H, W) in [0, 1]).

    Minimises the loss of the module doc with Adam for ``steps`` steps; ``report``
    gets each step's mean loss and, every ``report.save_every`` steps, the pictures.
    """
    device = model_device(model)
    x0 = _model_space_images(images, mean, std, device)
    n, _, height, width = x0.shape
    tap = LayerTap(model, [layer])
    bound = pixel_bound(mean, std)

    def features(x):
        return captured_tensor(tap(x), layer)

    def regularisers(x):
        return alpha_weight * alpha_norm(x, bound, alpha) + tv_weight * total_variation(x, bound, tv_beta)

    with torch.inference_mode():
        target = features(x0)
    target = target.clone()  # a normal tensor: inference tensors cannot take part in autograd

    def loss_parts(x):
        """(relative error, whole loss) per image on the untransformed x."""
        error = relative_error(features(x), target)
        return error, error + regularisers(x)

    with _frozen(model):
        image, _ = _start_image(n, height, width, mean=mean, std=std, robust=robust, seed=seed, device=device)
        generator = torch.Generator().manual_seed(seed + 1)
        transform = _paired_transform(generator, transform_padding(model)) if robust else None
        with torch.no_grad():
            _, start = loss_parts(image.normalized())
        optimizer = torch.optim.Adam(image.parameters(), lr=lr)
        for step in range(1, steps + 1):
            x = image.normalized()
            if transform is None:
                error = relative_error(features(x), target)
            else:
                warped, warped_photo = transform(x, x0)
                with torch.no_grad():
                    goal = features(warped_photo)
                error = relative_error(features(warped), goal)
            loss = error + regularisers(x)
            optimizer.zero_grad(set_to_none=True)
            loss.sum().backward()
            optimizer.step()
            _report(report, step, steps, loss.detach(), "feature inversion", image.pixels)
        with torch.no_grad():
            error, end = loss_parts(image.normalized())
            pixels = image.pixels().detach()
    return InversionResult(pixels, start, end, error, steps)
