"""How concise a map is: the Gini index of its absolute values (sparseness, Chalasani et
al. 2020) and the entropy of their shares (complexity, Bhatt et al. 2020), per map.  The
``complexity`` technique and the trust metrics' sparseness both use these."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where the maps are measured: the CLI starts without it
    from torch import Tensor

EPSILON = 1e-7  # Quantus's: keeps the Gini index defined for an all-zero map


def sparseness(maps: Tensor) -> Tensor:
    """The Gini index of each (N, H, W) map's absolute values, divided by the map's largest, plus 1e-7."""
    import torch

    flat = maps.detach().double().abs().flatten(1)
    largest = flat.amax(dim=1, keepdim=True)
    flat = torch.where(largest > 0, flat / largest, flat) + EPSILON
    ordered = flat.sort(dim=1).values
    n = ordered.shape[1]
    weights = 2 * torch.arange(1, n + 1, dtype=torch.float64, device=ordered.device) - n - 1
    return (ordered * weights).sum(dim=1) / (n * ordered.sum(dim=1))


def complexity(maps: Tensor) -> Tensor:
    """The entropy (nats) of each (N, H, W) map's absolute values as shares of their sum (NaN: an all-zero map)."""
    import torch

    flat = maps.detach().double().abs().flatten(1)
    total = flat.sum(dim=1, keepdim=True)
    shares = flat / total
    entropy = -torch.where(shares > 0, shares * shares.log(), torch.zeros_like(shares)).sum(dim=1)
    return torch.where(total[:, 0] > 0, entropy, torch.nan)
