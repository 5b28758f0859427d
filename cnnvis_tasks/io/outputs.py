"""Writing results: PNGs with metadata, raw arrays, all written atomically."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, PngImagePlugin

from cnnvis_tasks.io import png

METADATA_KEY = "cnnvis"


def _process_umask() -> int:
    """The process's umask (read by setting it and putting it back, once, at import)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# A temporary file is created 0600; the file it becomes gets what the umask allows
# (0644 under the usual 022), so that others on a shared file system can read results.
FILE_MODE = 0o666 & ~_process_umask()


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    """Write ``path`` through a temporary file in the same folder, then rename.

    Parent folders are created.  If ``write`` fails, nothing is left behind and
    an existing file at ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False)
    try:
        with handle:
            write(handle)
        os.chmod(handle.name, FILE_MODE)
        os.replace(handle.name, path)
    except BaseException:
        try:
            os.unlink(handle.name)
        except FileNotFoundError:
            pass
        raise
    return path


# Compression level of the PNGs written: 1 writes fastest, 9 smallest; a runtime choice,
# --png-level, and png_level in the config.
DEFAULT_PNG_LEVEL = 1
# Levels 1-3 go through cnnvis_tasks/io/png.py (the Sub filter and ISA-L's deflate: about
# ten times faster than Pillow's encoder, files up to 12 % larger; bench/RESULTS.md,
# "Chunk job: where the time goes"); level 0 and levels 4-9 through Pillow, whose
# filter per row makes the smallest files at the slow levels (byte for byte the files
# of earlier versions).
_FAST_MODES = ("L", "RGB", "RGBA")  # Pillow images whose pixels are what the fast writer writes


def save_png(
    path: str | Path,
    image: np.ndarray | Image.Image,
    metadata: dict[str, Any] | None = None,
    level: int = DEFAULT_PNG_LEVEL,
) -> Path:
    """Save an RGB/gray uint8 picture as PNG (zlib ``level`` 0-9), with ``metadata`` as a JSON text chunk."""
    text = json.dumps(metadata, sort_keys=True, default=_json_default) if metadata else None
    if level in png.FAST_LEVELS and not (isinstance(image, Image.Image) and image.mode not in _FAST_MODES):
        array = np.asarray(image)
        if png.writable(array):
            data = png.encode_png(array, {METADATA_KEY: text} if text else None, level)
            return atomic_write(path, lambda handle: handle.write(data))
    picture = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    info = PngImagePlugin.PngInfo()
    if text:
        info.add_text(METADATA_KEY, text)
    return atomic_write(path, lambda handle: picture.save(handle, format="PNG", pnginfo=info, compress_level=level))


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata :func:`save_png` stored in a PNG (empty dict when none)."""
    with Image.open(path) as image:
        text = image.text.get(METADATA_KEY) if hasattr(image, "text") else None
    return json.loads(text) if text else {}


def save_npy(path: str | Path, array: np.ndarray) -> Path:
    """Save a raw float array as ``.npy``."""
    return atomic_write(path, lambda handle: np.save(handle, np.asarray(array), allow_pickle=False))


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def read_cache(path: str | Path | None) -> dict[str, Any]:
    """A JSON cache (a dict); empty when there is none or it cannot be read."""
    if not path or not Path(path).is_file():
        return {}
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_cache(path: str | Path, data: dict[str, Any]) -> None:
    """Write a JSON cache atomically; a folder that cannot be written only costs the next run its speed."""
    text = json.dumps(data, indent=0, sort_keys=True)
    try:
        atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))
    except OSError:
        pass
