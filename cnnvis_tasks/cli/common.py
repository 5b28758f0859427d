"""What every ``cnnvis-tasks`` command shares: one-line errors, warnings, help layout.

Imports no torch: commands that need no model (check-images, gallery, --help)
start in a fraction of a second.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable
from typing import Any

import click

from cnnvis_tasks.errors import CnnvisError
from cnnvis_tasks.models.names import DEFAULT_MODEL

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100, "show_default": True}

# The options of every command that loads a model: (flags, settings).
MODEL_OPTIONS: list[tuple[list[str], dict[str, Any]]] = [
    (
        ["--model"],
        {
            "default": DEFAULT_MODEL,
            "metavar": "ARCH",
            "help": "The model: the embedded efficientnet_lite0, a torchvision name (resnet18), timm:NAME, "
            "hf:FOLDER (a transformers save_pretrained folder), module:package.module:function (your own "
            "code, called with --arch-args) or torchscript (--weights is the archive); see docs/models.md.",
        },
    ),
    (
        ["--weights"],
        {
            "default": "default",
            "metavar": "default|random|PATH",
            "help": "'default': the model's standard pretrained weights (torch hub cache for torchvision "
            "models); 'random': seeded random initialisation; or a checkpoint (a state dict, a training "
            "checkpoint with a state_dict / model / model_state_dict entry, .safetensors); a fine-tuned "
            "head of any size is read from it.",
        },
    ),
    (
        ["--classes"],
        {
            "default": None,
            "metavar": "FILE|FOLDER",
            "help": "The model's class names: a text file (one per line), a CSV or JSON index -> name, a YAML "
            "list, or a data set folder whose class folders, sorted, are the classes (ImageFolder's order) "
            "[default: those stored in the checkpoint, else the source's (ImageNet's for a 1000-class head)]",
        },
    ),
    (
        ["--mean"],
        {
            "default": None,
            "metavar": "R,G,B",
            "help": "Normalisation mean of the model's inputs  [default: its source's (torchvision's weights, "
            "timm's pretrained config, the transformers processor)]",
        },
    ),
    (["--std"], {"default": None, "metavar": "R,G,B", "help": "Normalisation std  [default: its source's]"}),
    (
        ["--input-size"],
        {
            "default": None,
            "type": click.IntRange(min=8),
            "help": "A fixed square input size: each image's central square is resized to it  [default: the "
            "model's own where it has one (a ViT), else any size]",
        },
    ),
    (
        ["--arch-args"],
        {
            "default": None,
            "metavar": "JSON",
            "help": "Keyword arguments for building the architecture, as a JSON object (module: and timm: models).",
        },
    ),
    (
        ["--trust-pickle"],
        {
            "is_flag": True,
            "help": "Load a checkpoint that pickles a whole model: this runs code from the file; only for files "
            "you trust (better: save model.state_dict()).",
        },
    ),
    (
        ["--model-file"],
        {
            "default": None,
            "type": click.Path(dir_okay=False),
            "help": "A model description written by the workflow (RESULTS/models/NAME-HASH.json), instead of the "
            "options above.",
        },
    ),
    (
        ["--device"],
        {
            "default": "auto",
            "metavar": "auto|cpu|cuda|cuda:N",
            "help": "Where to compute; 'auto' is CUDA when available, else CPU.",
        },
    ),
    (["--seed"], {"default": 0, "type": int, "help": "Random seed (random weights, random starts, jitter)."}),
    (
        ["--threads"],
        {
            "default": None,
            "type": click.IntRange(min=1),
            "help": "CPU threads for torch  [default: what the scheduler gave the job, else all cores]",
        },
    ),
    (["--quiet", "-q"], {"is_flag": True, "help": "No progress output."}),
    (["--debug"], {"is_flag": True, "help": "Show Python tracebacks for errors."}),
    (
        ["--attempt-note"],
        {
            "default": None,
            "metavar": "TEXT",
            "expose_value": False,
            "is_eager": True,
            "callback": lambda ctx, param, value: click.echo(value, err=True) if value else None,
            "help": "Printed first: the workflow's note on a job it runs again after it was killed "
            "(the attempt, its smaller batch size, the memory it asks for).",
        },
    ),
]


# The parameters that describe the model (cnnvis_tasks.models.spec.spec_from_options) and
# those that say how a command runs: together, what every model-loading command takes first.
MODEL_SPEC_PARAMETERS = (
    "model",
    "weights",
    "classes",
    "mean",
    "std",
    "input_size",
    "arch_args",
    "trust_pickle",
    "model_file",
)
SESSION_PARAMETERS = (*MODEL_SPEC_PARAMETERS, "device", "seed", "threads", "quiet", "debug")


def model_params() -> list[click.Parameter]:
    """--model --weights --device --seed --threads --quiet --debug, as parameters."""
    return [click.Option(flags, **settings) for flags, settings in MODEL_OPTIONS]


def model_options(function: Callable) -> Callable:
    """The same options as decorators, for a command written as a function."""
    for flags, settings in reversed(MODEL_OPTIONS):
        function = click.option(*flags, **settings)(function)
    return function


class CnnvisCommand(click.Command):
    """A command whose expected errors become one line, exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CnnvisError as error:
            if (
                ctx.params.get("debug")
                or (ctx.parent and ctx.parent.params.get("debug"))
                or os.environ.get("CNNVIS_DEBUG")
            ):
                raise
            raise click.ClickException(str(error)) from None


def image_list_settings(instead_of: str, then: str = "") -> dict[str, Any]:
    """The ``--image-list`` option's settings, the same in every command that reads one
    (``click.option("--image-list", **...)`` or ``click.Option(["--image-list"], **...)``)."""
    from pathlib import Path

    return {
        "type": click.Path(dir_okay=False, exists=True, path_type=Path),
        "help": "Read the images from this CSV (columns name, path, label; the workflow's chunk layout writes "
        f"one per chunk) instead of {instead_of}" + (f"; {then}" if then else "") + ".",
    }


def command(group: click.Group, name: str, **kwargs: Any) -> Callable:
    """Register a command on ``group`` with the shared error handling."""
    return group.command(name, cls=CnnvisCommand, context_settings=CONTEXT_SETTINGS, **kwargs)


def warn(message: str) -> None:
    """A one-line warning on stderr (also under --quiet: it concerns a result)."""
    click.echo(f"warning: {message}", err=True)


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
