"""The reduce command of every technique that reduces a data set (``Technique.reduction``):
its map jobs' files merged into one folder, made from the technique's description."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import click

from cnnvis_tasks.cli.common import CONTEXT_SETTINGS, CnnvisCommand, model_params, warn
from cnnvis_tasks.cli.options import option_param
from cnnvis_tasks.technique import Technique


def reduce_params(technique: Technique) -> list[click.Parameter]:
    reduction = technique.reduction
    return [
        *model_params(),
        click.Argument(
            ["files"], nargs=-1, required=True, type=click.Path(dir_okay=False, exists=True, path_type=Path)
        ),
        click.Option(
            ["--images", "images_file"],
            type=click.Path(dir_okay=False, exists=True, path_type=Path),
            default=None,
            help="The image check's JSON (check-images --out; the workflow's images.json): each image's name "
            "and label.",
        ),
        click.Option(
            ["--out-dir"],
            required=True,
            type=click.Path(file_okay=False, path_type=Path),
            help=f"The {reduction.title}'s folder.",
        ),
        click.Option(
            ["--size"],
            type=click.IntRange(0, 4096),
            default=None,
            help=f"The shorter side the images were resized to by {technique.name} --size; images are read "
            "again the same way.  [default: as the files record]",
        ),
        click.Option(["--batch-size"], type=click.IntRange(min=1), default=16, show_default=True),
        *(option_param(option) for option in reduction.options),
    ]


def reduce_command(technique: Technique, files, images_file, out_dir, size, batch_size, **params: Any) -> None:
    from cnnvis_tasks.run.runner import open_session

    own = {option.name: params.pop(option.name) for option in technique.reduction.options}
    session = open_session(**params)
    try:
        line = technique.reduction.reduce(
            list(files),
            session,
            out_dir,
            images_file=images_file,
            size=size,
            batch_size=batch_size,
            warn=warn,
            **own,
        )
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    if not session.quiet:
        click.echo(f"{technique.reduction.command}: {line}", err=True)


def register(group: click.Group) -> None:
    """Add each reducing technique's reduce command to ``group``."""
    from cnnvis_tasks.techniques import all_techniques

    for technique in all_techniques():
        reduction = technique.reduction
        if reduction is None:
            continue
        group.add_command(
            CnnvisCommand(
                reduction.command,
                params=reduce_params(technique),
                callback=functools.partial(reduce_command, technique),
                help=f"{reduction.summary}\n\nFILES: the {reduction.suffix} files that cnnvis-tasks "
                f"{technique.name} --out wrote, one per chunk of a data set, of the same model and setting.",
                short_help=f"Merge {technique.name} files into the {reduction.title}.",
                context_settings=CONTEXT_SETTINGS,
            )
        )
