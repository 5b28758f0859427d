"""A fast PNG writer for the fast levels: one filter for every row, deflate by ISA-L.

Pillow's PNG encoder tries five filters on every row and keeps the best, which costs
more than the deflate itself at zlib level 1.  Our pictures (heatmaps, overlays,
gradient maps, photographs) compress nearly as well with the *Sub* filter alone (each
byte minus the byte one pixel to its left), computed with one NumPy subtraction and
deflated by ISA-L (the ``isal`` package) at its levels 1-3: about ten times faster
than Pillow at level 1, for files up to 12 % larger (``bench/RESULTS.md``, "Chunk
job: where the time goes").  Where ``isal`` is not installed, zlib does the deflate.

Only 8-bit gray, RGB and RGBA pictures go this way; the file is a plain PNG (the
signature, IHDR, one tEXt chunk per text, one IDAT, IEND) that any reader opens.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping

import numpy as np

try:  # ISA-L's deflate: a wheel for the common platforms; zlib where there is none
    from isal import isal_zlib as _deflate_module

    DEFLATE = "isal"
except ImportError:  # pragma: no cover - depends on the platform
    _deflate_module = zlib  # type: ignore[assignment]
    DEFLATE = "zlib"

SIGNATURE = b"\x89PNG\r\n\x1a\n"
COLOR_TYPES = {1: 0, 3: 2, 4: 6}  # channels -> PNG colour type: gray, RGB, RGBA
SUB = 1  # the PNG filter type: each byte minus the corresponding byte of the pixel to its left
FAST_LEVELS = range(1, 4)  # the levels this writer takes (ISA-L's 1-3)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))


def _text_chunk(key: str, text: str) -> bytes:
    """A tEXt chunk, or an iTXt chunk (UTF-8) for text outside Latin-1, as Pillow writes them."""
    name = key.encode("latin-1")
    if not 1 <= len(name) <= 79 or b"\0" in name:
        raise ValueError(f"a PNG text key is 1-79 Latin-1 characters without NUL, got {key!r}")
    try:
        return _chunk(b"tEXt", name + b"\0" + text.encode("latin-1"))
    except UnicodeEncodeError:  # uncompressed, no language, no translated key
        return _chunk(b"iTXt", name + b"\0\0\0\0\0" + text.encode("utf-8"))


def writable(array: np.ndarray) -> bool:
    """Whether :func:`encode_png` takes ``array``: uint8, (H, W) or (H, W, 1|3|4), not empty."""
    if array.dtype != np.uint8 or array.size == 0:
        return False
    return array.ndim == 2 or (array.ndim == 3 and array.shape[2] in COLOR_TYPES)


def sub_filtered(array: np.ndarray) -> np.ndarray:
    """The PNG scanlines of ``array`` with the Sub filter: (H, 1 + W * channels) bytes,
    each row its filter type then each byte minus the byte ``channels`` to its left
    (modulo 256; the first pixel as it is)."""
    height = array.shape[0]
    channels = 1 if array.ndim == 2 else array.shape[2]
    rows = np.ascontiguousarray(array).reshape(height, -1)
    lines = np.empty((height, rows.shape[1] + 1), np.uint8)
    lines[:, 0] = SUB
    lines[:, 1 : 1 + channels] = rows[:, :channels]
    np.subtract(rows[:, channels:], rows[:, :-channels], out=lines[:, 1 + channels :])
    return lines


def encode_png(array: np.ndarray, texts: Mapping[str, str] | None = None, level: int = 1) -> bytes:
    """The PNG file of an 8-bit picture (:func:`writable`) with ``texts`` as text chunks
    (tEXt, or iTXt for text outside Latin-1), deflated at ``level`` (1-3)."""
    if not writable(array):
        raise ValueError(f"expected a uint8 (H, W) or (H, W, 1|3|4) picture, got {array.dtype} {array.shape}")
    if level not in FAST_LEVELS:
        raise ValueError(f"the fast PNG writer takes levels {FAST_LEVELS.start}-{FAST_LEVELS.stop - 1}, got {level}")
    height, width = array.shape[:2]
    channels = 1 if array.ndim == 2 else array.shape[2]
    header = struct.pack(">IIBBBBB", width, height, 8, COLOR_TYPES[channels], 0, 0, 0)
    parts = [SIGNATURE, _chunk(b"IHDR", header)]
    for key, text in (texts or {}).items():
        parts.append(_text_chunk(key, text))
    parts.append(_chunk(b"IDAT", _deflate_module.compress(sub_filtered(array).tobytes(), level)))
    parts.append(_chunk(b"IEND", b""))
    return b"".join(parts)
