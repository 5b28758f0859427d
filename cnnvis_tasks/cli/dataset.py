"""The ``check-images`` command: which images of a set cannot be used, and why.

The listing, naming and checking functions live in :mod:`cnnvis_tasks.io.image_list`
(torch-free, shared with the Snakemake workflow) and are re-exported here.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from cnnvis_tasks.cli.common import command, image_list_settings, model_options, warn
from cnnvis_tasks.cli.group import cli
from cnnvis_tasks.errors import CnnvisError
from cnnvis_tasks.io.image_list import (
    check_images,
    entries_for,
    list_images,
    skipped_records,
)
from cnnvis_tasks.io.images import DEFAULT_MAX_PIXELS, DEFAULT_SIZE
from cnnvis_tasks.io.outputs import atomic_write
from cnnvis_tasks.technique import MAX_SIZE
from cnnvis_tasks.workflow.summary import PREDICTION_TOP


@command(cli, "check-images")
@click.option(
    "--image",
    "images",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="An image to check; repeat for many.",
)
@click.option(
    "--folder",
    default=None,
    type=click.Path(file_okay=False, path_type=Path),
    help="Check the image files in this folder and its subfolders (by extension).",
)
@click.option(
    "--glob", "pattern", default=None, metavar="PATTERN", help="Check every file this glob matches (** recurses)."
)
@click.option(
    "--manifest",
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Check the files a manifest lists: a CSV with a 'path' (and 'label') column, or one path per line.",
)
@click.option(
    "--out",
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the status of every image as JSON: name, path, label, status (ok|failed|skipped), reason, size.",
)
@click.option(
    "--cache",
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help="JSON cache of earlier checks: unchanged files (size, mtime) are not decoded again.",
)
@click.option(
    "--fail/--no-fail",
    default=True,
    help="Exit with status 1 when an image cannot be used (--no-fail: only report it).",
)
@click.option(
    "--decode/--header-only",
    default=True,
    show_default=True,
    help="Decode every image, or read headers only (fast; for very large data sets, whose jobs decode).",
)
@click.option("--quiet", "-q", is_flag=True, help="Print nothing on success.")
@click.option("--debug", is_flag=True, help="Show Python tracebacks for errors.")
def check_images_command(images, folder, pattern, manifest, out, cache, fail, decode, quiet, debug) -> None:
    """Decode each image as the techniques would and report the ones that cannot
    be used (unreadable, truncated, not an image), each with a one-line reason."""
    entries, skipped = entries_for(images), []
    if folder or pattern or manifest:
        listing = list_images(folder=folder, pattern=pattern, manifest=manifest)
        entries, skipped = entries + listing.images, skipped_records(listing)
    elif not entries:
        raise click.UsageError("nothing to check: give --image, --folder, --glob or --manifest")
    records = check_images(entries, cache=cache, decode=decode)
    if out:
        text = json.dumps({"images": records + skipped}, indent=1)
        atomic_write(out, lambda handle: handle.write(text.encode("utf-8")))
    failed = [r for r in records if r["status"] != "ok"]
    if not quiet:
        also = f"; {len(skipped)} other files skipped" if skipped else ""
        click.echo(f"check-images: {len(records) - len(failed)} of {len(records)} images ok{also}", err=True)
    for record in failed:
        click.echo(f"bad image {record['name']}: {record['reason']}", err=True)
    for record in skipped:
        click.echo(f"skipped {record['path']}: {record['reason']}", err=True)
    if failed and fail:
        if len(failed) == 1:
            raise CnnvisError(f"bad image {failed[0]['name']}: {failed[0]['reason']}")
        raise CnnvisError(
            f"{len(failed)} of {len(records)} images cannot be used: {', '.join(r['name'] for r in failed)}"
        )


PREDICTION_HEADER = [
    "image",
    "label",
    "label_class",
    "label_name",
    "top1",
    "top1_name",
    "probability",
    "correct",
    "status",
    "reason",
    "top5",
]


@command(cli, "predict")
@model_options
@click.option(
    "--image",
    "images",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="An image; repeat for many.",
)
@click.option("--image-list", **image_list_settings("--image and --label", "its labels are the true classes"))
@click.option(
    "--label",
    "labels",
    multiple=True,
    help="Each image's true class (a class index, WordNet ID or class name; '' for none), paired with "
    "--image in order.",
)
@click.option(
    "--size",
    default=None,
    show_default=str(DEFAULT_SIZE),
    type=click.IntRange(min=0, max=MAX_SIZE),
    help="Shorter side of the input (a model of fixed input size, a ViT: the central square at its own size).",
)
@click.option("--batch-size", default=16, type=click.IntRange(min=1), help="Images per forward pass.")
@click.option(
    "--max-pixels", default=DEFAULT_MAX_PIXELS, type=click.IntRange(min=1), help="Largest input after resizing."
)
@click.option(
    "--top",
    "top_count",
    default=PREDICTION_TOP,
    show_default=True,
    type=click.IntRange(min=1),
    help="How many of the most probable classes the top5 column lists (fewer when the model has fewer).",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="CSV: image, label, its class, the top-1 class and probability, correct, status, reason, and the "
    "top-5 classes as JSON ([[class, name, probability], ...]).",
)
def predict_command(
    images, image_list, labels, size, batch_size, max_pixels, top_count, out, **session_options
) -> None:
    """Each image's top-1 class and its probability, whether it is the image's label,
    and its five most probable classes: the workflow's summary.csv, accuracy and the
    gallery's image pages come from these tables. An image that cannot be used gets
    a row that says why."""
    from cnnvis_tasks.models.labels import resolve_label
    from cnnvis_tasks.run.runner import open_session
    from cnnvis_tasks.workflow.summary import to_csv

    if image_list is not None:
        from cnnvis_tasks.io.list_file import read_image_list

        if images or labels:
            raise click.UsageError("give either --image-list or --image (and --label), not both")
        entries = read_image_list(image_list)
        images, labels = [entry.path for entry in entries], [entry.label or "" for entry in entries]
    elif not images:
        raise click.UsageError("give the images: --image (repeat for many) or --image-list")
    if labels and len(labels) != len(images):
        raise click.UsageError(f"got {len(images)} images but {len(labels)} --label; give one per image ('' for none)")
    if out.suffix.lower() != ".csv":
        raise click.UsageError(f"{out}: --out writes a CSV file; name it *.csv")
    session = open_session(**session_options)
    loaded = session.model
    rows: dict[int, list] = {}
    for index, label in enumerate(labels or [""] * len(images)):
        rows[index] = [str(images[index]), label, "", "", "", "", "", "", "ok", "", ""]
        if label:
            try:
                label_class = resolve_label(label, loaded.categories or [], loaded.name)
                rows[index][2:4] = [label_class, loaded.class_name(label_class)]
            except CnnvisError as error:
                rows[index][8:10] = ["label not understood", str(error)]

    def failed(index: int, error: Exception) -> None:
        rows[index][8:10] = ["failed", str(error)]

    import torch

    from cnnvis_tasks.io.images import load_batches
    from cnnvis_tasks.run.progress import Progress
    from cnnvis_tasks.run.runner import decoding_size, input_crop

    with Progress(len(images), "predict", quiet=session_options["quiet"]) as progress, torch.inference_mode():
        done = 0
        crop = input_crop(loaded, size, warn)
        size = decoding_size(size)
        for indices, batch in load_batches(list(images), size, batch_size, max_pixels, failed=failed, crop=crop):
            logits = loaded.module(loaded.normalize(batch.to(session.device)))
            probabilities = torch.softmax(logits.float(), dim=1)
            top = probabilities.argmax(dim=1)
            values = probabilities.gather(1, top[:, None])[:, 0]
            best_values, best_classes = probabilities.topk(min(top_count, probabilities.shape[1]), dim=1)
            for index, top1, probability, classes, chances in zip(
                indices, top.tolist(), values.tolist(), best_classes.tolist(), best_values.tolist()
            ):
                row = rows[index]
                row[4:7] = [top1, loaded.class_name(top1), f"{probability:.6g}"]
                row[10] = json.dumps(
                    [[c, loaded.class_name(c), float(f"{p:.6g}")] for c, p in zip(classes, chances)],
                    ensure_ascii=False,
                )
                if row[2] != "":
                    row[7] = "yes" if row[2] == top1 else "no"
            done += len(batch)
            progress.update(done)
    text = to_csv(PREDICTION_HEADER, [rows[index] for index in range(len(images))])
    atomic_write(out, lambda handle: handle.write(text.encode("utf-8")))


@command(cli, "summary")
@click.option("--spec", required=True, metavar="JSON|@FILE", help="The workflow's spec (what the gallery reads too).")
@click.option(
    "--images",
    "images_file",
    required=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The image status JSON (check-images --out).",
)
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The CSV to write.")
@click.option("--debug", is_flag=True, help="Show Python tracebacks for errors.")
def summary_command(spec, images_file, out, debug) -> None:
    """summary.csv: one row per image of the run, with its label, each model's top-1
    class, probability and whether it is right, and each result's status and why."""
    from cnnvis_tasks.cli.gallery import load_image_statuses, load_json
    from cnnvis_tasks.workflow.summary import accuracy, summarize, to_csv

    statuses = load_image_statuses(images_file)
    spec_data = load_json(spec, "--spec")
    header, rows = summarize(spec_data, statuses, out.parent)
    text = to_csv(header, rows)
    atomic_write(out, lambda handle: handle.write(text.encode("utf-8")))
    for model in spec_data.get("models", []):
        right, labelled = accuracy(header, rows, model)
        if labelled:
            click.echo(
                f"summary: {model}: {right} of {labelled} labelled images right ({right / labelled:.1%})", err=True
            )


@command(cli, "class-summary")
@click.option(
    "--summary",
    "summary_file",
    required=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The run's summary.csv (the summary command's).",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="per-class.csv to write; confusion.csv and the pictures confusion/MODEL.png are written beside it.",
)
@click.option("--debug", is_flag=True, help="Show Python tracebacks for errors.")
def class_summary_command(summary_file, out, debug) -> None:
    """Per model, how it does on each labelled class, from summary.csv: per-class.csv
    (images, right, accuracy with its Wilson 95 % interval, the class it most often takes
    them for), confusion.csv (every label class / predicted class pair that occurs and
    its count, the mistakes first, largest first) and confusion/MODEL.png (the matrix of
    the classes it mixes up most). Only usable labelled images count; a summary without
    labels gives header-only tables and pictures that say so."""
    from cnnvis_tasks.workflow.class_tables import models_of, per_class, write_tables
    from cnnvis_tasks.workflow.summary import read_summary

    header, rows = read_summary(summary_file)
    write_tables(header, rows, out)
    for model in models_of(header):
        classes = per_class(header, rows, model)
        if not classes:
            click.echo(f"class-summary: {model}: no labelled images", err=True)
            continue
        worst = min(classes, key=lambda entry: (entry["accuracy"], -entry["images"], entry["class"]))
        click.echo(
            f"class-summary: {model}: {len(classes)} classes, worst: {worst['name'] or worst['class']} "
            f"{100 * worst['accuracy']:.1f} % [{100 * worst['low']:.1f} %, {100 * worst['high']:.1f} %] "
            f"({worst['right']} of {worst['images']})",
            err=True,
        )


def _table_summary(spec, out, images_file, resamples, seed, debug) -> None:
    """A table technique's numbers over the run (its description's table): NAME.csv,
    one line per row of its jobs (per image, setting and model), NAME-summary.csv, per
    model and group the mean of each measure with a bootstrap 95 % interval and the
    count, and the table's pictures per model (NAME/MODEL-PICTURE.png), from the jobs'
    records. --out names the table: metrics.csv is the trust metrics'."""
    from cnnvis_tasks.cli.gallery import load_image_statuses, load_json
    from cnnvis_tasks.io.outputs import save_png
    from cnnvis_tasks.workflow import tables

    technique = tables.technique_of_file(out)
    table = technique.table
    if out.name != table.rows_name:
        raise click.UsageError(f"--out is {table.rows_name}, the rows' table ({table.summary_name} goes beside it)")
    spec_data = load_json(spec, "--spec")
    out_dir = out.parent
    rows = tables.read_rows(technique, spec_data, out_dir)
    if images_file is not None:
        names = {str(status["path"]): status["name"] for status in load_image_statuses(images_file)}
        for row in rows:
            row.image = names.get(row.image, row.image)
    summary = tables.summarise(table, rows, resamples, seed)
    measured = tables.row_table(rows)
    for path, columns, content in (
        (out, table.columns_for(measured), measured),
        (out_dir / table.summary_name, table.summary_columns, summary),
    ):
        text = tables.to_csv(columns, content)
        atomic_write(path, lambda handle, text=text: handle.write(text.encode("utf-8")))
    for model in spec_data.get("models", []):
        mine = [row for row in rows if row.model == model]
        for picture in table.pictures:
            drawn = picture.draw(mine, model)
            if drawn is None:
                import numpy as np

                drawn = np.full((1, 1, 3), 255, dtype=np.uint8)
            path = out_dir / table.picture_name(model, picture)
            path.parent.mkdir(parents=True, exist_ok=True)
            save_png(path, drawn, {"model": model, "images": len({row.image for row in mine})})
    click.echo(f"{table.name}-summary: {len(rows)} measured rows, {len(summary)} summary rows", err=True)


def _table_summary_command(name: str, **settings) -> click.Command:
    """``table-summary`` (and its older name, ``trust-summary``): one command, two names."""
    decorators = (
        command(cli, name, **settings),
        click.option(
            "--spec", required=True, metavar="JSON|@FILE", help="The workflow's spec (what the gallery reads too)."
        ),
        click.option(
            "--out",
            required=True,
            type=click.Path(dir_okay=False, path_type=Path),
            help="NAME.csv in the results folder (the records' paths are below it), NAME the table's (metrics.csv: "
            "the trust metrics'); NAME-summary.csv and the pictures NAME/MODEL-PICTURE.png are written beside it.",
        ),
        click.option(
            "--images",
            "images_file",
            default=None,
            type=click.Path(dir_okay=False, exists=True, path_type=Path),
            help="The image status JSON (check-images --out): images go by their names in the tables, not their paths.",
        ),
        click.option(
            "--resamples", default=2000, show_default=True, type=click.IntRange(min=100), help="Bootstrap resamples."
        ),
        click.option("--seed", default=0, show_default=True, type=int, help="The bootstrap's random seed."),
        click.option("--debug", is_flag=True, help="Show Python tracebacks for errors."),
    )

    def function(**options) -> None:
        _table_summary(**options)

    function.__doc__ = _table_summary.__doc__
    for decorator in reversed(decorators):
        function = decorator(function)
    return function


table_summary_command = _table_summary_command("table-summary")
trust_summary_command = _table_summary_command("trust-summary", hidden=True)
