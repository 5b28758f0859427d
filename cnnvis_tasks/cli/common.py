"""Options and plumbing shared by every ``cnnvis-tasks`` command.

Imports no torch: commands that need no model (check-images, gallery) start in
a fraction of a second; :func:`open_session` imports it for those that do.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..errors import CnnvisError
from ..images import DEFAULT_SIZE
from ..names import DEFAULT_MODEL
from ..progress import Progress

if TYPE_CHECKING:
    import torch

    from ..models import LoadedModel

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100, "show_default": True}


class CnnvisCommand(click.Command):
    """A command whose expected errors become one line, exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CnnvisError as error:
            if ctx.params.get("debug") or (ctx.parent and ctx.parent.params.get("debug")) or os.environ.get("CNNVIS_DEBUG"):
                raise
            raise click.ClickException(str(error)) from None


def model_options(function: Callable) -> Callable:
    """--model --weights --device --seed --threads --quiet --debug."""
    decorators = [
        click.option("--model", default=DEFAULT_MODEL, metavar="NAME",
                     help="Model name: the embedded efficientnet_lite0 or any torchvision classifier (see: cnnvis-tasks models)."),
        click.option("--weights", default="default", metavar="default|random|PATH",
                     help="'default': the model's standard pretrained weights (torch hub cache for torchvision models); "
                          "'random': seeded random initialisation; or a .pth/.pt state-dict file."),
        click.option("--device", default="auto", metavar="auto|cpu|cuda|cuda:N",
                     help="Where to compute; 'auto' is CUDA when available, else CPU."),
        click.option("--seed", default=0, type=int, help="Random seed (random weights, random starts, jitter)."),
        click.option("--threads", default=None, type=click.IntRange(min=1),
                     help="CPU threads for torch  [default: what the scheduler gave the job, else all cores]"),
        click.option("--quiet", "-q", is_flag=True, help="No progress output."),
        click.option("--debug", is_flag=True, help="Show Python tracebacks for errors."),
    ]
    for decorator in reversed(decorators):
        function = decorator(function)
    return function


def image_options(function: Callable) -> Callable:
    """--image (repeatable) --size --batch-size."""
    decorators = [
        click.option("--image", "images", multiple=True, required=True, type=click.Path(dir_okay=False, path_type=Path),
                     help="Input image; repeat for many. Output options pair with images in order."),
        click.option("--size", default=DEFAULT_SIZE, type=click.IntRange(min=0),
                     help="Resize so the shorter side is SIZE, keeping the aspect ratio (0: original size)."),
        click.option("--batch-size", default=16, type=click.IntRange(min=1), help="Images per forward pass."),
    ]
    for decorator in reversed(decorators):
        function = decorator(function)
    return function


def target_option(function: Callable) -> Callable:
    return click.option(
        "--target", "targets", multiple=True, default=("top1",), metavar="top1|INDEX",
        help="Target class: 'top1' (the model's prediction) or a class index; once for all images or once per image.",
    )(function)


@dataclass
class Session:
    """What a technique command works with: the model, its device, progress."""

    model: LoadedModel
    device: torch.device
    quiet: bool

    def progress(self, total: int, label: str) -> Progress:
        return Progress(total, label, quiet=self.quiet)


def load_model(*args: Any, **kwargs: Any) -> LoadedModel:
    """:func:`cnnvis_tasks.models.load_model`, imported on first use (it imports
    torch); a name of this module, so that bench/dataset.py can replace it."""
    from ..models import load_model

    return load_model(*args, **kwargs)


def open_session(model: str, weights: str, device: str, seed: int, threads: int | None, quiet: bool, **_ignored) -> Session:
    """Configure threads and seed, then load the model once for this process."""
    import torch

    from ..devices import configure_threads, resolve_device, use_full_precision

    configure_threads(threads)
    torch.manual_seed(seed)
    torch_device = resolve_device(device)
    use_full_precision(torch_device)
    loaded = load_model(model, weights, torch_device, seed)
    return Session(model=loaded, device=torch_device, quiet=quiet)


def check_paired(count: int, what: str, **outputs: Sequence[Any]) -> None:
    """Each output option is absent or given ``count`` times; at least one is given."""
    given = {name: values for name, values in outputs.items() if values}
    if not given:
        names = ", ".join("--" + name.replace("_", "-") for name in outputs)
        raise click.UsageError(f"nothing to write: give at least one of {names}")
    for name, values in given.items():
        if len(values) != count:
            raise click.UsageError(
                f"got {count} {what} but {len(values)} --{name.replace('_', '-')}; give one per {what.rstrip('s')}"
            )


def broadcast(values: Sequence[Any], count: int, option: str, what: str) -> list[Any]:
    """An option given once applies to all ``count`` items; else it must be given ``count`` times."""
    if len(values) == 1:
        return list(values) * count
    if len(values) != count:
        raise click.UsageError(f"got {count} {what} but {len(values)} {option}; give it once or once per {what.rstrip('s')}")
    return list(values)


def parse_targets(values: Sequence[str], count: int, model: LoadedModel) -> list[int | None]:
    """``top1`` becomes None; indices are checked against the model's classes."""
    targets: list[int | None] = []
    for value in broadcast(values, count, "--target", "images"):
        if str(value).lower() in ("top1", "top-1"):
            targets.append(None)
            continue
        try:
            index = int(value)
        except ValueError:
            raise click.BadParameter(f"{value!r} is neither 'top1' nor a class index", param_hint="--target") from None
        check_class_index(index, model)
        targets.append(index)
    return targets


def check_class_index(index: int, model: LoadedModel) -> None:
    if model.num_classes and not 0 <= index < model.num_classes:
        raise CnnvisError(
            f"class index {index} out of range for {model.name} (0..{model.num_classes - 1})"
        )


def warn(message: str) -> None:
    """A one-line warning on stderr (also under --quiet: it concerns a result)."""
    click.echo(f"warning: {message}", err=True)


def class_record(model: LoadedModel, index: int) -> dict[str, Any]:
    return {"index": int(index), "name": model.class_name(int(index))}


def base_metadata(session: Session, technique: str, **extra: Any) -> dict[str, Any]:
    """Facts every output records: technique, model, weights, plus ``extra``."""
    record = {"technique": technique, "model": session.model.name, "weights": session.model.weights}
    record.update(extra)
    return record


def technique_command(group: click.Group, name: str, **kwargs: Any) -> Callable:
    """Register a technique command on ``group`` with the shared error handling."""
    return group.command(name, cls=CnnvisCommand, context_settings=CONTEXT_SETTINGS, **kwargs)


def capture_warnings(function: Callable) -> Callable:
    """Show Python warnings raised by techniques as one-line ``warning:`` messages."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                return function(*args, **kwargs)
            finally:
                seen = set()
                for item in caught:
                    text = str(item.message)
                    if text not in seen and not issubclass(item.category, (DeprecationWarning, FutureWarning)):
                        seen.add(text)
                        warn(text)

    return wrapper
