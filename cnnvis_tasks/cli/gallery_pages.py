"""The gallery's pages over the whole data set: the image index (``images.html``), each
image's page (``gallery/image.html`` and the files under ``gallery/data/``) and the
views (``views.html``), from the run's tables (docs/gallery.md)."""

from __future__ import annotations

import csv
import json
import math
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from cnnvis_tasks.io.outputs import atomic_write
from cnnvis_tasks.workflow.class_tables import CONFUSION_NAME, PICTURE_FOLDER

STATIC_FILES = ("common.js", "browse.js", "image.js", "atlas.js", "browse.css")


def _dicts(path: Path) -> Iterator[dict[str, str]]:
    """A CSV's rows as dicts, one at a time (a million-image table is read once, not held)."""
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            yield from csv.DictReader(handle)
    except FileNotFoundError:
        return


def read_top(spec: Mapping[str, Any], statuses: Sequence[Mapping[str, Any]], root: Path) -> dict:
    """(model, image name) -> its top-5 ``[class, name, probability]``, from the predictions' tables."""
    by_path = {str(status["path"]): str(status["name"]) for status in statuses}
    found: dict[tuple[str, str], list[Any]] = {}
    pattern = spec.get("predictions")
    if not pattern:
        return found
    for model in spec.get("models", []):
        for chunk in spec.get("chunks", []):
            for row in _dicts(root / pattern.format(model=model, chunk=chunk)):
                text = row.get("top5") or ""
                if not text:
                    continue
                try:
                    listed = json.loads(text)
                except ValueError:
                    continue
                # a model that made NaN for an image has no ranking to show (and JSON has no NaN)
                listed = [entry for entry in listed if isinstance(entry[2], (int, float)) and math.isfinite(entry[2])]
                found[(model, by_path.get(row.get("image", ""), row.get("image", "")))] = listed
    return found


def _write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def write_static(root: Path) -> None:
    """The browse pages' scripts and style, in ``root``/gallery/browse/."""
    static = root / "gallery" / "browse"
    static.mkdir(parents=True, exist_ok=True)
    package = resources.files("cnnvis_tasks.gallery") / "static"
    for name in STATIC_FILES:
        data = (package / name).read_bytes()
        atomic_write(static / name, lambda handle, data=data: handle.write(data))


def write_data_set_pages(
    spec: Mapping[str, Any],
    statuses: Sequence[Mapping[str, Any]],
    root: Path,
    title: str,
    summary_file: Path | None,
    summary: tuple[Sequence[str], Sequence[Sequence[str]]] | None,
    table_files: Sequence[Path],
    class_table: Path | None,
) -> dict[str, Any]:
    """Write images.html, views.html, gallery/image.html, gallery/browse/ and gallery/data/
    in ``root``; ``summary``: summary.csv's (header, rows), read from ``summary_file`` (linked
    from the pages); ``table_files``: the table techniques' NAME-summary.csv (NAME.csv is read,
    beside it); ``class_table``: per-class.csv (confusion.csv and confusion/ beside it).
    Returns what was written (files, bytes, the largest data file, seconds)."""
    from cnnvis_tasks.gallery import SECTION_TITLES, _templates
    from cnnvis_tasks.gallery.browse import catalogue
    from cnnvis_tasks.gallery.index_files import write_index_data
    from cnnvis_tasks.gallery.views import build_views
    from cnnvis_tasks.workflow.tables import technique_of_file

    started = time.perf_counter()
    tables = []
    for path in table_files:
        table = technique_of_file(path).table
        tables.append((table, _dicts(path.parent / table.rows_name)))
    found = catalogue(spec, statuses, summary, read_top(spec, statuses, root), tables, root, SECTION_TITLES)
    written = write_index_data(root / "gallery" / "data", found, title)

    write_static(root)

    per_class: dict[str, list[dict[str, str]]] = {}
    confusion: dict[str, list[dict[str, str]]] = {}
    pictures: dict[str, str] = {}
    if class_table is not None:
        for row in _dicts(class_table):
            per_class.setdefault(row["model"], []).append(row)
        for row in _dicts(class_table.parent / CONFUSION_NAME):
            confusion.setdefault(row["model"], []).append(row)
        for model in found.models:
            picture = class_table.parent / PICTURE_FOLDER / f"{model}.png"
            if picture.is_file():
                pictures[model] = Path(os.path.relpath(picture, root)).as_posix()
    templates = _templates()
    summary_href = Path(os.path.relpath(summary_file, root)).as_posix() if summary_file is not None else None
    links = {}
    if class_table is not None:
        links["per_class"] = Path(os.path.relpath(class_table, root)).as_posix()
        links["confusion"] = Path(os.path.relpath(class_table.parent / CONFUSION_NAME, root)).as_posix()
    for name, target in (("images.html.j2", root / "images.html"), ("image.html.j2", root / "gallery" / "image.html")):
        _write_text(target, templates.get_template(name).render(title=title, summary_href=summary_href))
    views = build_views(found, per_class, confusion, pictures)
    page = templates.get_template("views.html.j2").render(title=title, views=views, links=links)
    _write_text(root / "views.html", page)
    return {
        "images": len(found.images),
        "files": written.files,
        "bytes": written.bytes,
        "largest": written.largest,
        "largest_name": written.largest_name,
        "seconds": time.perf_counter() - started,
        "ids": {image["name"]: number for number, image in enumerate(found.images)},
        "models": list(found.models),
    }


def write_reduction_pages(
    spec: Mapping[str, Any],
    root: Path,
    title: str,
    ids: Mapping[str, int] | None,
    models: Sequence[str],
    data_set_pages: bool,
) -> list[dict[str, Any]]:
    """The data-set reductions' pages (the spec's ``reductions``): ``gallery/atlas.html``,
    ``gallery/channel.html`` and ``gallery/data/atlas/`` (after the image index's data,
    which replaces ``gallery/data/`` whole); ``ids``: image name -> its id in the image
    index of ``models`` (None: no image pages; tiles lead to the image files).  Returns
    index.html's sections of them (:func:`cnnvis_tasks.gallery.atlas.reduction_listing`)."""
    from cnnvis_tasks.gallery import SECTION_TITLES, _templates
    from cnnvis_tasks.gallery.atlas import atlas_entries, read_atlas, reduction_listing, write_atlas_data

    entries = atlas_entries(spec)
    if not entries:
        return []
    for entry in entries:
        read_atlas(entry, root, spec, ids, models, SECTION_TITLES)
    write_atlas_data(root / "gallery" / "data" / "atlas", entries)
    write_static(root)
    templates = _templates()
    for name in ("atlas.html", "channel.html"):
        page = templates.get_template(f"{name}.j2").render(title=title, data_set_pages=data_set_pages)
        _write_text(root / "gallery" / name, page)
    return reduction_listing(entries)
