"""Pixel space ([0, 1] RGB) and a model's input space: the one normalisation.

A model takes ``(pixels - mean) / std`` per channel; ``mean`` and ``std`` are
three numbers (or tensors of shape (1, 3, 1, 1) from :func:`stats`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def stats(values: Sequence[float] | torch.Tensor, device) -> torch.Tensor:
    """Per-channel numbers as a float32 (1, C, 1, 1) tensor on ``device``."""
    return torch.as_tensor(values, dtype=torch.float32, device=device).reshape(1, -1, 1, 1)


def to_model_space(pixels: torch.Tensor, mean, std) -> torch.Tensor:
    """``(pixels - mean) / std``: what the model takes."""
    return (pixels - stats(mean, pixels.device)) / stats(std, pixels.device)


def to_pixels(x: torch.Tensor, mean, std) -> torch.Tensor:
    """Back from the model's input space, clipped to [0, 1]."""
    return (x * stats(std, x.device) + stats(mean, x.device)).clamp(0, 1)
