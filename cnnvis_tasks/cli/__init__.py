"""The ``cnnvis-tasks`` command line: one click group, one command per task.

Each command's module is imported only when that command is used, so that a
command needs no more start-up than its own imports (check-images and gallery
never load torch).  ``--help`` lists the commands from the table below without
importing them; completion and unknown names load them all.
"""

from __future__ import annotations

import importlib
from typing import NamedTuple

import click

from .common import CONTEXT_SETTINGS


class CommandEntry(NamedTuple):
    module: str  # the module of this package that registers the command
    summary: str  # its line in ``cnnvis-tasks --help`` (also the command's short help)


# tests/test_cli.py checks that this is exactly what the modules register.
COMMANDS = {
    "models": CommandEntry("inspect", "List models, where their weights come from, offline or not."),
    "layers": CommandEntry("inspect", "Module paths of a model, with types and output shapes."),
    "fetch-weights": CommandEntry("inspect", "Download pretrained weights into the torch hub cache."),
    "feature-maps": CommandEntry("attribution", "Activations of layers as channel grids (seed row 1)."),
    "kernels": CommandEntry("attribution", "Convolution weights as a grid of filters (seed row 2)."),
    "saliency": CommandEntry("attribution", "Gradient of a class's logit w.r.t. the image (seed row 3)."),
    "grad-cam": CommandEntry("attribution", "Grad-CAM maps of a layer for a class (seed row 8)."),
    "class-viz": CommandEntry("synthesis", "An image that maximises a class's logit (seed row 4)."),
    "filter-viz": CommandEntry("synthesis", "An image that maximises one filter (seed row 5)."),
    "deep-dream": CommandEntry("synthesis", "Amplify what a layer sees in a photo (seed rows 6, 7)."),
    "check-images": CommandEntry("dataset", "Report the images that cannot be used, and why."),
    "gallery": CommandEntry("gallery", "Write the HTML gallery of results."),
}


class LazyGroup(click.Group):
    """A group that imports a command's module the first time it is asked for."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            importlib.import_module(f"{__name__}.{COMMANDS[cmd_name].module}")
        return super().get_command(ctx, cmd_name)

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        entry = COMMANDS.get(name or cmd.name or "")
        if entry is not None and cmd.short_help is None:
            cmd.short_help = entry.summary
        super().add_command(cmd, name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(COMMANDS) | set(self.commands))

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list of ``--help``, from the table: no command module is imported."""
        rows = [
            (name, COMMANDS[name].summary if name in COMMANDS else self.commands[name].get_short_help_str())
            for name in self.list_commands(ctx)
        ]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple[str | None, click.Command | None, list[str]]:
        if args and args[0] not in COMMANDS and args[0] not in self.commands:
            load_all()  # an unknown name: click's error then suggests from every command
        return super().resolve_command(ctx, args)


def load_all() -> None:
    """Import every command module (registering every command)."""
    for module in sorted({entry.module for entry in COMMANDS.values()}):
        importlib.import_module(f"{__name__}.{module}")


@click.group(cls=LazyGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(package_name="cnnvis-tasks")
def cli() -> None:
    """See what a convolutional network does.

    Each command loads one model once, runs one technique over any number of
    images in batches, and writes PNG pictures (with their facts stored as PNG
    text) and, on request, raw .npy arrays. Errors in the input end with a
    one-line message and a non-zero exit status; add --debug for a traceback.

    \b
    Start with:
      cnnvis-tasks models                      models and their weights
      cnnvis-tasks layers --model vgg16        layer paths to pass as --layer
      cnnvis-tasks saliency --image images/chelsea.png --out-gray sal.png
    """


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="cnnvis-tasks")
