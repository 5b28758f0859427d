"""Robustness (Yeh et al. 2019): how much a method's map moves when the input moves by a
little noise.  A map that changes a lot for an input the model treats the same is hard to
trust.

For each image, ``samples`` copies with uniform noise in [-radius, radius] added to every
input value (in the model's input space); the method's map of each copy, and

    sensitivity = ||map - map of the copy|| / ||map||      (Frobenius norms)

The largest over the copies is the max-sensitivity, the mean the average-sensitivity,
both from the same copies (Quantus's ``MaxSensitivity`` and ``AvgSensitivity`` with their
defaults: uniform noise, difference, Frobenius norms; neither normalises the map).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

# (N*S, C, H, W) perturbed inputs in the model's input space, (N*S,) targets -> (N*S, H, W) maps
Explain = Callable[[Tensor, Tensor], Tensor]


def noise_draws(images: int, shape: tuple[int, ...], radius: float, seed: int):
    """Each image's own generator seeded with ``seed`` (an image's noise does not depend on
    the batch it is in); yields (images, *shape) float32 draws, uniform in [-radius, radius],
    one per sample."""
    generators = [torch.Generator().manual_seed(seed) for _ in range(images)]
    while True:
        yield torch.stack([(torch.rand(shape, generator=g) * 2 - 1) * radius for g in generators])


def sensitivity(
    explain: Explain,
    inputs: Tensor,
    targets: Tensor,
    maps: Tensor,
    *,
    samples: int = 8,
    radius: float = 0.2,
    seed: int = 0,
    batch_size: int = 16,
    noise: Tensor | None = None,
) -> dict[str, Tensor]:
    """Max- and average-sensitivity of ``maps`` (N, H, W: the method's maps of ``inputs``
    (N, C, H, W) for ``targets``), with ``explain`` the method (see :data:`Explain`).

    ``explain`` gets the noisy copies of as many samples at once as ``batch_size`` holds
    (at least one sample's N copies), so that memory stays that of a batch.
    ``noise`` (samples, N, C, H, W) replaces :func:`noise_draws` (a test gives a reference
    library the same).  Returns ``max`` and ``mean`` (N,) and ``ratios`` (N, samples); NaN
    where a map is all zero (no norm to compare with)."""
    n = inputs.shape[0]
    if samples < 1:
        raise ValueError("sensitivity needs at least 1 noisy sample")
    if noise is not None and noise.shape != (samples, *inputs.shape):
        raise ValueError(f"noise must be {(samples, *inputs.shape)}, got {tuple(noise.shape)}")
    draws = iter(noise) if noise is not None else noise_draws(n, tuple(inputs.shape[1:]), radius, seed)
    reference = maps.detach().reshape(n, -1).double()
    norm = reference.norm(dim=1)
    ratios = torch.empty(n, samples, dtype=torch.float64, device=maps.device)
    together = max(1, batch_size // max(1, n))
    for first in range(0, samples, together):
        count = min(together, samples - first)
        noise_now = torch.stack([next(draws) for _ in range(count)]).to(inputs.device, inputs.dtype)
        noisy = (inputs.detach()[None] + noise_now).flatten(0, 1)  # sample-major
        moved = explain(noisy, targets.repeat(count)).detach().reshape(count, n, -1).double()
        ratios[:, first : first + count] = ((reference[None] - moved).norm(dim=2) / norm).T
    ratios = torch.where(norm[:, None] > 0, ratios, torch.full_like(ratios, torch.nan))
    return {"max": ratios.amax(dim=1), "mean": ratios.mean(dim=1), "ratios": ratios}
