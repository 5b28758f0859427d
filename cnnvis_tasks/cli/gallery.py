"""The ``gallery`` command: the workflow's results as one HTML page (plus pages)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from cnnvis_tasks.cli.common import command
from cnnvis_tasks.cli.group import cli
from cnnvis_tasks.errors import CnnvisError
from cnnvis_tasks.gallery import build_gallery, sample_images, target_label
from cnnvis_tasks.io.outputs import atomic_write, read_metadata
from cnnvis_tasks.workflow.plan import chunk_name, chunk_of
from cnnvis_tasks.workflow.summary import read_summary

SPEC_HELP = """\b
The spec (JSON) lists tables; paths are relative to the folder of --out:
  {"tables": [
    {"section": "saliency", "table": "vgg16", "per_image": true,
     "columns": [{"key": "vanilla-color", "label": ["vanilla", "color"],
                  "path": "vgg16/saliency/{image}/vanilla-color.png"}]},
    {"section": "class-viz", "table": "vgg16", "per_image": false,
     "rows": [{"key": "52", "label": "class 52",
               "cells": [{"key": "none", "label": ["none"], "path": "vgg16/class-viz/class52-none.png"}]}]}]}
Per-image tables get one row per image of --images (name, path, status, reason).
Optional "reductions": [{"technique", "title", "model", "setting", "labels", "folder"}]:
folders holding an atlas.json, shown as gallery/atlas.html (docs/gallery.md)."""


def load_json(value: str, what: str) -> Any:
    text = value
    if value.startswith("@"):
        try:
            text = Path(value[1:]).read_text(encoding="utf-8")
        except OSError as error:
            raise CnnvisError(f"cannot read {what} {value[1:]}: {error.strerror or error}") from None
    try:
        return json.loads(text)
    except ValueError as error:
        raise CnnvisError(f"{what} is not valid JSON: {error}") from None


def load_image_statuses(path: Path) -> list[dict[str, Any]]:
    """The image statuses of a ``check-images --out`` file (its ``images`` list, or a bare list)."""
    data = load_json("@" + str(path), "--images")
    return data.get("images", []) if isinstance(data, dict) else data


def _metadata(root: Path, src: str) -> tuple[str, dict[str, Any], str | None]:
    path = root / src
    if not path.is_file():
        return "missing", {}, "not built"
    try:
        meta = read_metadata(path)
    except Exception as error:  # a damaged picture is shown as such, not fatal to the page
        return "missing", {}, f"unreadable: {type(error).__name__}"
    if meta.get("status") == "failed":  # a failed image's placeholder: its facts say why (this cell only)
        return "missing", meta, f"failed: {meta.get('reason') or 'no reason given'}"
    return "ok", meta, None


def gallery_records(
    spec: dict[str, Any],
    images: list[dict[str, Any]],
    root: Path,
    log_template: str | None = None,
    ids: dict[str, int] | None = None,
) -> list[dict[str, Any]]:
    """Records for :func:`cnnvis_tasks.gallery.build_gallery` from a spec and image list;
    ``ids``: each image's number in the image index (its rows then link to its page)."""
    from cnnvis_tasks.gallery import SECTION_TECHNIQUES  # read when called: a test may add a technique
    from cnnvis_tasks.gallery.views import image_page

    records: list[dict[str, Any]] = []
    for table in spec.get("tables", []):
        section = table.get("section")
        technique = SECTION_TECHNIQUES.get(section)
        if technique is None:
            known = ", ".join(SECTION_TECHNIQUES)
            raise CnnvisError(f"unknown gallery section {section!r} in the spec (known: {known})")
        name = str(table.get("table", ""))
        if table.get("per_image"):
            columns = table.get("columns", [])
            left_out = table.get("failures", {})
            for image in images:
                if image.get("status") == "skipped":
                    continue
                original = os.path.relpath(os.path.abspath(image["path"]), os.path.abspath(root))
                base = {
                    "section": section,
                    "table": name,
                    "row": image["name"],
                    "row_label": image["name"],
                    "row_image": Path(original).as_posix(),
                }
                if ids is not None and image["name"] in ids:
                    base["row_link"] = image_page(name, ids[image["name"]])
                if image.get("status") != "ok":
                    records.append(base | {"status": "failed", "reason": image.get("reason"), "row_image": None})
                    continue
                if image["name"] in left_out:
                    records.append(base | {"status": "failed", "reason": left_out[image["name"]]})
                    continue
                chunk = chunk_name(chunk_of(image["name"], spec.get("chunk_count") or 1), spec.get("chunk_count") or 1)
                for column in columns:
                    src = column["path"].replace("{image}", image["name"]).replace("{chunk}", chunk)
                    status, meta, reason = _metadata(root, src)
                    records.append(
                        base
                        | {
                            "column": column["key"],
                            "column_label": column.get("label"),
                            "src": src,
                            "status": status,
                            "reason": reason,
                            "metadata": meta,
                        }
                    )
        else:
            for row in table.get("rows", []):
                label = row.get("label", row.get("key", ""))
                cells = []
                for cell in row.get("cells", []):
                    status, meta, reason = _metadata(root, cell["path"])
                    cells.append(
                        {
                            "section": section,
                            "table": name,
                            "row": str(row.get("key", label)),
                            "column": cell["key"],
                            "column_label": cell.get("label"),
                            "src": cell["path"],
                            "status": status,
                            "reason": reason,
                            "metadata": meta,
                        }
                    )
                if technique.item == "target":  # the rows are classes: named by what the pictures recorded
                    label = next(filter(None, (target_label(c["metadata"].get("target")) for c in cells)), label)
                for cell in cells:
                    records.append(cell | {"row_label": label})
    return records


@command(cli, "gallery", epilog=SPEC_HELP)
@click.option("--spec", required=True, metavar="JSON|@FILE", help="What to show: the tables (see below).")
@click.option(
    "--images",
    "images_file",
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Image status JSON from check-images --out (rows of per-image tables, failures).",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The page to write (index.html); longer tables also get pages in a 'gallery' folder beside it.",
)
@click.option("--title", default="cnnvis gallery", help="Page title.")
@click.option("--preview-rows", default=20, type=click.IntRange(min=1), help="Rows of each table on the main page.")
@click.option("--rows-per-page", default=50, type=click.IntRange(min=1), help="Rows per page of the full tables.")
@click.option(
    "--log-template",
    default=None,
    metavar="PATH",
    help="Log of a failed image, relative to --out's folder, with '{image}' for its name (linked).",
)
@click.option(
    "--summary",
    "summary_file",
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The run's summary.csv (cnnvis-tasks summary): linked, with each model's accuracy on labelled images.",
)
@click.option(
    "--table-summary",
    "--metrics-summary",
    "table_files",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="A table technique's NAME-summary.csv (cnnvis-tasks table-summary), e.g. metrics-summary.csv: its "
    "section opens with the table of each model. Repeat for each table technique.",
)
@click.option(
    "--max-images",
    default=0,
    type=click.IntRange(min=0),
    show_default=True,
    help="Rows of the per-image tables: at most this many images, spread evenly over them (0: every image); "
    "the failed ones are all listed at the top either way.",
)
@click.option(
    "--class-summary",
    "class_table",
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The run's per-class.csv (cnnvis-tasks class-summary; confusion.csv and confusion/ beside it): "
    "the views page shows per-class accuracy and the classes each model mixes up.",
)
@click.option(
    "--data-set-pages/--no-data-set-pages",
    default=True,
    show_default=True,
    help="Also write the image index (images.html), the views (views.html) and a page per image and model "
    "(gallery/image.html, data under gallery/data/); they list every image, however many.",
)
@click.option("--debug", is_flag=True, help="Show Python tracebacks for errors.")
def gallery_command(
    spec,
    images_file,
    out,
    title,
    preview_rows,
    rows_per_page,
    log_template,
    summary_file,
    table_files,
    max_images,
    class_table,
    data_set_pages,
    debug,
) -> None:
    """Write an HTML gallery of results: a section per technique in gallery order, each
    a table of the original image beside its variants, with the class, probability
    and objective each picture recorded; beside it the image index, the views and a
    page per image (docs/gallery.md). Relative links only; opens from disk."""
    spec_data = load_json(spec, "--spec")
    if not isinstance(spec_data, dict):
        raise CnnvisError("--spec must be a JSON object with a 'tables' list")
    images: list[dict[str, Any]] = []
    if images_file:
        images = load_image_statuses(images_file)
    root = out.parent
    every, shown = sample_images(images, 0), sample_images(images, max_images)
    summary_path = summary_file if summary_file is not None and summary_file.is_file() else None
    # read once: the accuracy above the sections and every image's row in the data-set pages
    summary_table = read_summary(summary_path) if summary_path is not None else None
    written = None
    if data_set_pages:
        from cnnvis_tasks.cli.gallery_pages import write_data_set_pages

        present = [path for path in table_files if path.is_file()]
        classes_path = class_table if class_table is not None and class_table.is_file() else None
        written = write_data_set_pages(
            spec_data, images, root, title, summary_path, summary_table, present, classes_path
        )
    reductions = []
    if spec_data.get("reductions"):
        from cnnvis_tasks.cli.gallery_pages import write_reduction_pages

        ids, models = (written["ids"], written["models"]) if written else (None, [])
        reductions = write_reduction_pages(spec_data, root, title, ids, models, written is not None)
    # only the pictures of the images shown are opened: a million-image run's gallery reads thousands
    records = gallery_records(spec_data, shown, root, ids=written["ids"] if written else None)
    note = spec_data.get("note", "")
    if len(shown) < len(every):
        note = (note + " " if note else "") + (
            f"The per-image tables show {len(shown):,} of the {len(every):,} images, spread evenly over "
            "them (gallery: max_images); summary.csv lists every image."
        )
    for image in images:
        if image.get("status") != "ok" and log_template:
            image["log"] = log_template.replace("{image}", image["name"])
    summary = None
    if summary_table is not None:
        summary = {"href": os.path.relpath(summary_path, root), "accuracy": _accuracy(*summary_table, spec_data)}
    numbers = {}
    for path in table_files:
        if path.is_file():
            name, view = _numbers(path, spec_data, root)
            if view:
                numbers[name] = view
    # an image whose label names no class of a model it is explained for is not usable either
    problems = spec_data.get("label_problems") or {}
    images = [
        image | {"status": "failed", "reason": problems[image["name"]]}
        if image.get("status") == "ok" and image.get("name") in problems
        else image
        for image in images
    ]
    files = build_gallery(
        records,
        title=title,
        images=images,
        preview_rows=preview_rows,
        rows_per_page=rows_per_page,
        note=note,
        summary=summary,
        numbers=numbers,
        data_set_pages=written is not None,
        reductions=reductions,
    )
    pages = root / "gallery"
    pages.mkdir(parents=True, exist_ok=True)  # always there: the workflow declares it as an output
    for stale in pages.glob("*--*.html"):  # pages of an earlier, longer gallery
        if f"gallery/{stale.name}" not in files:
            stale.unlink()
    for name, text in files.items():
        target = out if name == "index.html" else root / name
        atomic_write(target, lambda handle, text=text: handle.write(text.encode("utf-8")))
    click.echo(f"gallery: {out} ({len(records)} cells, {len(files)} pages)", err=True)
    if written:
        click.echo(
            f"gallery: images.html, views.html and {written['images']:,} image pages "
            f"({written['files']:,} data files, {written['bytes'] / 1e6:.1f} MB, largest {written['largest']:,} bytes; "
            f"{written['seconds']:.1f} s)",
            err=True,
        )


def _accuracy(header: list[str], rows: list[list[str]], spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Each model's right and labelled images, from summary.csv's (header, rows)."""
    from cnnvis_tasks.workflow.summary import accuracy

    found = []
    for model in spec.get("models", []):
        if f"{model} correct" in header:
            right, labelled = accuracy(header, rows, model)
            found.append({"model": model, "right": right, "labelled": labelled})
    return found


def _numbers(summary_file: Path, spec: dict[str, Any], root: Path) -> tuple[str, dict[str, Any] | None]:
    """A table technique's name and its view in the gallery, from its NAME-summary.csv,
    with links to both of its tables and each model's pictures (those that exist beside it)."""
    import csv

    from cnnvis_tasks.gallery.numbers import numbers_view
    from cnnvis_tasks.workflow.tables import technique_of_file

    technique = technique_of_file(summary_file)
    table = technique.table
    with summary_file.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    folder = summary_file.parent
    links = {
        name: os.path.relpath(folder / name, root)
        for name in (table.rows_name, table.summary_name)
        if (folder / name).is_file()
    }
    pictures = {
        model: [
            {"src": os.path.relpath(folder / table.picture_name(model, picture), root), "alt": picture.alt}
            for picture in table.pictures
            if (folder / table.picture_name(model, picture)).is_file()
        ]
        for model in spec.get("models", [])
    }
    return technique.name, numbers_view(table, rows, links, pictures)
