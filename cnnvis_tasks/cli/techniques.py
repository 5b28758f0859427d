"""One ``cnnvis-tasks`` command per technique, made from its description.

Each command takes the model options, the technique's options (repeatable ones
may be given several times), its inputs (``--image`` files, folders or globs;
or the item option of a technique without images) and where to write: either
``--out-dir`` with a ``--name`` pattern, or one ``--out-RENDERING`` / ``--raw``
per image (per item), as the workflow gives them.  The work itself is done by
:func:`cnnvis_tasks.run.runner.run`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from cnnvis_tasks.cli.common import (
    CONTEXT_SETTINGS,
    SESSION_PARAMETERS,
    CnnvisCommand,
    capture_warnings,
    image_list_settings,
    model_params,
    warn,
)
from cnnvis_tasks.cli.options import option_param
from cnnvis_tasks.cli.outputs import (  # noqa: F401  (default_pattern: the file names' pattern, for callers)
    RAW,
    check_reduced,
    check_writable,
    default_pattern,
    output_params,
    output_templates,
    plan_rows,
)
from cnnvis_tasks.errors import CnnvisError
from cnnvis_tasks.io.columns import Column, get_column
from cnnvis_tasks.io.images import DEFAULT_MAX_PIXELS
from cnnvis_tasks.io.list_file import IMAGE_LIST_FILE_NAME
from cnnvis_tasks.technique import SIZED_BY_MODEL, Technique, broadcast, parse_target

# --- options ------------------------------------------------------------------------


def failure_params(technique: Technique) -> list[click.Parameter]:
    """What happens when one image (or row) fails."""
    params: list[click.Parameter] = [
        click.Option(
            ["--keep-going"],
            is_flag=True,
            help="When an image fails (unreadable, too large, a label that names no class, the model "
            "fails on it), warn and go on with the others instead of stopping.",
        ),
        click.Option(
            ["--placeholders"],
            is_flag=True,
            help="With --keep-going: still write every file of a failed image, a 1 x 1 picture whose "
            "facts say why (for workflows that expect every output).",
        ),
        click.Option(
            ["--record", "record"],
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            help="Write each result's status (ok or failed, and why) as JSON.",
        ),
    ]
    if technique.reads_images:
        params.append(
            click.Option(
                ["--max-pixels"],
                type=click.IntRange(min=1),
                default=DEFAULT_MAX_PIXELS,
                help="Refuse an image larger than this once resized (width x height), before any memory is spent.",
            )
        )
    return params


def writing_help(technique: Technique, inputs: str) -> str:
    """How a technique command's files are named."""
    return (
        f"\n\nWrite with --out-dir DIR (files named by --name), or give each output option once for {inputs}, "
        "in order. Repeatable options make one result per value; paths may name them as placeholders "
        f"({', '.join('{' + o.name + '}' for o in technique.repeatable)}), and in either form {{path}} (the "
        "image's path below its folder or glob, without its ending), {name} (the same with its ending), "
        "{stem}, {parent}, {index}, {setting}, {rendering}, {ext}."
    )


def command_help(technique: Technique) -> str:
    inputs = (
        "each --image (a file, a folder of images, or a quoted glob)"
        if technique.reads_images
        else f"each --{technique.item}"
        if technique.item
        else "the call"
    )
    text = technique.description
    if technique.reference:
        text += f"\n\nAfter {technique.reference}."
    if technique.reduction is not None:
        text += (
            f"\n\nWrites one file for all the images, --out FILE{technique.reduction.suffix}: "
            f"{technique.reduction.help}"
        )
    else:
        text += writing_help(technique, inputs)
    if technique.reads_images:
        text += (
            "\n\n--image-list FILE reads the images (and their labels, for --target label) from a CSV "
            "with the columns name, path, label, as the workflow's chunk layout writes it"
            + ("." if technique.reduction else f"; --out-dir then names files {IMAGE_LIST_FILE_NAME} by default.")
        )
    if technique.reads_boxes:
        text += (
            " Its optional last column, box ('XMIN YMIN XMAX YMAX' in the image's own pixels), gives each "
            "image's bounding box, as --box does."
        )
    return text


# --- inputs -------------------------------------------------------------------------


def expand_images(values: Sequence[Path]) -> list[tuple[Path, str]]:
    """``--image`` values as (file, its path below the folder or glob given, ending kept):
    a folder gives its image files (subfolders too), a pattern the files it matches."""
    from cnnvis_tasks.io.image_list import list_images

    found: list[tuple[Path, str]] = []
    for value in values:
        text = str(value)
        if value.is_dir() or (not value.exists() and any(char in text for char in "*?[")):
            listing = list_images(folder=value) if value.is_dir() else list_images(pattern=text)
            for path, reason in listing.skipped:
                warn(f"skipped {path}: {reason}")
            if not listing.images:
                what = f"folder {text} holds no image files" if value.is_dir() else f"no file matches {text}"
                raise click.BadParameter(what, param_hint="--image")
            found += [(entry.path, entry.name) for entry in listing.images]
        else:
            found.append((value, value.name))
    return found


@dataclass
class Inputs:
    """A command's images as (file, name), with each one's label and its per-image inputs
    (:mod:`cnnvis_tasks.io.columns`): column name -> per image, its value or None (a column
    no image has a value in is left out)."""

    files: list[tuple[Path, str]]
    labels: list[str | None]
    columns: dict[str, list[Any]]


def read_inputs(images: Sequence[Path], image_list: Path | None) -> Inputs:
    """The command's images: from --image, or from --image-list (a name, path, label and
    optionally per-image inputs, such as a bounding box, per image)."""
    from cnnvis_tasks.io.list_file import read_image_list

    if image_list is not None and images:
        raise click.UsageError("give either --image or --image-list, not both")
    if image_list is None:
        if not images:
            raise click.UsageError("give the images: --image (a file, folder or glob; repeat for many) or --image-list")
        files = expand_images(images)
        return Inputs(files, [None] * len(files), {})
    entries = read_image_list(image_list)
    if not entries:
        raise click.BadParameter(f"{image_list} lists no images", param_hint="--image-list")
    names = dict.fromkeys(name for entry in entries for name in entry.columns)
    return Inputs(
        [(entry.path, entry.name) for entry in entries],
        [entry.label for entry in entries],
        {name: [entry.columns.get(name) for entry in entries] for name in names},
    )


def given_column(column: Column, values: Sequence[str], count: int, image_list: bool) -> list[Any] | None:
    """A column's command-line values (``--box``) as one value (or None, for ``none``) per
    image, given once for all images or once per image; None when none was given."""
    if not values:
        return None
    if image_list:
        raise click.UsageError(
            f"{column.flag} goes with --image; with --image-list the {column.keyword} come from its "
            f"{column.name} column"
        )
    try:
        return [column.parse_given(value) for value in broadcast(list(values), count, column.flag, "images")]
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint=column.flag) from None


# --- the command ----------------------------------------------------------------------


@dataclass
class PreparedCall:
    """A technique command's arguments checked and turned into rows, before any model loads."""

    technique: Technique
    common: dict[str, Any]  # the model and session options (common.SESSION_PARAMETERS)
    rows: list
    options: dict[str, Any]
    images: list[Path]
    targets: list[int | str | None] | None
    # the per-image inputs the technique reads (Technique.columns), those given: column name ->
    # per image, its value in the image's own terms or None
    columns: dict[str, list[Any]]
    renderings: list[str]
    failures: Any  # runner.Failures
    max_pixels: int | None
    png_level: int
    reduced: Path | None = None  # a reducing technique's one file (Technique.reduction)


def prepare_call(technique: Technique, params: dict[str, Any], inputs: Inputs | None = None) -> PreparedCall:
    """A technique command's parameters (as click gives them) as a :class:`PreparedCall`:
    every output path checked, the rows planned.  ``inputs``: the images and labels
    already read (else read from ``images`` and ``image_list``)."""
    from cnnvis_tasks.run.runner import Failures

    params = dict(params)
    common = {name: params.pop(name) for name in SESSION_PARAMETERS}
    reduced = params.pop("reduced", None)
    if reduced is not None:
        check_reduced(technique, reduced)
    else:
        given = {r.name: params.pop(f"out_{r.name}") for r in technique.renderings}
        given[RAW] = params.pop("out_raw")
        out_dir, name_pattern, chosen = params.pop("out_dir"), params.pop("name_pattern"), params.pop("chosen")
    failures = Failures(
        keep_going=params.pop("keep_going"), placeholders=params.pop("placeholders"), record=params.pop("record")
    )
    max_pixels = params.pop("max_pixels", None)
    png_level = params.pop("png_level")
    if failures.placeholders and not failures.keep_going:
        raise click.UsageError("--placeholders goes with --keep-going")
    if failures.record is not None:
        if failures.record.suffix.lower() != ".json":
            raise click.UsageError(f"{failures.record}: --record writes JSON; name it *.json")
        check_writable(failures.record)
    image_list = params.pop("image_list", None)
    images_given = params.pop("images", ())
    column_values = {name: params.pop(get_column(name).keyword, ()) for name in technique.columns}
    if inputs is None:
        inputs = read_inputs(images_given, image_list) if technique.reads_images else Inputs([], [], {})
    files, labels = inputs.files, inputs.labels
    images = [path for path, _ in files]
    columns: dict[str, list[Any]] = {}
    for name, given_values in column_values.items():
        values = given_column(get_column(name), given_values, len(images), image_list is not None)
        if values is None and any(value is not None for value in inputs.columns.get(name, ())):
            values = list(inputs.columns[name])
        if values is not None:
            columns[name] = values

    values: dict[str, list[Any]] = {}
    options: dict[str, Any] = {}
    target_values = None
    for option in technique.options:
        given_value = params.pop(option.name)
        if option.repeatable:
            values[option.name] = list(given_value)  # each value parsed by its click type
        elif option.per_image:
            target_values = list(given_value)
        else:
            options[option.name] = given_value

    if technique.reads_images:
        items: list[Any] = list(range(len(images)))
        fields = [
            {"path": str(Path(name).with_suffix("")), "name": name, "stem": path.stem, "parent": path.parent.name}
            for path, name in files
        ]
    elif technique.item is not None:
        items = values.pop(technique.item)
        fields = [{} for _ in items]
    else:
        items, fields = [None], [{}]
    if reduced is not None:
        templates: dict[str, list[str]] = {}  # no file per row: the rows reduce into --out
    else:
        templates = output_templates(
            technique, len(items), given, out_dir, name_pattern, chosen, image_list is not None
        )
    rows = plan_rows(technique, items, fields, values, templates, images)
    renderings = [r.name for r in technique.renderings if r.name in templates]
    targets = None
    if target_values == ["label"] and image_list is not None:
        targets = [label or "" for label in labels]  # each image's label; none: it fails alone, saying so
    elif target_values == ["label"]:
        raise click.UsageError("--target label takes each image's label from --image-list; give one of those")
    elif target_values is not None:
        try:
            targets = [parse_target(v) for v in broadcast(target_values, len(images), "--target", "images")]
        except ValueError as error:
            raise click.BadParameter(str(error), param_hint="--target") from None
    return PreparedCall(
        technique,
        common,
        rows,
        options,
        images,
        targets,
        columns,
        renderings,
        failures,
        max_pixels,
        png_level,
        reduced,
    )


def check_targets(call: PreparedCall, session: Any) -> None:
    """Class indices given on the command line are classes of the loaded model, and a
    model without named layers (a TorchScript archive) is not asked for one."""
    if not session.model.has_module_tree:
        from cnnvis_tasks.models.spec import needs_module_tree

        for row in call.rows:
            why = needs_module_tree(call.technique, {**call.options, **row.values})
            if why:
                raise CnnvisError(
                    f"{call.technique.name} cannot run on a TorchScript archive ({session.model.name}): {why}; "
                    "load the model from its architecture and a state dict instead"
                )
    if call.targets is not None or call.technique.item == "target":
        from cnnvis_tasks.mechanisms.targets import check_class_indices

        if session.model.num_classes:
            wanted = call.targets if call.targets is not None else [int(r.values["target"]) for r in call.rows]
            check_class_indices([t for t in wanted if isinstance(t, int)], session.model.num_classes)


def unset_sizes(context: click.Context, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with the sizes a model of fixed input size decides (--size, --width,
    --height) None where the command line left them at their defaults."""
    from click.core import ParameterSource

    return params | {
        name: None
        for name in SIZED_BY_MODEL
        if name in params and context.get_parameter_source(name) == ParameterSource.DEFAULT
    }


def run_command(technique: Technique, **params: Any) -> None:
    """The body of every technique command: inputs and outputs checked, then the rows run."""
    from cnnvis_tasks.run.runner import open_session

    call = prepare_call(technique, unset_sizes(click.get_current_context(), params))
    session = open_session(**call.common)
    check_targets(call, session)
    run_call(call, session, warn=warn, note=lambda text: click.echo(text, err=True))


def run_call(
    call: PreparedCall, session: Any, warn: Callable[[str], None], note: Callable[[str], None]
) -> dict[int, str]:
    """Run a prepared call's rows on an open session (:func:`cnnvis_tasks.run.runner.run`);
    its failed rows: position -> reason."""
    from cnnvis_tasks.run.runner import run

    return run(
        call.technique,
        session,
        call.rows,
        call.options,
        images=call.images,
        targets=call.targets,
        columns=call.columns,
        renderings=call.renderings,
        failures=call.failures,
        max_pixels=call.max_pixels,
        png_level=call.png_level,
        reduced=call.reduced,
        warn=warn,
        note=note,
    )


def make_command(technique: Technique) -> click.Command:
    """The ``cnnvis-tasks NAME`` command of ``technique``."""
    params: list[click.Parameter] = model_params()
    if technique.reads_images:
        params.append(
            click.Option(
                ["--image", "images"],
                multiple=True,
                type=click.Path(path_type=Path),
                help="Input image, a folder of images or a quoted glob ('photos/**/*.jpg'); repeat for many.",
            )
        )
        params.append(
            click.Option(
                ["--image-list"], **image_list_settings("--image", "--target label then explains each image's label")
            )
        )
    for name in technique.columns:  # per-image inputs: --box
        column = get_column(name)
        params.append(
            click.Option([column.flag, column.keyword], multiple=True, metavar=column.metavar, help=column.help)
        )
    params += [option_param(option) for option in technique.options]
    params += output_params(technique)
    params += failure_params(technique)
    callback = capture_warnings(functools.partial(run_command, technique))
    return CnnvisCommand(
        technique.name,
        params=params,
        callback=callback,
        help=command_help(technique),
        short_help=technique.summary,
        context_settings=CONTEXT_SETTINGS,
    )


def register(group: click.Group) -> None:
    """Add every technique's command to ``group``."""
    from cnnvis_tasks.techniques import all_techniques

    for technique in all_techniques():
        group.add_command(make_command(technique))
