"""Image lists: a chunk's images as one CSV file that changes when any of them does.

The workflow writes one per chunk (``chunk-lists/CHUNK.csv``); a job reads it with
``--image-list``.  Columns: each image's name, path, label and fingerprint
(:data:`IMAGE_LIST_COLUMNS`), then one column per per-image input any of its images
has (:mod:`cnnvis_tasks.io.columns`, in their registry's order).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from cnnvis_tasks.errors import CnnvisError
from cnnvis_tasks.io.columns import COLUMNS
from cnnvis_tasks.io.image_list import ImageEntry
from cnnvis_tasks.io.outputs import atomic_write

IMAGE_LIST_COLUMNS = ("name", "path", "label", "bytes", "mtime_ns")
# File names under --out-dir for images from an image list: the image's name (its path
# below its source, extension kept), then the rendering.
IMAGE_LIST_FILE_NAME = "{name}.{rendering}.{ext}"


def image_list_text(records: Iterable[Mapping[str, Any]]) -> str:
    """The CSV text of an image list: each image's name, path, label and fingerprint,
    so that the text changes when an image does; then a column for each per-image input
    that any image has (a list without any keeps the text it always had, so that its
    jobs are not re-run).  ``records``' column values are as image records hold them."""
    records = list(records)
    given = [column for name, column in COLUMNS.items() if any(record.get(name) for record in records)]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*IMAGE_LIST_COLUMNS, *(column.name for column in given)])
    for record in records:
        size, mtime = record.get("fingerprint") or ("", "")
        row = [record["name"], record["path"], record.get("label") or "", size, mtime]
        for column in given:
            value = record.get(column.name)
            row.append(column.text(column.from_json(value)) if value else "")
        writer.writerow(row)
    return buffer.getvalue()


def write_image_list(path: str | Path, records: Iterable[Mapping[str, Any]]) -> bool:
    """Write an image list unless the file already holds the same text (its modification
    time then stays, and the jobs that read it are not re-run); True when written."""
    text = image_list_text(records)
    try:
        if Path(path).read_text(encoding="utf-8") == text:
            return False
    except (OSError, UnicodeDecodeError):
        pass
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))
    return True


def read_image_list(path: str | Path) -> list[ImageEntry]:
    """The images of an image list (:func:`write_image_list`), in its order."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        raise CnnvisError(f"cannot read image list {path}: {reason}") from None
    rows = list(csv.reader(io.StringIO(text, newline="")))
    if not rows or tuple(rows[0][:3]) != IMAGE_LIST_COLUMNS[:3]:
        raise CnnvisError(f"image list {path}: expected the columns {', '.join(IMAGE_LIST_COLUMNS)}")
    given = [(at, COLUMNS[name]) for at, name in enumerate(rows[0]) if name in COLUMNS]
    entries = []
    for number, row in enumerate(rows[1:], start=2):
        if len(row) < 3 or not row[0] or not row[1]:
            raise CnnvisError(f"image list {path}, line {number}: expected a name, a path and a label (may be empty)")
        values = {}
        for at, column in given:
            try:
                value = column.parse_given(row[at]) if len(row) > at else None
            except ValueError as error:
                raise CnnvisError(f"image list {path}, line {number}: {error}") from None
            if value is not None:
                values[column.name] = value
        entries.append(ImageEntry(path=Path(row[1]), name=row[0], label=row[2] or None, columns=values))
    return entries
