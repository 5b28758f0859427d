"""The chunk layout's bookkeeping at the start of a run: image lists and stale folders.

In the chunk layout (``layout: chunks``) Snakemake sees one image list per chunk
(the input of every job of the chunk) and, per job, its record and its folder of
pictures.  Two things keep that exact at the chunk level:

* :func:`write_image_lists` writes each chunk's list only when its text changes
  (an image added, removed, relabelled, or changed in size or time), so that
  Snakemake re-runs exactly the chunks whose images changed;
* :func:`stale_records` finds the jobs whose folder changed after the job
  finished (a picture deleted, added or replaced: each changes the modification
  time of the folder that holds it), so that their records can be removed and
  the chunk runs again.  That costs one look per folder, not per picture.  A
  file overwritten in place, without a new name, or cut short by a broken copy
  is seen only with ``verify`` (config ``verify_pictures``): every file's time,
  the end of every PNG and the length of every raw .npy array are then checked.
  cnnvis itself writes every file under a new name and renames it, so a job
  never leaves one half-written.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator

from cnnvis_tasks.io.list_file import write_image_list
from cnnvis_tasks.workflow.plan import Plan

# Snakemake marks a finished directory output with this file (written after the job).
SNAKEMAKE_TIMESTAMP = ".snakemake_timestamp"


def write_image_lists(plan: Plan) -> list[str]:
    """Write the image list of every chunk that changed; returns those written."""
    written = []
    for chunk, path in plan.image_lists.items():
        if write_image_list(path, plan.image_list_records(chunk)):
            written.append(path)
    return written


def _folders(root: str) -> Iterator[str]:
    """``root`` and every folder below it."""
    yield root
    try:
        with os.scandir(root) as entries:
            folders = [entry.path for entry in entries if entry.is_dir(follow_symlinks=False)]
    except OSError:
        return
    for folder in folders:
        yield from _folders(folder)


def _mtime(path: str) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def _finished(folder: str, record: str) -> int | None:
    """When a job finished: the later of its record and Snakemake's mark in its folder."""
    return max(filter(None, (_mtime(record), _mtime(os.path.join(folder, SNAKEMAKE_TIMESTAMP)))), default=None)


def folder_changed(folder: str, record: str) -> bool:
    """Whether a folder of pictures changed after its job finished: a folder in it
    was modified after the record and Snakemake's mark were written."""
    finished = _finished(folder, record)
    if finished is None:
        return False
    return any((_mtime(path) or 0) > finished for path in _folders(folder))


# Every PNG ends with its IEND chunk: length 0, the type, and the type's CRC.
PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def _png_problem(handle) -> str | None:
    size = os.fstat(handle.fileno()).st_size
    if size < len(PNG_END):
        return "is cut short (not a whole PNG)"
    handle.seek(-len(PNG_END), os.SEEK_END)
    return None if handle.read() == PNG_END else "is cut short (not a whole PNG)"


def _npy_problem(handle) -> str | None:
    from numpy.lib import format as npy

    try:
        version = npy.read_magic(handle)
        reader = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
        shape, _, dtype = reader(handle)
    except ValueError:
        return "is not a whole NumPy array file"
    expected = handle.tell() + math.prod(shape) * dtype.itemsize
    if os.fstat(handle.fileno()).st_size != expected:
        return "is cut short (not the bytes its array header says)"
    return None


CONTENT_CHECKS = {".png": _png_problem, ".npy": _npy_problem}


def _content_problem(path: str) -> str | None:
    """Why a picture (PNG) or raw array (.npy) is not whole, or None; other files pass."""
    check = CONTENT_CHECKS.get(os.path.splitext(path)[1])
    if check is None:
        return None
    try:
        with open(path, "rb") as handle:
            return check(handle)
    except OSError as error:
        return f"cannot be read ({error.strerror or error})"


def damaged_picture(folder: str, record: str) -> str | None:
    """The first file of a job's folder that was written after the job finished, or
    a PNG or .npy file that is not whole (cut short); None when every file is sound.
    Reads every file's time, the end of every PNG and the header of every .npy."""
    finished = _finished(folder, record)
    if finished is None:
        return None
    for path in _folders(folder):
        try:
            with os.scandir(path) as entries:
                files = [entry for entry in entries if entry.is_file(follow_symlinks=False)]
        except OSError:
            continue
        for entry in files:
            try:
                modified = entry.stat(follow_symlinks=False).st_mtime_ns
            except OSError:
                continue
            if modified > finished:
                return f"{entry.path} was written after its job finished"
            problem = _content_problem(entry.path)
            if problem:
                return f"{entry.path} {problem}"
    return None


def stale_records(plan: Plan, verify: bool = False) -> list[tuple[str, str]]:
    """Records of finished jobs whose folder changed since (their chunk must run
    again), each with why; ``verify`` also checks every file (:func:`damaged_picture`)."""
    stale = []
    for rule in plan.chunk_rules:
        for chunk in rule.chunks:
            for paths in rule.paths(chunk):
                if paths["folder"] is None:
                    continue
                if not (os.path.exists(paths["record"]) and os.path.isdir(paths["folder"])):
                    continue
                if folder_changed(paths["folder"], paths["record"]):
                    stale.append((paths["record"], "pictures of this chunk were deleted or replaced"))
                elif verify and (damage := damaged_picture(paths["folder"], paths["record"])):
                    stale.append((paths["record"], damage))
    return stale


def missing_records(plan: Plan) -> list[str]:
    """Records of jobs whose record or folder is missing (not run yet, or deleted)."""
    missing = []
    for rule in plan.chunk_rules:
        for chunk in rule.chunks:
            for paths in rule.paths(chunk):
                if not os.path.exists(paths["record"]) or (paths["folder"] and not os.path.isdir(paths["folder"])):
                    missing.append(paths["record"])
    return missing
