"""One ``cnnvis-tasks`` command per technique, made from its description.

Each command takes the model options, the technique's options (repeatable ones
may be given several times), its inputs (``--image`` files, folders or globs;
or the item option of a technique without images) and where to write: either
``--out-dir`` with a ``--name`` pattern, or one ``--out-RENDERING`` / ``--raw``
per image (per item), as the workflow gives them.  The work itself is done by
:func:`cnnvis_tasks.runner.run`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from ..errors import CnnvisError
from ..image_list import IMAGE_LIST_FILE_NAME, Box
from ..images import DEFAULT_MAX_PIXELS
from ..outputs import DEFAULT_PNG_LEVEL
from ..technique import BOOL, CHOICE, FLOAT, INT, SIZED_BY_MODEL, Option, Technique, broadcast, parse_target
from .common import (
    CONTEXT_SETTINGS,
    SESSION_PARAMETERS,
    CnnvisCommand,
    capture_warnings,
    image_list_settings,
    model_params,
    warn,
)

RAW = "raw"
PLACEHOLDERS = ("{path}", "{name}", "{stem}", "{parent}", "{index}", "{setting}", "{rendering}", "{ext}")


# --- options ------------------------------------------------------------------------


def _click_type(option: Option) -> Any:
    if option.kind == INT:
        return click.IntRange(min=option.minimum, max=option.maximum)
    if option.kind == FLOAT:
        low = option.above if option.above is not None else option.minimum
        return click.FloatRange(min=low, max=option.maximum, min_open=option.above is not None)
    if option.kind == CHOICE:
        return click.Choice(option.choices)
    return str


def option_param(option: Option) -> click.Option:
    """The click option of a technique option."""
    show_default: Any = option.default_text or True
    if option.kind == BOOL:
        return click.Option(
            [f"{option.flag}/--{option.negative or 'no-' + option.name.replace('_', '-')}"],
            default=bool(option.default),
            help=option.help,
            show_default=show_default,
        )
    multiple = option.repeatable or option.per_image
    if multiple:
        default = () if option.default is None else (option.default,)
    else:
        default = option.default
    if option.default is None and not option.default_text:
        show_default = False
    text = option.help if not option.repeatable or "repeat" in option.help else option.help + " Repeatable."
    return click.Option(
        [option.flag],
        type=_click_type(option),
        multiple=multiple,
        default=default,
        required=option.required,
        metavar=option.metavar,
        help=text,
        show_default=show_default,
    )


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


def output_params(technique: Technique) -> list[click.Parameter]:
    per = "image" if technique.reads_images else (technique.item or "call")
    params: list[click.Parameter] = [
        click.Option(
            [technique.output_flag(rendering), f"out_{rendering.name}"],
            multiple=True,
            type=click.Path(path_type=Path),
            help=f"PNG per {per}: {rendering.help}",
        )
        for rendering in technique.renderings
    ]
    params += [
        click.Option(["--raw", "out_raw"], multiple=True, type=click.Path(path_type=Path), help=technique.raw),
        click.Option(
            ["--out-dir"],
            type=click.Path(file_okay=False, path_type=Path),
            default=None,
            help="Write every file into this folder, named by --name (instead of the options above).",
        ),
        click.Option(
            ["--name", "name_pattern"],
            default=None,
            metavar="PATTERN",
            help=f"File names in --out-dir  [default: {default_pattern(technique)}]",
        ),
        click.Option(
            ["--rendering", "chosen"],
            multiple=True,
            type=click.Choice([r.name for r in technique.renderings] + [RAW]),
            help="With --out-dir: what to write; repeat for several  [default: every picture]",
        ),
        click.Option(
            ["--png-level"],
            type=click.IntRange(0, 9),
            default=DEFAULT_PNG_LEVEL,
            help="PNG compression level: 1 writes fastest (1-3: cnnvis's own writer), 9 smallest; the pixels "
            "are the same.",
        ),
    ]
    return params


def default_pattern(technique: Technique, image_list: bool = False) -> str:
    """File names under --out-dir: the workflow's setting name, after the image's stem;
    with --image-list, the image's name then the rendering (the workflow's chunk layout)."""
    if image_list and technique.reads_images:
        return IMAGE_LIST_FILE_NAME
    parts = ["{path}"] if technique.reads_images else []
    if technique.repeatable or not technique.reads_images:  # no repeatable option: no setting in the name
        parts.append("{setting}")
    if technique.several_renderings:
        parts.append("{rendering}")
    return "-".join(parts) + ".{ext}"


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
    text += (
        f"\n\nWrite with --out-dir DIR (files named by --name), or give each output option once for {inputs}, "
        "in order. Repeatable options make one result per value; paths may name them as placeholders "
        f"({', '.join('{' + o.name + '}' for o in technique.repeatable)}), and in either form {{path}} (the "
        "image's path below its folder or glob, without its ending), {name} (the same with its ending), "
        "{stem}, {parent}, {index}, {setting}, {rendering}, {ext}."
    )
    if technique.reads_images:
        text += (
            "\n\n--image-list FILE reads the images (and their labels, for --target label) from a CSV "
            "with the columns name, path, label, as the workflow's chunk layout writes it; --out-dir then "
            f"names files {IMAGE_LIST_FILE_NAME} by default."
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
    from ..image_list import list_images

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
    """A command's images as (file, name), with each one's label and bounding box (None: none)."""

    files: list[tuple[Path, str]]
    labels: list[str | None]
    boxes: list[Box | None]


def read_inputs(images: Sequence[Path], image_list: Path | None) -> Inputs:
    """The command's images: from --image, or from --image-list (a name, path, label and
    optionally a bounding box per image)."""
    from ..image_list import read_image_list

    if image_list is not None and images:
        raise click.UsageError("give either --image or --image-list, not both")
    if image_list is None:
        if not images:
            raise click.UsageError("give the images: --image (a file, folder or glob; repeat for many) or --image-list")
        files = expand_images(images)
        return Inputs(files, [None] * len(files), [None] * len(files))
    entries = read_image_list(image_list)
    if not entries:
        raise click.BadParameter(f"{image_list} lists no images", param_hint="--image-list")
    return Inputs(
        [(entry.path, entry.name) for entry in entries],
        [entry.label for entry in entries],
        [entry.box for entry in entries],
    )


def given_boxes(values: Sequence[str], count: int, image_list: bool) -> list[Box | None] | None:
    """``--box`` values as one box (or None, for ``none``) per image; None when none was given."""
    from ..image_list import parse_box

    if not values:
        return None
    if image_list:
        raise click.UsageError("--box goes with --image; with --image-list the boxes come from its box column")
    try:
        return [
            None if value.strip().lower() == "none" else parse_box(value)
            for value in broadcast(list(values), count, "--box", "images")
        ]
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--box") from None


def _parsed(option: Option, value: Any) -> Any:
    try:
        return option.parse(value)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint=option.flag) from None


def _checked(option: Option, value: Any) -> Any:
    problem = option.check(value) if option.check and value is not None else None
    if problem:
        raise click.BadParameter(problem, param_hint=option.flag)
    return value


# --- outputs ------------------------------------------------------------------------


def _fill(template: str, fields: dict[str, str]) -> str:
    for name, value in fields.items():
        template = template.replace("{" + name + "}", value)
    return template


def output_templates(
    technique: Technique,
    count: int,
    given: dict[str, Sequence[Path]],
    out_dir: Path | None,
    name_pattern: str | None,
    chosen: Sequence[str],
    image_list: bool = False,
) -> dict[str, list[str]]:
    """Per output (a rendering or ``raw``): one path template per item (image, or
    value of the item option), from the paired options or from --out-dir and --name."""
    if out_dir is not None:
        if any(given.values()):
            first = technique.output_flag(technique.renderings[0])
            raise click.UsageError(f"give either --out-dir or output options such as {first}, not both")
        wanted = list(dict.fromkeys(chosen)) or [r.name for r in technique.renderings]
        pattern = name_pattern or default_pattern(technique, image_list)
        return {name: [str(out_dir / pattern)] * count for name in wanted}
    if name_pattern or chosen:
        raise click.UsageError("--name and --rendering go with --out-dir")
    templates = {name: [str(p) for p in paths] for name, paths in given.items() if paths}
    if not templates:
        flags = ", ".join([technique.output_flag(r) for r in technique.renderings] + ["--raw"])
        raise click.UsageError(f"nothing to write: give --out-dir or at least one of {flags}")
    what = "images" if technique.reads_images else f"{technique.item}s"
    for name, paths in templates.items():
        if technique.item is None and not technique.reads_images:
            if len(paths) != 1:
                raise click.UsageError(
                    f"got {len(paths)} {_flag(technique, name)}; give it once "
                    "(with placeholders such as {setting} for several results)"
                )
        elif len(paths) != count:
            raise click.UsageError(
                f"got {count} {what} but {len(paths)} {_flag(technique, name)}; "
                f"give one per {what.rstrip('s')} (or use --out-dir)"
            )
    return templates


def plan_rows(
    technique: Technique,
    items: Sequence[Any],
    item_fields: Sequence[dict[str, str]],
    values: dict[str, list[Any]],
    templates: dict[str, list[str]],
    inputs: Sequence[Path],
) -> list:
    """The rows of a call, each item times every combination of the repeated
    options, with their output paths filled in.  Every path is checked before
    anything is computed: one file per row and output, a ``.png`` or ``.npy``
    ending, no input overwritten."""
    from ..runner import Row, combinations

    item_name = technique.item
    others = combinations(technique, {k: v for k, v in values.items() if k != item_name})
    if not others:
        flags = " or ".join(o.flag for o in technique.repeatable if o.name != item_name)
        raise click.UsageError(f"nothing to compute: give {flags}")
    rows, seen = [], {os.path.abspath(p) for p in inputs}
    for index, (item, fields) in enumerate(zip(items, item_fields)):
        for combo in others:
            row_values = dict(combo) | ({item_name: item} if item_name is not None else {})
            setting = technique.setting_name(row_values)
            outputs = {}
            for name, paths in templates.items():
                ext = "npy" if name == RAW else "png"
                names = {k: str(v) for k, v in row_values.items()}
                path = Path(
                    _fill(
                        paths[index],
                        fields | names | {"setting": setting, "rendering": name, "ext": ext, "index": str(index)},
                    )
                )
                _check_output(path, ext, technique, name)
                if os.path.abspath(path) in seen:
                    raise click.UsageError(
                        f"{path} would be written twice, or over an input; give each result "
                        f"its own path (placeholders: {', '.join(_placeholders(technique))})"
                    )
                seen.add(os.path.abspath(path))
                outputs[name] = path
            rows.append(Row(image=index if technique.reads_images else None, values=row_values, outputs=outputs))
    return rows


def _flag(technique: Technique, name: str) -> str:
    if name == RAW:
        return "--raw"
    return technique.output_flag(next(r for r in technique.renderings if r.name == name))


def _placeholders(technique: Technique) -> list[str]:
    return ["{" + o.name + "}" for o in technique.repeatable] + list(PLACEHOLDERS)


def _check_output(path: Path, ext: str, technique: Technique, name: str) -> None:
    if path.suffix.lower() != "." + ext:
        raise click.UsageError(f"{path}: {_flag(technique, name)} writes a .{ext} file; name it *.{ext}")
    if path.is_dir():
        raise click.UsageError(f"{path} is a folder; {_flag(technique, name)} needs a file name")
    check_writable(path)


def check_writable(path: Path) -> None:
    """A file can be written at ``path``: its nearest existing folder is a folder we may
    write in (checked before any work, so that hours of compute are not lost)."""
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise CnnvisError(f"cannot write {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CnnvisError(f"cannot write {path}: no permission to write in {parent}")


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
    boxes: list[Box | None] | None  # per image: its bounding box or None (techniques that read boxes)
    renderings: list[str]
    failures: Any  # runner.Failures
    max_pixels: int | None
    png_level: int


def prepare_call(technique: Technique, params: dict[str, Any], inputs: Inputs | None = None) -> PreparedCall:
    """A technique command's parameters (as click gives them) as a :class:`PreparedCall`:
    every output path checked, the rows planned.  ``inputs``: the images and labels
    already read (else read from ``images`` and ``image_list``)."""
    from ..runner import Failures

    params = dict(params)
    common = {name: params.pop(name) for name in SESSION_PARAMETERS}
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
    box_values = params.pop("boxes", ())
    if inputs is None:
        inputs = read_inputs(images_given, image_list) if technique.reads_images else Inputs([], [], [])
    files, labels = inputs.files, inputs.labels
    images = [path for path, _ in files]
    boxes = None
    if technique.reads_boxes:
        boxes = given_boxes(box_values, len(images), image_list is not None)
        if boxes is None and any(box is not None for box in inputs.boxes):
            boxes = list(inputs.boxes)

    values: dict[str, list[Any]] = {}
    options: dict[str, Any] = {}
    target_values = None
    for option in technique.options:
        given_value = params.pop(option.name)
        if option.repeatable:
            values[option.name] = [_checked(option, _validated(option, v)) for v in given_value]
        elif option.per_image:
            target_values = list(given_value)
        else:
            options[option.name] = _parsed(option, _checked(option, given_value))

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
    templates = output_templates(technique, len(items), given, out_dir, name_pattern, chosen, image_list is not None)
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
        technique, common, rows, options, images, targets, boxes, renderings, failures, max_pixels, png_level
    )


def check_targets(call: PreparedCall, session: Any) -> None:
    """Class indices given on the command line are classes of the loaded model, and a
    model without named layers (a TorchScript archive) is not asked for one."""
    if not session.model.has_module_tree:
        from ..model_spec import needs_module_tree

        for row in call.rows:
            why = needs_module_tree(call.technique, {**call.options, **row.values})
            if why:
                raise CnnvisError(
                    f"{call.technique.name} cannot run on a TorchScript archive ({session.model.name}): {why}; "
                    "load the model from its architecture and a state dict instead"
                )
    if call.targets is not None or call.technique.item == "target":
        from ..mechanisms.targets import check_class_indices

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
    from ..runner import open_session, run

    call = prepare_call(technique, unset_sizes(click.get_current_context(), params))
    session = open_session(**call.common)
    check_targets(call, session)
    run(
        technique,
        session,
        call.rows,
        call.options,
        images=call.images,
        targets=call.targets,
        boxes=call.boxes,
        renderings=call.renderings,
        failures=call.failures,
        max_pixels=call.max_pixels,
        png_level=call.png_level,
        warn=warn,
        note=lambda text: click.echo(text, err=True),
    )


def _validated(option: Option, value: Any) -> Any:
    _parsed(option, value)  # a syntax error is a usage error, raised before anything loads
    return value


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
    if technique.reads_boxes:
        params.append(
            click.Option(
                ["--box", "boxes"],
                multiple=True,
                metavar="XMIN,YMIN,XMAX,YMAX|none",
                help="Each image's bounding box in its own pixels ((0, 0): the top-left corner; 'none': no box), "
                "once for all images or once per --image, in order; an --image-list takes them from its box "
                "column. Resized and cropped with the image.",
            )
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
    from ..techniques import all_techniques

    for technique in all_techniques():
        group.add_command(make_command(technique))
