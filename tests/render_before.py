"""The torch rendering of commit 22d3227, kept as the reference the NumPy one must match pixel for pixel."""

from __future__ import annotations

import math

import matplotlib
import numpy as np
import torch


def normalize01(values):
    values = values.detach().float()
    finite = torch.isfinite(values)
    if not bool(finite.all()):
        values = torch.where(finite, values, torch.zeros_like(values))
    low, high = values.min(), values.max()
    span = float(high - low)
    if span <= 0 or not math.isfinite(span):
        return torch.zeros_like(values), True
    return (values - low) / span, False


def to_uint8(image01):
    image01 = image01.detach().float().cpu().clamp(0, 1)
    if image01.dim() == 2:
        image01 = image01.unsqueeze(0).expand(3, -1, -1)
    return (image01 * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).numpy()


def gradient_color(gradient):
    scaled, degenerate = normalize01(gradient.cpu())
    return to_uint8(scaled), degenerate


def gradient_gray(gradient, percentile=99.0):
    magnitude = gradient.detach().float().cpu().abs().amax(dim=0)
    ceiling = torch.quantile(magnitude.flatten(), percentile / 100.0)
    scaled, degenerate = normalize01(magnitude.clamp(max=float(ceiling)))
    return to_uint8(scaled), degenerate


def heatmap(map01, colormap):
    rgba = matplotlib.colormaps[colormap](map01.detach().float().cpu().clamp(0, 1).numpy())
    return (rgba[..., :3] * 255 + 0.5).astype(np.uint8)


def overlay(image01, map01, alpha, colormap):
    heat = torch.from_numpy(heatmap(map01, colormap)).float().permute(2, 0, 1) / 255.0
    return to_uint8((1 - alpha) * image01.detach().float().cpu() + alpha * heat)


def channel_tiles(activation, count):
    return [normalize01(channel)[0] for channel in activation.detach().float().cpu()[:count]]
