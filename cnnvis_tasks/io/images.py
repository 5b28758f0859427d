"""Image input: decoding any common file to RGB, resizing, batching.

Decoding needs only Pillow and numpy: torch is imported by the functions that
make tensors, so that checking images (check-images) never loads it.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cnnvis_tasks.errors import CnnvisError, ImageError

if TYPE_CHECKING:
    import torch

DEFAULT_SIZE = 224
# The largest image, in pixels once resized, a technique takes (about 2000 x 2000);
# config/schema.yaml's max_pixels states the same default (a test checks).
DEFAULT_MAX_PIXELS = 4_000_000
# Composited under transparent pixels: a neutral background rather than black.
BACKGROUND = (255, 255, 255)


# White of integer images by the largest value they hold: 8-, 12-, 16- and 31-bit data.
_INTEGER_WHITES = (255.0, 4095.0, 65535.0, 2147483647.0)


def _to_8_bit(array: np.ndarray, is_float: bool) -> np.ndarray:
    """16-bit, 32-bit and float values as 8-bit, by their real range: integers by the
    bit depth their largest value needs (8, 12, 16, 31 bits); floats in 0..1 as
    fractions of white, other floats stretched from their darkest to their brightest."""
    if not np.isfinite(array).all():
        raise ValueError("it holds NaN or infinite values")
    low, high = float(array.min()), float(array.max())
    if not is_float:
        low, high = 0.0, next((white for white in _INTEGER_WHITES if high <= white), high)
    elif low >= 0 and high <= 1:
        low, high = 0.0, 1.0
    if high <= low:
        return np.zeros(array.shape, dtype=np.uint8)
    return np.clip((array - low) / (high - low) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB, compositing alpha over white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        array = _to_8_bit(np.asarray(image, dtype=np.float64), image.mode == "F")
        return Image.fromarray(array, mode="L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


@contextlib.contextmanager
def _opened(path: Path) -> Iterator[Image.Image]:
    """``path`` opened by Pillow; every way it cannot be read is one :class:`ImageError` line.

    Images larger than Pillow's decompression-bomb limit are refused."""
    if not path.is_file():
        raise ImageError(f"image not found: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                yield image
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(
            f"image {path} refused: larger than {Image.MAX_IMAGE_PIXELS} pixels (possible decompression bomb)"
        ) from None
    except UnidentifiedImageError:
        raise ImageError(f"cannot read image {path}: not a recognised image file") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageError(f"cannot read image {path}: {str(error).splitlines()[0] or type(error).__name__}") from None


def open_rgb(path: str | Path) -> Image.Image:
    """Decode ``path`` to an RGB Pillow image, EXIF orientation applied.

    GIFs and other multi-frame files give their first frame.  Images larger than
    Pillow's decompression-bomb limit are refused.
    """
    with _opened(Path(path)) as image:
        image.seek(0)
        image = ImageOps.exif_transpose(image)
        image.load()
        return _to_rgb(image)


def read_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image from its header alone, EXIF orientation applied;
    raises :class:`ImageError` as :func:`open_rgb` does."""
    with _opened(Path(path)) as image:
        width, height = image.size
        orientation = image.getexif().get(0x0112, 1) if hasattr(image, "getexif") else 1
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def resized(width: int, height: int, size: int) -> tuple[int, int]:
    """(width, height) once the shorter side is ``size`` (0: unchanged), the aspect ratio kept."""
    if size < 0:
        raise CnnvisError(f"--size must be 0 or positive, got {size}")
    if size == 0 or min(width, height) == size:
        return width, height
    scale = size / min(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def size_problem(width: int, height: int, size: int, max_pixels: int | None, crop: int | None = None) -> str | None:
    """Why an image of ``width`` x ``height`` is too large once resized to ``size`` (or,
    for a model of fixed input size, cropped to ``crop`` x ``crop``), or None."""
    new_width, new_height = (crop, crop) if crop else resized(width, height, size)
    if max_pixels and new_width * new_height > max_pixels:
        return (
            f"too large: {width} x {height}, {new_width} x {new_height} after resizing = "
            f"{new_width * new_height:,} pixels > max_pixels {max_pixels:,}"
        )
    return None


def resize_shorter_side(image: Image.Image, size: int) -> Image.Image:
    """Scale so the shorter side is ``size``, keeping the aspect ratio; 0 keeps it."""
    new_size = resized(*image.size, size)
    if new_size == image.size:
        return image
    return image.resize(new_size, Image.Resampling.BICUBIC)


def center_crop(image: Image.Image, size: int) -> Image.Image:
    """The central ``size`` x ``size`` square (the shorter side must be at least ``size``)."""
    width, height = image.size
    left, top = (width - size) // 2, (height - size) // 2
    return image.crop((left, top, left + size, top + size))


def fit_square(image: Image.Image, side: int) -> Image.Image:
    """The central square of ``image`` (as wide as its shorter side) resized to ``side`` x
    ``side``: a resize of the shorter side to ``side`` and a centre crop, in one resampling
    of the central region (a long panorama is never enlarged whole)."""
    width, height = image.size
    square = min(width, height)
    left, top = (width - square) / 2, (height - square) / 2
    if square == side and left == int(left) and top == int(top):
        return center_crop(image, side)
    return image.resize((side, side), Image.Resampling.BICUBIC, box=(left, top, left + square, top + square))


def fixed_size_note(model: str, side: int, size: int | None) -> str | None:
    """What a user who asked for shorter side ``size`` gets from ``model``, which takes
    ``side`` x ``side`` inputs only; None when the two agree or no size was asked for
    (``size`` None: the command's default stood)."""
    if size is None or size == side:
        return None
    asked = "the original size (--size 0)" if size == 0 else f"--size {size}"
    return (
        f"{model} takes {side} x {side} inputs only: each image is resized to {side} on its shorter side "
        f"and centre-cropped to {side} x {side}, not to {asked}"
    )


def synthesis_size(side: int | None, width: int | None, height: int | None) -> tuple[int, int]:
    """(height, width) of an image synthesised for a model that takes ``side`` x ``side``
    inputs only (None: any size): that square, else the size given (None: the default)."""
    if side:
        return side, side
    return DEFAULT_SIZE if height is None else height, DEFAULT_SIZE if width is None else width


def synthesis_size_note(model: str, side: int | None, width: int | None, height: int | None) -> str | None:
    """Why the width or height a user gave is not what ``model``, which takes ``side`` x
    ``side`` inputs only, gets; None when they agree or none was given."""
    asked = [f"{name} {value}" for name, value in (("width", width), ("height", height)) if value not in (None, side)]
    if not side or not asked:
        return None
    return f"{model} takes {side} x {side} inputs only: the image is synthesised at {side} x {side}, not at " + (
        " and ".join(asked)
    )


def to_tensor(image: Image.Image) -> torch.Tensor:
    """RGB Pillow image to a (3, H, W) float32 tensor in [0, 1]."""
    import torch

    array = np.array(image, dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def load_image(
    path: str | Path, size: int = DEFAULT_SIZE, max_pixels: int | None = None, crop: int | None = None
) -> torch.Tensor:
    """Read ``path`` as a (3, H, W) float tensor in [0, 1], shorter side ``size`` (with
    ``crop``: its centre, ``crop`` x ``crop``, :func:`fit_square`); an image larger than
    ``max_pixels`` once resized is refused before it is resized."""
    return _load_sized(path, size, max_pixels, crop)[0]


def _load_sized(
    path: str | Path, size: int, max_pixels: int | None, crop: int | None
) -> tuple[torch.Tensor, tuple[int, int]]:
    """:func:`load_image`'s tensor and the image's (width, height) as read."""
    image = open_rgb(path)
    problem = size_problem(*image.size, size, max_pixels, crop)
    if problem:
        raise ImageError(f"image {path} is {problem}")
    return to_tensor(fit_square(image, crop) if crop else resize_shorter_side(image, size)), image.size


def load_batches(
    paths: Sequence[str | Path],
    size: int,
    batch_size: int,
    max_pixels: int | None = None,
    failed: Callable[[int, ImageError], None] | None = None,
    workers: int = 0,
    crop: int | None = None,
    sizes: dict[int, tuple[int, int]] | None = None,
) -> Iterator[tuple[list[int], torch.Tensor]]:
    """Read images ``batch_size`` at a time and stack those of equal size.

    Each is resized to shorter side ``size``; with ``crop`` (a model of fixed input
    size) to that side and centre-cropped square instead, ``size`` unused.

    Yields ``(indices, batch)`` where ``indices`` are positions in ``paths``.
    Images of different sizes never share a batch.  An image that cannot be used
    raises, or with ``failed`` is handed to it (in the caller's thread, in order)
    and left out.  With ``workers``, that many threads decode the next batch while
    the caller works on this one; at most two batches of images are held in
    memory at once, however long ``paths`` is.  With ``sizes``, each yielded image's
    (width, height) as read goes in it, by position (for
    :class:`cnnvis_tasks.io.columns.Geometry`).
    """
    import torch

    from cnnvis_tasks.run.pipeline import in_order

    if batch_size < 1:
        raise CnnvisError(f"--batch-size must be at least 1, got {batch_size}")
    decoded = in_order(lambda path: _load_sized(path, size, max_pixels, crop), paths, workers, ahead=batch_size)
    with contextlib.closing(decoded):
        for start in range(0, len(paths), batch_size):
            by_shape: dict[tuple[int, ...], list[tuple[int, torch.Tensor]]] = {}
            for index in range(start, min(start + batch_size, len(paths))):
                image, error = next(decoded)
                if error is not None:
                    if failed is None or not isinstance(error, ImageError):
                        raise error
                    failed(index, error)
                    continue
                image, original = image
                if sizes is not None:
                    sizes[index] = original
                by_shape.setdefault(tuple(image.shape), []).append((index, image))
            for group in by_shape.values():
                yield [index for index, _ in group], torch.stack([image for _, image in group])
