"""The HTML gallery: a pure function from result records to web pages.

A *record* is one cell of a gallery table, a plain dict:

``section``
    one of :data:`SECTIONS` (the seed gallery's order);
``table``
    the table it belongs to within the section (the workflow uses the model name);
``row``, ``row_label``, ``row_image``
    the row key, its label and, for per-image techniques, the original image
    (a path relative to the gallery folder);
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
tables with more rows, numbered pages under ``gallery/``.  Pages use relative
links only, load no scripts, fonts or anything from the network, and open from
the file system.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

SECTIONS: tuple[tuple[str, str, str], ...] = (
    ("feature-maps", "Feature maps", "The activation of a layer, one small image per channel (one forward pass)."),
    ("kernels", "Kernels", "Raw convolution weights of a layer; RGB for filters with 3 input channels."),
    ("saliency", "Saliency maps", "Gradient of the class score with respect to the input: vanilla, guided backpropagation, deconvnet."),
    ("class-viz", "Class model visualisation", "An image that maximises one class score (gradient ascent), by regularization."),
    ("filter-viz", "Filter visualisation", "An image that maximises the mean activation of one filter of a layer."),
    ("deep-dream", "Deep dream", "A photo changed by gradient ascent to amplify what a layer (or one filter) responds to."),
    ("deep-dream-octaves", "Deep dream with octaves", "Deep dream over an octave pyramid, detail carried from small to large scales."),
    ("grad-cam", "Grad-CAM", "Where the class evidence lies: a layer's channels weighted by their mean gradient."),
)
SECTION_TITLES = {key: title for key, title, _ in SECTIONS}

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5em; color: #222; background: #fff; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; } h3 { margin-bottom: 0.3em; }
nav a { margin-right: 1em; } .note { color: #555; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ddd; padding: 4px; vertical-align: top; text-align: center; font-size: 0.85em; }
thead th { background: #f4f4f4; font-weight: 600; }
figure { margin: 0; } figcaption { max-width: 200px; margin: 0 auto; overflow-wrap: anywhere; }
img { max-width: 200px; max-height: 200px; image-rendering: auto; }
td.failed, li.failed { color: #a00; text-align: left; } td.missing { color: #888; }
.pages a, .pages strong { margin: 0 0.25em; }
""".strip()


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "table"


def caption(record: Mapping[str, Any]) -> list[str]:
    """The recorded figures worth reading beside a picture, one per line."""
    meta = record.get("metadata") or {}
    lines: list[str] = []
    section = record.get("section")
    if section == "grad-cam" and meta.get("layer"):
        lines.append(f"layer {meta['layer']}")
    target = meta.get("target")
    if isinstance(target, Mapping) and "index" in target and section != "class-viz":
        lines.append(f"{target.get('name', 'class')} ({target['index']})")
    if isinstance(meta.get("probability"), (int, float)):
        lines.append(f"p = {meta['probability']:.3f}")
    start, end = meta.get("objective_start"), meta.get("objective_end")
    if isinstance(start, (int, float)) and isinstance(end, (int, float)):
        lines.append(f"objective {start:.3g} \u2192 {end:.3g}")
    if section == "kernels" and meta.get("parameter"):
        shape = meta.get("shape")
        lines.append(str(meta["parameter"]) + (f" ({' x '.join(str(s) for s in shape)})" if shape else ""))
    if section == "feature-maps" and meta.get("shape"):
        lines.append(f"{meta.get('channels_shown', '?')} of {meta['shape'][0]} channels")
    return lines


class _Table:
    def __init__(self, section: str, name: str):
        self.section = section
        self.name = name
        self.columns: dict[str, list[str]] = {}
        self.rows: dict[str, dict[str, Any]] = {}

    def add(self, record: Mapping[str, Any]) -> None:
        row_key = str(record.get("row", ""))
        row = self.rows.setdefault(row_key, {"label": record.get("row_label", row_key), "image": None,
                                             "cells": {}, "failed": None})
        if record.get("row_image") and not row["image"]:
            row["image"] = record["row_image"]
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


def _img(src: str, alt: str, prefix: str) -> str:
    path = _e(prefix + src)
    return f'<a href="{path}"><img src="{path}" alt="{_e(alt)}" loading="lazy"></a>'


def _cell(record: Mapping[str, Any] | None, prefix: str) -> str:
    if record is None:
        return '<td class="missing">\u2014</td>'
    if record.get("status") != "ok" or not record.get("src"):
        reason = record.get("reason") or "not built"
        return f'<td class="missing">{_e(reason)}</td>'
    lines = caption(record)
    text = "<br>".join(_e(line) for line in lines)
    alt = " ".join(str(part) for part in (record.get("column_label") or [record.get("column", "")]))
    return f"<td><figure>{_img(record['src'], alt, prefix)}<figcaption>{text}</figcaption></figure></td>"


def _table_html(table: _Table, rows: Sequence[dict[str, Any]], prefix: str) -> str:
    columns = list(table.columns.items())
    per_image = table.per_image
    head = ["<th>" + ("image" if per_image else "") + "</th>"]
    for _, label in columns:
        head.append("<th>" + "<br>".join(_e(part) for part in label) + "</th>")
    body = []
    for row in rows:
        if row["image"]:
            header = f"<th><figure>{_img(row['image'], row['label'], prefix)}<figcaption>{_e(row['label'])}</figcaption></figure></th>"
        else:
            header = f"<th>{_e(row['label'])}</th>"
        if row["failed"]:
            cells = f'<td class="failed" colspan="{max(len(columns), 1)}">failed: {_e(row["failed"])}</td>'
        else:
            cells = "".join(_cell(row["cells"].get(key), prefix) for key, _ in columns)
        body.append(f"<tr>{header}{cells}</tr>")
    return (f'<div class="scroll"><table><thead><tr>{"".join(head)}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{_e(title)}</title>\n"
        f"<link rel=\"icon\" href=\"data:,\">\n<style>\n{STYLE}\n</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def _pages_links(pages: Sequence[str], current: int | None, prefix: str) -> str:
    links = []
    for number, name in enumerate(pages, start=1):
        if current == number:
            links.append(f"<strong>{number}</strong>")
        else:
            links.append(f'<a href="{_e(prefix + name)}">{number}</a>')
    return '<span class="pages">' + " ".join(links) + "</span>"


def build_gallery(records: Iterable[Mapping[str, Any]], *, title: str = "cnnvis gallery",
                  images: Sequence[Mapping[str, Any]] = (), preview_rows: int = 20, rows_per_page: int = 50,
                  note: str = "") -> dict[str, str]:
    """Render ``records`` as ``{relative file name: HTML}`` (see the module doc).

    ``images`` lists the input images (``name``, ``status``, ``reason``, and
    optionally ``log``, a relative link to the log that names the failure) for the
    summary at the top.  Each table shows its first ``preview_rows`` rows on
    ``index.html``; longer tables are also split into pages of ``rows_per_page``
    rows under ``gallery/``.
    """
    preview_rows = max(1, int(preview_rows))
    rows_per_page = max(1, int(rows_per_page))
    tables: dict[str, dict[str, _Table]] = {key: {} for key, _, _ in SECTIONS}
    for record in records:
        section = record.get("section")
        if section not in tables:
            raise ValueError(f"unknown gallery section {section!r} (known: {', '.join(tables)})")
        name = str(record.get("table", ""))
        tables[section].setdefault(name, _Table(section, name)).add(record)

    files: dict[str, str] = {}
    present = [(key, heading, text) for key, heading, text in SECTIONS if tables[key]]
    body = [f"<h1>{_e(title)}</h1>"]
    if note:
        body.append(f'<p class="note">{_e(note)}</p>')
    failed = [image for image in images if image.get("status") != "ok"]
    if images:
        body.append(f"<p>{len(images)} input images, {len(images) - len(failed)} usable"
                    + (f", {len(failed)} failed:" if failed else ".") + "</p>")
    if failed:
        items = []
        for image in failed:
            log = f' (<a href="{_e(image["log"])}">log</a>)' if image.get("log") else ""
            items.append(f'<li class="failed"><strong>{_e(image.get("name", "?"))}</strong>: '
                         f'{_e(image.get("reason") or "failed")}{log}</li>')
        body.append("<ul>" + "".join(items) + "</ul>")
    if present:
        body.append("<nav>" + "".join(f'<a href="#{_e(key)}">{_e(heading)}</a>' for key, heading, _ in present) + "</nav>")
    else:
        body.append('<p class="note">No results yet.</p>')

    for key, heading, text in present:
        body.append(f'<h2 id="{_e(key)}">{_e(heading)}</h2>\n<p class="note">{_e(text)}</p>')
        for name, table in tables[key].items():
            rows = list(table.rows.values())
            anchor = f"{key}--{_slug(name)}"
            body.append(f'<h3 id="{_e(anchor)}">{_e(name)}</h3>')
            pages = []
            if len(rows) > preview_rows:
                count = (len(rows) + rows_per_page - 1) // rows_per_page
                pages = [f"gallery/{_slug(key)}--{_slug(name)}--{number}.html" for number in range(1, count + 1)]
                for number, page in enumerate(pages, start=1):
                    chunk = rows[(number - 1) * rows_per_page:number * rows_per_page]
                    first = (number - 1) * rows_per_page + 1
                    page_body = [
                        f'<p><a href="../index.html#{_e(anchor)}">\u2190 back to the gallery</a></p>',
                        f"<h1>{_e(heading)}: {_e(name)}</h1>",
                        f"<p>rows {first}\u2013{first + len(chunk) - 1} of {len(rows)}; pages "
                        + _pages_links([p.removeprefix('gallery/') for p in pages], number, "") + "</p>",
                        _table_html(table, chunk, "../"),
                    ]
                    files[page] = _page(f"{heading}: {name} ({number}/{count})", "\n".join(page_body))
                body.append(f'<p class="note">Showing {preview_rows} of {len(rows)} rows; all rows on pages '
                            + _pages_links(pages, None, "") + "</p>")
            body.append(_table_html(table, rows[:preview_rows], ""))
    files["index.html"] = _page(title, "\n".join(body))
    return files
