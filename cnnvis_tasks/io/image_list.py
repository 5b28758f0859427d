"""Image sets for dataset-wide runs: listing, naming, labelling and checking images.

The Snakemake workflow and the ``check-images`` command share these functions,
so that both see the same images under the same names and agree on which of
them cannot be used (and why, in one line).  Imports neither torch nor
torchvision: the workflow imports this module whenever it is read.

An image's *name* is its path relative to its source's root (the folder, the
glob's fixed prefix, the manifest's folder), so ``ds/cat/001.png`` and
``ds/dog/001.png`` are ``cat/001.png`` and ``dog/001.png``.  A path component
that cannot stand in a result path as it is (braces, which Snakemake reads as
wildcards; backslashes; control characters; ``.`` and ``..``) becomes a
readable form plus a hash of the original: ``brace{x}.png`` is
``brace_x_.png-4ee6ef07``.
"""

from __future__ import annotations

import csv
import glob as globbing
import hashlib
import os
import re
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnvis_tasks.errors import CnnvisError
from cnnvis_tasks.io.columns import COLUMNS
from cnnvis_tasks.io.images import open_rgb, read_size
from cnnvis_tasks.io.outputs import read_cache, write_cache

# What a folder source picks up (case-insensitive); glob and manifest sources take
# every file they name, so that a stray non-image is reported rather than skipped.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm")
_UNSAFE = re.compile(r"[{}\\\x00-\x1f\x7f]")
_GLOB_CHARS = re.compile(r"[*?\[]")


class ImageEntry:
    """One image of a source: where it is, the name its results go by, its label and
    its other per-image inputs (``columns``: column name -> value, see
    :mod:`cnnvis_tasks.io.columns`; a bounding box from a manifest's box columns).

    The location is kept as text (``location``) and made a :class:`~pathlib.Path`
    only when asked for (``path``): a million Path objects cost seconds at every
    start of the workflow."""

    __slots__ = ("location", "name", "label", "columns")

    def __init__(
        self, path: str | os.PathLike, name: str, label: str | None = None, columns: Mapping[str, Any] | None = None
    ):
        self.location, self.name, self.label = os.fspath(path), name, label
        self.columns = dict(columns) if columns else {}

    @property
    def path(self) -> Path:
        return Path(self.location)

    def _key(self) -> tuple:
        return (self.location, self.name, self.label, tuple(sorted(self.columns.items())))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ImageEntry) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        columns = f", columns={self.columns!r}" if self.columns else ""
        return f"ImageEntry(path={self.location!r}, name={self.name!r}, label={self.label!r}{columns})"


@dataclass
class Listing:
    """The images of a source, and the files it named that are not images (with why)."""

    images: list[ImageEntry] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def paths(self) -> list[Path]:
        return [entry.path for entry in self.images]


def safe_component(part: str) -> str:
    """A path component as it may stand in a result path (see the module doc)."""
    if part not in (".", "..") and not _UNSAFE.search(part):
        return part
    readable = _UNSAFE.sub("_", part).replace(".", "_") if part in (".", "..") else _UNSAFE.sub("_", part)
    return f"{readable}-{hashlib.sha1(part.encode('utf-8', 'surrogateescape')).hexdigest()[:8]}"


def image_name(relative: str | Path) -> str:
    """The result name of an image at ``relative`` (a path relative to its source's root)."""
    parts = [part for part in Path(relative).as_posix().split("/") if part not in ("", ".")]
    return "/".join(safe_component(part) for part in parts) or "image"


def _kind(path: Path) -> str | None:
    """None for a readable regular file (links followed), else why the path is not one."""
    try:
        mode = path.lstat().st_mode
    except OSError as error:
        return f"cannot be read: {error.strerror or error}"
    if stat.S_ISLNK(mode):
        try:
            mode = path.stat().st_mode
        except OSError:
            return "a link to nothing (dangling)"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder, not a file"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO), not a file"
    if stat.S_ISSOCK(mode):
        return "a socket, not a file"
    return "a device, not a file"


def _class_folder(relative: Path) -> str | None:
    """The first folder of a path below the root: the class in a class-folder layout."""
    return relative.parts[0] if len(relative.parts) > 1 else None


def _entry(path: Path, root: Path, label: str | None = None) -> ImageEntry:
    relative = Path(os.path.relpath(path, root))
    return ImageEntry(
        path=path, name=image_name(relative), label=label if label is not None else _class_folder(relative)
    )


def _fixed_prefix(pattern: str) -> Path:
    """The folders of a glob before its first wildcard: ``ds/**/*.png`` -> ``ds``."""
    parts = Path(pattern).parts
    fixed = []
    for part in parts[:-1]:
        if _GLOB_CHARS.search(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def _read_manifest(manifest: Path) -> list[tuple[str, str | None, dict[str, Any]]]:
    """(path, label, columns) rows of a manifest: a CSV with a ``path`` column (and optionally
    ``label`` and the columns of any per-image input, :data:`~cnnvis_tasks.io.columns.COLUMNS`),
    or a text file with one path per line (``#`` comments)."""
    try:
        text = manifest.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        raise CnnvisError(f"cannot read image manifest {manifest}: {reason}") from None
    if manifest.suffix.lower() != ".csv":
        lines = (line.strip() for line in text.splitlines())
        return [(line, None, {}) for line in lines if line and not line.startswith("#")]
    rows = list(csv.DictReader(text.splitlines()))
    header = list(rows[0]) if rows else (next(csv.reader(text.splitlines()), []) if text.strip() else [])
    if "path" not in header:
        raise CnnvisError(
            f"image manifest {manifest}: a CSV manifest needs a 'path' column (it has: {', '.join(header)})"
        )
    given = []
    for column in COLUMNS.values():
        found = [name for name in column.manifest_columns if name in header]
        if found and len(found) != len(column.manifest_columns):
            missing = ", ".join(name for name in column.manifest_columns if name not in header)
            raise CnnvisError(
                f"image manifest {manifest}: a {column.name} needs all of {', '.join(column.manifest_columns)} "
                f"(no {missing})"
            )
        if found:
            given.append(column)
    listed = []
    for number, row in enumerate(rows, start=2):
        if not (row.get("path") or "").strip():
            raise CnnvisError(f"image manifest {manifest}, line {number}: no path")
        label = (row.get("label") or "").strip() or None
        values = {}
        for column in given:
            try:
                texts = [(row.get(name) or "").strip() for name in column.manifest_columns]
                value = column.from_manifest(texts, str(manifest.parent))
            except ValueError as error:
                raise CnnvisError(f"image manifest {manifest}, line {number}: {error}") from None
            if value is not None:
                values[column.name] = value
        listed.append((row["path"].strip(), label, values))
    return listed


def _list_folder(root: Path, wanted: set[str], listing: Listing) -> None:
    """A folder source's images and skipped entries, subfolders included (hidden ones
    left out), into ``listing``.  One ``scandir`` per folder and no ``stat`` per
    regular file, so that a million files list in seconds."""
    folders = [(str(root), "", "")]  # (folder, its name below the root, its safe name)
    while folders:
        folder, below, safe = folders.pop()
        try:
            with os.scandir(folder) as scanned:
                entries = sorted(scanned, key=lambda entry: entry.name)
        except OSError as error:
            listing.skipped.append((Path(folder), f"cannot be read: {error.strerror or error}"))
            continue
        label = below.split("/", 1)[0] if below else None
        subfolders = []
        for entry in entries:
            name = entry.name
            if name.startswith("."):
                continue
            is_folder = entry.is_dir(follow_symlinks=False)
            if is_folder:
                subfolders.append((entry.path, below + name + "/", safe + safe_component(name) + "/"))
            dot = name.rfind(".")
            if dot <= 0 or name[dot:].lower() not in wanted:  # no ending, or a hidden file's name alone
                continue
            problem = None if entry.is_file(follow_symlinks=False) else _kind(Path(entry.path))
            if problem:
                listing.skipped.append((Path(entry.path), problem))
            elif not is_folder:
                listing.images.append(ImageEntry(entry.path, safe + safe_component(name), label))
        folders.extend(reversed(subfolders))


def list_images(
    folder: str | Path | None = None,
    pattern: str | None = None,
    manifest: str | Path | None = None,
    extensions: Sequence[str] = IMAGE_EXTENSIONS,
) -> Listing:
    """The images of one source, sorted by path: exactly one of

    - ``folder``: the files in it and in its subfolders whose extension is in
      ``extensions`` (hidden files and folders left out); a subfolder is the
      class of the images in it;
    - ``pattern``: every file a glob matches (``**`` recurses);
    - ``manifest``: a CSV file with a ``path`` and optionally a ``label`` column and
      the columns of per-image inputs (a bounding box: ``xmin``, ``ymin``, ``xmax``, ``ymax``),
      or a text file with one path per line; relative paths are relative to the
      manifest's folder.

    Names of things the source names that are not image files (dangling links,
    named pipes, folders named like images) come back in ``skipped`` with why.
    """
    given = [name for name, value in (("folder", folder), ("glob", pattern), ("manifest", manifest)) if value]
    if len(given) != 1:
        raise CnnvisError(f"give exactly one image source (folder, glob or manifest), got {', '.join(given) or 'none'}")
    listing = Listing()
    if folder:
        root = Path(folder)
        if not root.is_dir():
            raise CnnvisError(f"image folder not found: {root}")
        wanted = {e.lower() if e.startswith(".") else "." + e.lower() for e in extensions}
        _list_folder(root, wanted, listing)
    elif pattern:
        root = _fixed_prefix(str(pattern))
        for match in globbing.glob(str(pattern), recursive=True):
            path = Path(match)
            problem = _kind(path)
            if problem == "a folder, not a file" and not Path(match).suffix:
                continue  # ds/** also matches the folders themselves
            if problem:
                listing.skipped.append((path, problem))
            else:
                listing.images.append(_entry(path, root))
    else:
        manifest = Path(manifest)
        root = manifest.parent
        for line, label, columns in _read_manifest(manifest):
            path = Path(line).expanduser()
            path = path if path.is_absolute() else Path(os.path.normpath(root / path))
            # listed images are checked, so a missing or broken one is reported by name; labels
            # come from the label column only
            listing.images.append(ImageEntry(path=path, name=_entry(path, root).name, label=label, columns=columns))
    listing.images.sort(key=lambda entry: entry.location)
    listing.skipped.sort(key=lambda item: str(item[0]))
    return listing


def entries_for(paths: Iterable[str | Path]) -> list[ImageEntry]:
    """Images given one by one: named relative to the folder they have in common."""
    paths = [Path(path) for path in paths]
    if not paths:
        return []
    root = Path(os.path.commonpath([os.path.abspath(path.parent) for path in paths]))
    return [ImageEntry(path=path, name=image_name(os.path.relpath(os.path.abspath(path), root))) for path in paths]


def check_image(path: str | Path, decode: bool = True) -> tuple[str | None, list[int] | None]:
    """(None, [width, height]) when ``path`` decodes to an RGB image, else (the reason
    in one line, None).  ``decode`` False reads the header only (a file broken further
    in then fails in the job that reads it, alone)."""
    try:
        if not decode:
            return None, list(read_size(path))
        image = open_rgb(path)
    except CnnvisError as error:
        return str(error).splitlines()[0], None
    except Exception as error:  # a decoder bug is still a reason not to use the file
        text = str(error).splitlines()[0] if str(error) else ""
        return f"cannot read image {path}: {type(error).__name__}{': ' + text if text else ''}", None
    return None, list(image.size)


def _fingerprint(path: str | Path) -> list[int] | None:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return [status.st_size, status.st_mtime_ns]


def _unique_entries(images: Iterable[ImageEntry | str | Path]) -> list[ImageEntry]:
    """``images`` as entries (paths named by :func:`entries_for`); raises when two
    different files would share a result name."""
    images = list(images)
    entries = [image for image in images if isinstance(image, ImageEntry)]
    entries += entries_for([image for image in images if not isinstance(image, ImageEntry)])
    names: dict[str, str] = {}
    for entry in entries:
        if entry.name in names and names[entry.name] != entry.location:
            raise CnnvisError(
                f"two images would share the result name {entry.name!r}: {names[entry.name]} and {entry.location}"
            )
        names[entry.name] = entry.location
    return entries


def _record(entry: ImageEntry, reason: str | None, size: list[int] | None, fingerprint: list[int] | None) -> dict:
    record = {
        "name": entry.name,
        "path": entry.location,
        "label": entry.label,
        "status": "failed" if reason else "ok",
        "reason": reason,
        "size": size,
        "fingerprint": fingerprint,
    }
    for name, value in entry.columns.items():
        record[name] = COLUMNS[name].to_json(value)
    return record


def listed_images(images: Iterable[ImageEntry | str | Path]) -> list[dict[str, Any]]:
    """The records of :func:`check_images` without opening any image: each file's
    fingerprint only (``status`` "ok", ``size`` None).  For the chunk layout's start,
    where a million header reads would cost a minute: the jobs decode every image,
    and one that cannot be read fails there, alone, with the reason."""
    return [_record(entry, None, None, _fingerprint(entry.location)) for entry in _unique_entries(images)]


def check_images(
    images: Iterable[ImageEntry | str | Path], cache: str | Path | None = None, decode: bool = True
) -> list[dict[str, Any]]:
    """Check each image: ``[{"name", "path", "label", "status": "ok"|"failed", "reason",
    "size", "fingerprint"}]`` (``size``: width and height as decoded; ``fingerprint``:
    the file's size in bytes and modification time in ns), plus each per-image input
    its source gives it, by column name (``"box"``).

    With ``cache`` (a JSON file), a file whose size and modification time are
    unchanged since it was last checked is not read again; the cache is
    rewritten (atomically) only when something changed.  ``decode`` False reads
    headers only (for data sets too large to decode at every start: the jobs
    decode, and an image that fails there fails alone).
    """
    entries = _unique_entries(images)
    known = read_cache(cache)
    changed = False
    records = []
    here = os.getcwd()
    for entry in entries:
        path = entry.location
        key = path if os.path.isabs(path) else os.path.join(here, path)  # abspath's normpath costs seconds
        fingerprint = _fingerprint(path)
        cached = known.get(key)
        if (
            fingerprint is not None
            and isinstance(cached, dict)
            and cached.get("fingerprint") == fingerprint
            and "size" in cached
            and (cached.get("decoded", True) or not decode)
        ):
            reason, size = cached.get("reason"), cached.get("size")
        else:
            reason, size = check_image(Path(path), decode)
            if fingerprint is not None:
                known[key] = {"fingerprint": fingerprint, "reason": reason, "size": size, "decoded": decode}
                changed = True
        records.append(_record(entry, reason, size, fingerprint))
    if cache and changed:
        write_cache(cache, known)
    return records


def skipped_records(listing: Listing) -> list[dict[str, Any]]:
    """The skipped files of a listing as status records (``status``: ``skipped``)."""
    return [
        {"name": str(path), "path": str(path), "label": None, "status": "skipped", "reason": reason, "size": None}
        for path, reason in listing.skipped
    ]
