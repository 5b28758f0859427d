"""Image sets for dataset-wide runs: listing, naming and checking images.

The Snakemake workflow and the ``check-images`` command share these functions,
so that both see the same images under the same names and agree on which of
them cannot be decoded (and why, in one line).  Imports neither torch nor
torchvision: the workflow imports this module whenever it is read.
"""

from __future__ import annotations

import glob as globbing
import json
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .errors import CnnvisError
from .images import open_rgb
from .outputs import atomic_write

# What a folder source picks up (case-insensitive); glob and manifest sources take
# every file they name, so that a stray non-image is reported rather than skipped.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm")
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


def list_images(
    folder: str | Path | None = None,
    pattern: str | None = None,
    manifest: str | Path | None = None,
    extensions: Sequence[str] = IMAGE_EXTENSIONS,
) -> list[Path]:
    """The image files of one source, sorted: exactly one of

    - ``folder``: the files directly in it whose extension is in ``extensions``;
    - ``pattern``: every file a glob matches (``**`` recurses);
    - ``manifest``: a text file with one path per line (``#`` comments and blank
      lines skipped; relative paths are relative to the manifest's folder).
    """
    given = [name for name, value in (("folder", folder), ("glob", pattern), ("manifest", manifest)) if value]
    if len(given) != 1:
        raise CnnvisError(f"give exactly one image source (folder, glob or manifest), got {', '.join(given) or 'none'}")
    if folder:
        folder = Path(folder)
        if not folder.is_dir():
            raise CnnvisError(f"image folder not found: {folder}")
        wanted = {e.lower() if e.startswith(".") else "." + e.lower() for e in extensions}
        paths = [
            p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in wanted
        ]
    elif pattern:
        paths = [Path(p) for p in globbing.glob(str(pattern), recursive=True) if os.path.isfile(p)]
    else:
        manifest = Path(manifest)
        try:
            lines = manifest.read_text(encoding="utf-8").splitlines()
        except OSError as error:
            raise CnnvisError(f"cannot read image manifest {manifest}: {error.strerror or error}") from None
        paths = []
        for line in lines:
            line = line.strip()
            if line and not line.startswith("#"):
                path = Path(line).expanduser()
                paths.append(path if path.is_absolute() else Path(os.path.normpath(manifest.parent / path)))
    return sorted(paths, key=str)


def image_name(path: str | Path) -> str:
    """The name an image goes by in result paths: its file stem, with characters
    other than letters, digits and ``._+-`` replaced by ``_``."""
    name = _UNSAFE.sub("_", Path(path).stem).strip("._") or "image"
    return name


def name_images(paths: Iterable[str | Path]) -> dict[str, Path]:
    """``{name: path}``; two files with the same name are an error naming both."""
    named: dict[str, Path] = {}
    for path in paths:
        path = Path(path)
        name = image_name(path)
        if name in named and named[name] != path:
            raise CnnvisError(f"two images would share the result name {name!r}: {named[name]} and {path}; rename one")
        named[name] = path
    return named


def check_image(path: str | Path) -> str | None:
    """None when ``path`` decodes to an RGB image, else the reason in one line."""
    try:
        open_rgb(path)
    except CnnvisError as error:
        return str(error).splitlines()[0]
    except Exception as error:  # a decoder bug is still a reason not to use the file
        text = str(error).splitlines()[0] if str(error) else ""
        return f"cannot read image {path}: {type(error).__name__}{': ' + text if text else ''}"
    return None


def _fingerprint(path: Path) -> list[int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return [stat.st_size, stat.st_mtime_ns]


def check_images(paths: Iterable[str | Path], cache: str | Path | None = None) -> list[dict[str, Any]]:
    """Check each image; ``[{"name", "path", "status": "ok"|"failed", "reason"}]``.

    With ``cache`` (a JSON file), a file whose size and modification time are
    unchanged since it was last checked is not decoded again; the cache is
    rewritten (atomically) only when something changed.
    """
    named = name_images(paths)
    known: dict[str, Any] = {}
    if cache and Path(cache).is_file():
        try:
            known = json.loads(Path(cache).read_text(encoding="utf-8"))
            if not isinstance(known, dict):
                known = {}
        except (OSError, ValueError):
            known = {}
    changed = False
    records = []
    for name, path in named.items():
        key = str(path.resolve())
        fingerprint = _fingerprint(path)
        entry = known.get(key)
        if fingerprint is not None and isinstance(entry, dict) and entry.get("fingerprint") == fingerprint:
            reason = entry.get("reason")
        else:
            reason = check_image(path)
            if fingerprint is not None:
                known[key] = {"fingerprint": fingerprint, "reason": reason}
                changed = True
        records.append({"name": name, "path": str(path), "status": "failed" if reason else "ok", "reason": reason})
    if cache and changed:
        text = json.dumps(known, indent=0, sort_keys=True)
        try:
            atomic_write(cache, lambda handle: handle.write(text.encode("utf-8")))
        except OSError:
            pass  # a read-only results folder only costs the next check its speed
    return records
