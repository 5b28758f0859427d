"""Patches of images as pictures: a box cut from a decoded image, scaled to a tile, tiles in a strip."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

EMPTY_TILE = 128  # gray: an image that could not be read again


def cut_patch(image: np.ndarray, box: Sequence[float], side: int) -> np.ndarray:
    """The ``box`` (x0, y0, x1, y1, in pixels) of an H x W x 3 uint8 ``image``, scaled to ``side`` x ``side``."""
    from PIL import Image

    height, width = image.shape[:2]
    x0, y0, x1, y1 = (float(v) for v in box)
    x0, y0 = max(0, int(np.floor(x0))), max(0, int(np.floor(y0)))
    x1, y1 = min(width, max(x0 + 1, int(np.ceil(x1)))), min(height, max(y0 + 1, int(np.ceil(y1))))
    patch = Image.fromarray(np.ascontiguousarray(image[y0:y1, x0:x1]))
    return np.asarray(patch.resize((side, side), Image.Resampling.BICUBIC), dtype=np.uint8)


def empty_strip(count: int, side: int) -> np.ndarray:
    """A strip of ``count`` gray tiles, filled by :func:`put_tile`."""
    return np.full((side, side * count, 3), EMPTY_TILE, dtype=np.uint8)


def put_tile(strip: np.ndarray, position: int, tile: np.ndarray) -> None:
    side = strip.shape[0]
    strip[:, position * side : (position + 1) * side] = tile
