"""A data set with a planted pattern and a hand-built model with a channel that detects it.

Class ``red``: a 5 x 5 red square (its red between 0.6 and 1.0) at a random place on a
gray background; class ``plain``: the same with a blue square.  The model's first
convolution has a channel that is ``R - G - B - 0.5`` at each pixel (positive on red
only), its second a channel that sums that over 5 x 5 (``DETECTOR``), peaking at the
centre of the red square; the head reads that channel.  The second layer's receptive
field is 7 pixels, so the patch around the peak holds the whole square.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
from PIL import Image

SIDE = 48
SQUARE = 5
LAYER = "3"  # the ReLU after the second convolution
DETECTOR = 0  # its channel that detects the red square
RECEPTIVE_FIELD = 7

MODEL_SOURCE = textwrap.dedent(
    """
    import torch
    from torch import nn


    def build(classes=2):
        torch.manual_seed(0)
        first = nn.Conv2d(3, 4, 3, padding=1)
        second = nn.Conv2d(4, 3, 5, padding=2)
        head = nn.Linear(3, classes)
        with torch.no_grad():
            first.weight[0].zero_()
            first.weight[0, :, 1, 1] = torch.tensor([1.0, -1.0, -1.0])
            first.bias[0] = -0.5
            second.weight[0].zero_()
            second.weight[0, 0] = 1.0
            second.bias[0] = 0.0
            head.weight.zero_()
            head.weight[classes - 1, 0] = 1.0  # "red", last of the sorted classes
            head.bias.zero_()
            head.bias[0] = 0.5
        return nn.Sequential(
            first, nn.ReLU(), second, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), head
        )
    """
)


def write_model(folder: Path) -> str:
    """The model's package in ``folder`` (put it on the path, or run from there); returns its arch."""
    package = folder / "plantednet"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text("")
    (package / "net.py").write_text(MODEL_SOURCE)
    return "module:plantednet.net:build"


def model_config(folder: Path) -> dict:
    """The model's entry in a config (its weights: its own construction, saved)."""
    import sys

    import torch

    arch = write_model(folder)
    sys.path.insert(0, str(folder))
    try:
        from plantednet.net import build
    finally:
        sys.path.remove(str(folder))
    torch.save(build().state_dict(), folder / "planted.pt")
    return {
        "arch": arch,
        "weights": str(folder / "planted.pt"),
        "classes": ["plain", "red"],
        "mean": [0.0, 0.0, 0.0],
        "std": [1.0, 1.0, 1.0],
    }


def make_images(root: Path, per_class: int = 8, seed: int = 0, start: int = 0) -> dict[str, tuple[int, int, int, int]]:
    """``root/red`` and ``root/plain``: returns each file's square (x0, y0, x1, y1) by path below root."""
    rng = np.random.default_rng(seed)
    squares = {}
    for kind in ("red", "plain"):
        (root / kind).mkdir(parents=True, exist_ok=True)
        for index in range(start, start + per_class):
            pixels = np.full((SIDE, SIDE, 3), rng.uniform(0.3, 0.7), dtype=np.float64)
            pixels += rng.normal(0, 0.02, size=(SIDE, SIDE, 1))
            x, y = (int(v) for v in rng.integers(2, SIDE - SQUARE - 2, size=2))
            strength = rng.uniform(0.6, 1.0)
            colour = (strength, 0.0, 0.0) if kind == "red" else (0.0, 0.0, strength)
            pixels[y : y + SQUARE, x : x + SQUARE] = colour
            name = f"{kind}/{'ü #' if index % 3 == 0 else ''}{kind} {index}.png"
            Image.fromarray((pixels.clip(0, 1) * 255).round().astype(np.uint8)).save(root / name)
            squares[name] = (x, y, x + SQUARE, y + SQUARE)
    return squares
