"""The ``check-images`` command: which images of a set cannot be used, and why.

The listing, naming and checking functions live in :mod:`cnnvis_tasks.image_list`
(torch-free, shared with the Snakemake workflow) and are re-exported here.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..errors import CnnvisError
from ..image_list import (  # noqa: F401  (re-exported)
    IMAGE_EXTENSIONS,
    check_image,
    check_images,
    image_name,
    list_images,
    name_images,
)
from ..outputs import atomic_write
from . import cli
from .common import command


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
    help="Check the image files directly in this folder (by extension).",
)
@click.option(
    "--glob", "pattern", default=None, metavar="PATTERN", help="Check every file this glob matches (** recurses)."
)
@click.option(
    "--manifest",
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Check the files a text file lists, one path per line.",
)
@click.option(
    "--out",
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the status of every image as JSON: name, path, status (ok|failed), reason.",
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
@click.option("--quiet", "-q", is_flag=True, help="Print nothing on success.")
@click.option("--debug", is_flag=True, help="Show Python tracebacks for errors.")
def check_images_command(images, folder, pattern, manifest, out, cache, fail, quiet, debug) -> None:
    """Decode each image as the techniques would and report the ones that cannot
    be used (unreadable, truncated, not an image), each with a one-line reason."""
    paths = list(images)
    if folder or pattern or manifest:
        paths += list_images(folder=folder, pattern=pattern, manifest=manifest)
    elif not paths:
        raise click.UsageError("nothing to check: give --image, --folder, --glob or --manifest")
    records = check_images(paths, cache=cache)
    if out:
        text = json.dumps({"images": records}, indent=1)
        atomic_write(out, lambda handle: handle.write(text.encode("utf-8")))
    failed = [r for r in records if r["status"] != "ok"]
    if not quiet:
        click.echo(f"check-images: {len(records) - len(failed)} of {len(records)} images ok", err=True)
    for record in failed:
        click.echo(f"bad image {record['name']}: {record['reason']}", err=True)
    if failed and fail:
        if len(failed) == 1:
            raise CnnvisError(f"bad image {failed[0]['name']}: {failed[0]['reason']}")
        raise CnnvisError(
            f"{len(failed)} of {len(records)} images cannot be used: {', '.join(r['name'] for r in failed)}"
        )
