"""Image input: decoding any common file to RGB, resizing, batching.

Decoding needs only Pillow and numpy: torch is imported by the functions that
make tensors, so that checking images (check-images) never loads it.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import CnnvisError

if TYPE_CHECKING:
    import torch

DEFAULT_SIZE = 224
# Composited under transparent pixels: a neutral background rather than black.
BACKGROUND = (255, 255, 255)


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB, compositing alpha over white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        if image.mode.startswith("I;16"):
            peak = 65535.0
        else:  # 32-bit int or float: scale by its own range
            peak = float(array.max()) if array.max() > 255 else 255.0
        array = np.clip(array / max(peak, 1e-12) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(array, mode="L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def open_rgb(path: str | Path) -> Image.Image:
    """Decode ``path`` to an RGB Pillow image, EXIF orientation applied.

    GIFs and other multi-frame files give their first frame.  Images larger than
    Pillow's decompression-bomb limit are refused.
    """
    path = Path(path)
    if not path.is_file():
        raise CnnvisError(f"image not found: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.seek(0)
                image = ImageOps.exif_transpose(image)
                image.load()
                return _to_rgb(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise CnnvisError(
            f"image {path} refused: larger than {Image.MAX_IMAGE_PIXELS} pixels (possible decompression bomb)"
        ) from None
    except UnidentifiedImageError:
        raise CnnvisError(f"cannot read image {path}: not a recognised image file") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise CnnvisError(f"cannot read image {path}: {str(error).splitlines()[0] or type(error).__name__}") from None


def resize_shorter_side(image: Image.Image, size: int) -> Image.Image:
    """Scale so the shorter side is ``size``, keeping the aspect ratio; 0 keeps it."""
    if size < 0:
        raise CnnvisError(f"--size must be 0 or positive, got {size}")
    width, height = image.size
    if size == 0 or min(width, height) == size:
        return image
    scale = size / min(width, height)
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return image.resize(new_size, Image.Resampling.BICUBIC)


def center_crop(image: Image.Image, size: int) -> Image.Image:
    """The central ``size`` x ``size`` square (the shorter side must be at least ``size``)."""
    width, height = image.size
    left, top = (width - size) // 2, (height - size) // 2
    return image.crop((left, top, left + size, top + size))


def to_tensor(image: Image.Image) -> torch.Tensor:
    """RGB Pillow image to a (3, H, W) float32 tensor in [0, 1]."""
    import torch

    array = np.array(image, dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def load_image(path: str | Path, size: int = DEFAULT_SIZE) -> torch.Tensor:
    """Read ``path`` as a (3, H, W) float tensor in [0, 1], shorter side ``size``."""
    return to_tensor(resize_shorter_side(open_rgb(path), size))


def load_batches(paths: Sequence[str | Path], size: int, batch_size: int) -> Iterator[tuple[list[int], torch.Tensor]]:
    """Read images ``batch_size`` at a time and stack those of equal size.

    Yields ``(indices, batch)`` where ``indices`` are positions in ``paths``.
    Images of different sizes never share a batch; at most ``batch_size`` images
    are held in memory at once, however long ``paths`` is.
    """
    import torch

    if batch_size < 1:
        raise CnnvisError(f"--batch-size must be at least 1, got {batch_size}")
    for start in range(0, len(paths), batch_size):
        by_shape: dict[tuple[int, ...], list[tuple[int, torch.Tensor]]] = {}
        for index in range(start, min(start + batch_size, len(paths))):
            image = load_image(paths[index], size)
            by_shape.setdefault(tuple(image.shape), []).append((index, image))
        for group in by_shape.values():
            yield [index for index, _ in group], torch.stack([image for _, image in group])
