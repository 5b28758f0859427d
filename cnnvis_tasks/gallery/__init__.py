"""The HTML gallery: a pure function from result records to web pages.

A *record* is one cell of a gallery table, a plain dict:

``section``
    a technique's name (:func:`cnnvis_tasks.techniques.all_techniques`, whose
    order the sections follow);
``table``
    the table it belongs to within the section (the workflow uses the model name);
``row``, ``row_label``, ``row_image``, ``row_link``
    the row key, its label and, for per-image techniques, the original image
    (a path relative to the gallery folder) and its page (``gallery/image.html?...``),
    which the row's pictures lead to;
``column``, ``column_label``
    the column key and its header lines (model, layer, filter, class, ...);
``src``
    the picture, relative to the gallery folder;
``status``
    ``ok``, ``missing`` (no file) or ``failed`` (the row's image could not be
    used: ``reason`` says why; such a record stands for the whole row);
``metadata``
    the facts the picture recorded (class, probability, objective, layer).

:func:`build_gallery` turns records into ``{relative file name: HTML text}``:
``index.html`` with every section and the first rows of each table, plus, for
tables with more rows, numbered pages under ``gallery/``.  The pages come from
the jinja2 templates in ``templates/``; they use relative links only (URL-encoded,
so any file name loads), load no scripts, fonts or anything from the network,
and open from the file system.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

import jinja2

from cnnvis_tasks.technique import Technique
from cnnvis_tasks.techniques import all_techniques

SECTION_TECHNIQUES: dict[str, Technique] = {technique.name: technique for technique in all_techniques()}
SECTIONS: tuple[tuple[str, str, str], ...] = tuple(
    (technique.name, technique.title, technique.description) for technique in all_techniques()
)
SECTION_TITLES = {key: title for key, title, _ in SECTIONS}


@functools.cache
def _templates() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader(__package__, "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    environment.filters["url"] = lambda path: quote(str(path), safe="/")
    return environment


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "table"


def target_label(target: Any) -> str | None:
    """``NAME (INDEX)`` for a recorded target class, or None without one."""
    if isinstance(target, Mapping) and "index" in target:
        return f"{target.get('name', 'class')} ({target['index']})"
    return None


def caption(record: Mapping[str, Any]) -> list[str]:
    """The recorded figures worth reading beside a picture, one per line: the
    target, probability and objective, and the technique's own lines."""
    meta = record.get("metadata") or {}
    technique = SECTION_TECHNIQUES.get(record.get("section"))
    lines: list[str] = []
    target = target_label(meta.get("target"))
    if target and not (technique and technique.item == "target"):  # there the row names the class
        lines.append(target)
    if isinstance(meta.get("probability"), (int, float)):
        lines.append(f"p = {meta['probability']:.3f}")
    start, end = meta.get("objective_start"), meta.get("objective_end")
    if isinstance(start, (int, float)) and isinstance(end, (int, float)):
        lines.append(f"objective {start:.3g} \u2192 {end:.3g}")
    if technique is None:
        return lines
    if technique.caption is not None:
        extra = list(technique.caption(meta))
    else:  # a table technique's pictures: the row's numbers (Table.caption)
        extra = technique.table.caption(meta) if technique.table is not None else []
    return extra + lines if technique.caption_first else lines + extra


class _Table:
    def __init__(self, section: str, name: str):
        self.section = section
        self.name = name
        self.columns: dict[str, list[str]] = {}
        self.rows: dict[str, dict[str, Any]] = {}

    def add(self, record: Mapping[str, Any]) -> None:
        row_key = str(record.get("row", ""))
        row = self.rows.setdefault(
            row_key,
            {"label": record.get("row_label", row_key), "image": None, "link": None, "cells": {}, "failed": None},
        )
        if record.get("row_image") and not row["image"]:
            row["image"] = record["row_image"]
        if record.get("row_link") and not row["link"]:
            row["link"] = record["row_link"]
        if record.get("status") == "failed":
            row["failed"] = record.get("reason") or "failed"
            return
        column = str(record.get("column", ""))
        label = record.get("column_label") or [column]
        self.columns.setdefault(column, [label] if isinstance(label, str) else list(label))
        row["cells"][column] = record

    @property
    def per_image(self) -> bool:
        return any(row["image"] for row in self.rows.values()) or any(row["failed"] for row in self.rows.values())

    def view(self, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """What the ``table`` template macro shows of ``rows``."""
        return {
            "per_image": self.per_image,
            "columns": list(self.columns.values()),
            "rows": [
                {
                    "label": row["label"],
                    "image": row["image"],
                    "link": row["link"],
                    "failed": row["failed"],
                    "cells": [_cell_view(row["cells"].get(key), row["link"]) for key in self.columns],
                }
                for row in rows
            ],
        }


def _cell_view(record: Mapping[str, Any] | None, link: str | None = None) -> dict[str, Any] | None:
    """A cell's picture, which leads to its image's page (``link``), else to itself."""
    if record is None:
        return None
    if record.get("status") != "ok" or not record.get("src"):
        return {"reason": record.get("reason") or "not built"}
    alt = " ".join(str(part) for part in (record.get("column_label") or [record.get("column", "")]))
    return {"reason": None, "src": record["src"], "alt": alt, "caption": caption(record), "link": link}


def sample_images(images: Sequence[Mapping[str, Any]], limit: int) -> list[Mapping[str, Any]]:
    """The images the per-image tables show: every one that has a row (not the skipped
    files), or with ``limit`` (0: no limit) at most that many, spread evenly over them
    (every class of a class-folder data set, not the first few), in their order."""
    rows = [image for image in images if image.get("status") != "skipped"]
    if not limit or len(rows) <= limit:
        return rows
    return [rows[k * len(rows) // limit] for k in range(limit)]


def build_gallery(
    records: Iterable[Mapping[str, Any]],
    *,
    title: str = "cnnvis gallery",
    images: Sequence[Mapping[str, Any]] = (),
    preview_rows: int = 20,
    rows_per_page: int = 50,
    note: str = "",
    summary: Mapping[str, Any] | None = None,
    numbers: Mapping[str, Mapping[str, Any]] | None = None,
    data_set_pages: bool = False,
    reductions: Sequence[Mapping[str, Any]] = (),
) -> dict[str, str]:
    """Render ``records`` as ``{relative file name: HTML}`` (see the module doc).

    ``images`` lists the input images (``name``, ``status``: ``ok``, ``failed`` or
    ``skipped`` (not an image file), ``reason``, and optionally ``log``, a relative
    link to the log that names the failure) for the summary at the top;
    ``summary`` links the run's summary table (``href``) and gives each model's
    ``accuracy`` (``model``, ``right``, ``labelled``).  Each table shows its first ``preview_rows`` rows on
    ``index.html``; longer tables are also split into pages of ``rows_per_page``
    rows under ``gallery/``.  ``numbers`` (technique -> :func:`~cnnvis_tasks.gallery.numbers.numbers_view`)
    opens the section of each table technique with its table per model.  ``data_set_pages``:
    the page links the image index (``images.html``) and the views (``views.html``).
    ``reductions``: the data-set reductions' sections (title, anchor, entries: model, labels,
    href to its page, channels, scanned, or the problem that left it out), listed after the summary.
    """
    numbers = numbers or {}
    preview_rows = max(1, int(preview_rows))
    rows_per_page = max(1, int(rows_per_page))
    tables: dict[str, dict[str, _Table]] = {key: {} for key in SECTION_TECHNIQUES}
    for record in records:
        section = record.get("section")
        if section not in tables:
            raise ValueError(f"unknown gallery section {section!r} (known: {', '.join(tables)})")
        name = str(record.get("table", ""))
        tables[section].setdefault(name, _Table(section, name)).add(record)

    templates = _templates()
    files: dict[str, str] = {}
    sections = []
    for key, technique in SECTION_TECHNIQUES.items():
        if not tables[key] and key not in numbers:
            continue
        entries = []
        for name, table in tables[key].items():
            rows = list(table.rows.values())
            anchor = f"{key}--{_slug(name)}"
            pages = []
            if len(rows) > preview_rows:
                count = (len(rows) + rows_per_page - 1) // rows_per_page
                pages = [f"gallery/{_slug(key)}--{_slug(name)}--{number}.html" for number in range(1, count + 1)]
                for number, page in enumerate(pages, start=1):
                    chunk = rows[(number - 1) * rows_per_page : number * rows_per_page]
                    first = (number - 1) * rows_per_page + 1
                    files[page] = templates.get_template("table_page.html.j2").render(
                        title=f"{technique.title}: {name} ({number}/{count})",
                        heading=technique.title,
                        name=name,
                        anchor=anchor,
                        first=first,
                        last=first + len(chunk) - 1,
                        total_rows=len(rows),
                        pages=[p.removeprefix("gallery/") for p in pages],
                        number=number,
                        view=table.view(chunk),
                    )
            entries.append(
                {
                    "name": name,
                    "anchor": anchor,
                    "pages": pages,
                    "total_rows": len(rows),
                    "view": table.view(rows[:preview_rows]),
                }
            )
        sections.append(
            {
                "key": key,
                "title": technique.title,
                "description": technique.description,
                "reference": technique.reference,
                "tables": entries,
                "numbers": [numbers[key]] if key in numbers else [],
            }
        )
    failed = [
        {"name": image.get("name", "?"), "reason": image.get("reason") or "failed", "log": image.get("log")}
        for image in images
        if image.get("status") not in ("ok", "skipped")
    ]
    skipped = [
        {"path": image.get("path", "?"), "reason": image.get("reason") or "not an image file"}
        for image in images
        if image.get("status") == "skipped"
    ]
    files["index.html"] = templates.get_template("index.html.j2").render(
        title=title,
        note=note,
        images=[image for image in images if image.get("status") != "skipped"],
        failed=failed,
        skipped=skipped,
        summary=summary,
        sections=sections,
        data_set_pages=data_set_pages,
        reductions=list(reductions),
    )
    return files
