"""Writing results: PNGs with metadata, raw arrays, all written atomically."""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, PngImagePlugin

from cnnvis_tasks.errors import DiskFull
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
    an existing file at ``path`` is untouched.  A full file system (or a spent
    quota) raises :class:`~cnnvis_tasks.errors.DiskFull`, saying where.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False)
    except OSError as error:
        raise_if_disk_full(error, path)
        raise
    try:
        with handle:
            write(handle)
        os.chmod(handle.name, FILE_MODE)
        os.replace(handle.name, path)
    except BaseException as error:
        try:
            os.unlink(handle.name)
        except FileNotFoundError:
            pass
        if isinstance(error, OSError):
            raise_if_disk_full(error, path)
        raise
    return path


# The errors of a file system with no room left: full, or the user's quota spent (a shared cluster's).
DISK_FULL = {errno.ENOSPC: "no space left on", errno.EDQUOT: "disk quota exceeded on"}


def raise_if_disk_full(error: OSError, path: str | Path) -> None:
    """Raise :class:`DiskFull` for ``error`` (writing ``path``) where it says the disk is full."""
    if not isinstance(error, DiskFull) and error.errno in DISK_FULL:
        raise DiskFull(f"{DISK_FULL[error.errno]} {file_system(path)}", f"writing {path}", error.errno) from error


def file_system(path: str | Path) -> str:
    """Where ``path`` is stored, for a message: "DEVICE at MOUNT POINT" ("tmpfs at /scratch",
    "/dev/sda1 at /"), its mount point alone where the device cannot be told."""
    place = Path(os.path.abspath(path))
    while not place.exists() and place != place.parent:
        place = place.parent
    while not os.path.ismount(place) and place != place.parent:
        place = place.parent
    device = None
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as mounts:
            for line in mounts:  # the last mount at a place is the one seen there
                fields = [field.replace("\\040", " ") for field in line.split()[:2]]  # a space is \\040
                if len(fields) == 2 and fields[1] == str(place):
                    device = fields[0]
    except OSError:  # not Linux
        pass
    return f"{device} at {place}" if device else str(place)


# atomic_write's temporary files: ".NAME." + tempfile's 8 random characters + ".tmp"
_TEMPORARY = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp")
_SNAPSHOT = re.compile(r"(?P<stem>.+)\.step\d{4}\.png")  # Writer.snapshots' pictures beside an output


def remove_stale_temporaries(paths: Iterable[str | Path]) -> int:
    """Remove what writes of ``paths`` that were cut off (a killed job, a node lost) left:
    the temporary files of :func:`atomic_write` for those names (and their step pictures),
    nothing else, for other jobs may write in the same folders.  Each folder is read once.
    Returns how many were removed."""
    names: dict[str, set[str]] = {}
    for path in paths:
        path = Path(path)
        names.setdefault(str(path.parent), set()).add(path.name)
    removed = 0
    for folder, wanted in names.items():
        try:
            entries = list(os.scandir(folder))
        except OSError:  # not made yet
            continue
        for entry in entries:
            match = _TEMPORARY.fullmatch(entry.name)
            if match is None:
                continue
            name = match["name"]
            snapshot = _SNAPSHOT.fullmatch(name)
            if name in wanted or (snapshot is not None and f"{snapshot['stem']}.png" in wanted):
                try:
                    os.unlink(entry.path)
                    removed += 1
                except FileNotFoundError:
                    pass
    return removed


_FALLOC_FL_KEEP_SIZE = 1
_fallocate: Any = None  # libc's fallocate, found on first use; False where there is none


def keep_room(fd: int = 2, size: int = 4096) -> bool:
    """Reserve ``size`` bytes past the end of the regular file open as ``fd`` (by default the
    standard error, a job's log) without growing it, so that the command can still say why it
    stopped when its file system fills up; False where the file system or platform cannot
    (the log then says it only if there is room).  Nothing is reserved for a terminal or pipe."""
    global _fallocate
    try:
        status = os.fstat(fd)
    except OSError:
        return False
    if not stat.S_ISREG(status.st_mode):
        return False
    if _fallocate is None:
        try:
            import ctypes

            function = ctypes.CDLL(None, use_errno=True).fallocate
            function.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
            function.restype = ctypes.c_int
            _fallocate = function
        except (OSError, AttributeError):
            _fallocate = False
    if not _fallocate:
        return False
    return _fallocate(fd, _FALLOC_FL_KEEP_SIZE, status.st_size, size) == 0


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
