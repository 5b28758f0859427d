"""Where a technique command writes: its output options, and each row's paths.

Either ``--out-dir`` with a ``--name`` pattern, or one ``--out-RENDERING`` / ``--raw``
per image (per item), as the workflow gives them; every path is filled in and checked
(its ending, a writable folder, nothing written twice or over an input) before any
work.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from cnnvis_tasks.errors import CnnvisError
from cnnvis_tasks.io.list_file import IMAGE_LIST_FILE_NAME
from cnnvis_tasks.io.outputs import DEFAULT_PNG_LEVEL
from cnnvis_tasks.technique import Technique

RAW = "raw"
PLACEHOLDERS = ("{path}", "{name}", "{stem}", "{parent}", "{index}", "{setting}", "{rendering}", "{ext}")


def output_params(technique: Technique) -> list[click.Parameter]:
    if technique.reduction is not None:
        return reduced_params(technique)
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


def reduced_params(technique: Technique) -> list[click.Parameter]:
    """A technique that reduces its images to one file (:mod:`cnnvis_tasks.technique.reduction`): ``--out``."""
    return [
        click.Option(
            ["--out", "reduced"],
            required=True,
            type=click.Path(dir_okay=False, path_type=Path),
            help=technique.reduction.help,
        ),
        # nothing else is written; kept so that the workflow's jobs give every technique the same options
        click.Option(["--png-level"], type=click.IntRange(0, 9), default=DEFAULT_PNG_LEVEL, hidden=True),
    ]


def check_reduced(technique: Technique, path: Path) -> None:
    """The file a reducing technique writes: its ending, a writable folder."""
    suffix = technique.reduction.suffix
    if path.suffix.lower() != suffix:
        raise click.UsageError(f"{path}: --out writes a {suffix} file; name it *{suffix}")
    if path.is_dir():
        raise click.UsageError(f"{path} is a folder; --out needs a file name")
    check_writable(path)


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
    from cnnvis_tasks.run.runner import Row, combinations

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
