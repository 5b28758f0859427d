"""The ``cnnvis-tasks`` command line: one click group, one command per task.

Each command's module is imported only when that command is used, so that a
command needs no more start-up than its own imports (check-images and gallery
never load torch).  ``--help``, completion and unknown names load them all.
"""

from __future__ import annotations

import importlib

import click

from .common import CONTEXT_SETTINGS

# Command name -> module of this package that registers it (tests/test_cli.py
# checks that this is exactly what the modules register).
COMMANDS = {
    "models": "inspect",
    "layers": "inspect",
    "fetch-weights": "inspect",
    "feature-maps": "attribution",
    "kernels": "attribution",
    "saliency": "attribution",
    "grad-cam": "attribution",
    "class-viz": "synthesis",
    "filter-viz": "synthesis",
    "deep-dream": "synthesis",
    "check-images": "dataset",
    "gallery": "gallery",
}


class LazyGroup(click.Group):
    """A group that imports a command's module the first time it is asked for."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            importlib.import_module(f"{__name__}.{COMMANDS[cmd_name]}")
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(COMMANDS) | set(self.commands))

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple[str | None, click.Command | None, list[str]]:
        if args and args[0] not in COMMANDS and args[0] not in self.commands:
            load_all()  # an unknown name: click's error then suggests from every command
        return super().resolve_command(ctx, args)


def load_all() -> None:
    """Import every command module (registering every command)."""
    for module in sorted(set(COMMANDS.values())):
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
