"""``cnnvis-tasks shared-pass``: several techniques from one forward and backward per batch.

Each ``--job`` is one technique's name and exactly the arguments its own
command takes for its options and outputs, parsed by that command, so nothing
is described twice; the model and the images are given once, to
``shared-pass`` itself.  The work is done by
:func:`cnnvis_tasks.run.runner.run_shared` (a pass of one member per job).
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from cnnvis_tasks.cli.common import (
    SESSION_PARAMETERS,
    capture_warnings,
    command,
    image_list_settings,
    model_options,
    warn,
)
from cnnvis_tasks.cli.group import cli
from cnnvis_tasks.cli.techniques import PreparedCall, make_command, prepare_call, read_inputs, unset_sizes
from cnnvis_tasks.errors import CnnvisError
from cnnvis_tasks.run.runner import decoding_size

# Given once to shared-pass, for every job: (parameter, its flag).
SHARED_PARAMETERS = {
    **{name: "--" + name.replace("_", "-") for name in SESSION_PARAMETERS},
    "images": "--image",
    "image_list": "--image-list",
}
# The jobs decode the same batches: these must be the same in every job.
DECODING = (("size", "--size"), ("batch_size", "--batch-size"), ("max_pixels", "--max-pixels"))


def parse_job(text: str, parent: click.Context) -> tuple[Any, dict[str, Any]]:
    """A ``--job`` value as (technique, its command's parameters), parsed by that command."""
    from cnnvis_tasks.techniques import get_technique

    words = shlex.split(text)
    if not words:
        raise click.BadParameter("an empty job: give a technique's name and its arguments", param_hint="--job")
    try:
        technique = get_technique(words[0])
    except CnnvisError as error:
        raise click.BadParameter(f"{text!r}: {error}", param_hint="--job") from None
    if technique.shares_pass is None or technique.from_pass is None:
        raise click.UsageError(
            f"--job {text!r}: {technique.name} cannot share the pass (it runs the model its own way); "
            "run it with its own command"
        )
    sub = make_command(technique).make_context(f"shared-pass --job '{technique.name}'", words[1:], parent=parent)
    for name, flag in SHARED_PARAMETERS.items():
        if sub.get_parameter_source(name) == ParameterSource.COMMANDLINE:
            raise click.UsageError(f"--job {text!r}: give {flag} to shared-pass itself, once for every job")
    return technique, unset_sizes(sub, dict(sub.params))


def check_shared(texts: list[str], calls: list[PreparedCall]) -> None:
    """Every job's settings can share the pass, the jobs decode the same batches, and
    no two jobs write the same file."""
    from cnnvis_tasks.run.runner import Member, pass_settings

    for text, call in zip(texts, calls):
        for _values, _members, needs in pass_settings(Member(call.technique, call.rows, call.options)):
            if isinstance(needs, str):
                raise click.UsageError(f"--job {text!r} cannot share the pass: {needs}")
    for name, flag in DECODING:
        found = {text: _decoding(call, name) for text, call in zip(texts, calls)}
        if len(set(found.values())) > 1:
            given = "; ".join(f"{value} in {text!r}" for text, value in found.items())
            raise click.UsageError(f"the jobs decode the same images: give them the same {flag} (got {given})")
    seen: dict[str, str] = {}
    for text, call in zip(texts, calls):
        paths = [path for row in call.rows for path in row.outputs.values()]
        paths += [call.failures.record] if call.failures.record is not None else []
        for path in paths:
            key = os.path.abspath(path)
            if key in seen:
                raise click.UsageError(f"{path} would be written by two jobs ({seen[key]!r} and {text!r})")
            seen[key] = text


def _decoding(call: PreparedCall, name: str) -> Any:
    """The value of decoding option ``name`` a job runs with (no --size: the default)."""
    if name == "max_pixels":
        return call.max_pixels
    return decoding_size(call.options[name]) if name == "size" else call.options[name]


def member(call: PreparedCall) -> Any:
    """A job as a member of the pass (:class:`cnnvis_tasks.run.members.Member`)."""
    from cnnvis_tasks.run.runner import Member

    c = call
    return Member(c.technique, c.rows, c.options, c.targets, c.renderings, c.failures, c.png_level, c.columns)


def asked_size(calls: list[PreparedCall]) -> int | None:
    """The --size the jobs asked for (they agree), None when none gave it."""
    return next((call.options["size"] for call in calls if call.options["size"] is not None), None)


@command(cli, "shared-pass")
@model_options
@click.option(
    "--image",
    "images",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Input image, a folder of images or a quoted glob; repeat for many.",
)
@click.option("--image-list", **image_list_settings("--image", "--target label in a job explains each image's label"))
@click.option(
    "--job",
    "jobs",
    multiple=True,
    required=True,
    metavar="'TECHNIQUE ARGS...'",
    help="A technique and its own command's arguments (options, outputs, --keep-going, --record, ...), "
    "quoted as one value; repeat for each technique.",
)
@click.option(
    "--batch-size",
    "batch_size",
    default=None,
    type=click.IntRange(min=1),
    help="Images per forward pass for every job, instead of the jobs' own (the workflow's retry of a job "
    "killed for memory runs with a smaller one); changes no result.",
)
@click.pass_context
def shared_pass_command(ctx: click.Context, images, image_list, jobs, batch_size, **common: Any) -> None:
    """Several techniques over the same images from one forward and one backward pass per batch.

    Vanilla saliency, feature maps and the CAM methods (grad-cam, grad-cam-plus-plus,
    xgrad-cam, hires-cam, layer-cam) read what they need from the same pass: the model
    runs once per batch with every layer needed recorded, and one backward gives the
    input gradient and each CAM layer's gradient.  Each job writes exactly the files and
    record its own command would.  Example:

    \b
      cnnvis-tasks shared-pass --model resnet18 --image-list chunk.csv \\
        --job 'saliency --method vanilla --out-dir out/saliency --rendering gray' \\
        --job 'grad-cam --layer auto --out-dir out/grad-cam --rendering overlay' \\
        --job 'feature-maps --layer layer2 --out-dir out/feature-maps'

    The jobs must agree on --size, --batch-size and --max-pixels; a job whose options
    change the backward (saliency --method guided or deconv) cannot share it.
    """
    capture_warnings(_run)(ctx, images, image_list, jobs, common, batch_size)


def _run(ctx: click.Context, images, image_list, jobs, common: dict[str, Any], batch_size: int | None = None) -> None:
    from cnnvis_tasks.cli.techniques import check_targets
    from cnnvis_tasks.run.runner import open_session, run_shared

    parsed = [parse_job(text, ctx) for text in jobs]
    inputs = read_inputs(images, image_list)
    calls = []
    for technique, params in parsed:
        params.update(common, images=images, image_list=image_list)
        calls.append(prepare_call(technique, params, inputs=inputs))
    check_shared(list(jobs), calls)
    session = open_session(**common)
    for call in calls:
        check_targets(call, session)
    first = calls[0]
    run_shared(
        session,
        [member(call) for call in calls],
        first.images,
        size=asked_size(calls),
        batch_size=batch_size or first.options["batch_size"],
        max_pixels=first.max_pixels,
        warn=warn,
        note=lambda text: click.echo(text, err=True),
    )
