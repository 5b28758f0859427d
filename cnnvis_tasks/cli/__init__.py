"""The ``cnnvis-tasks`` command line: one click group, one command per task."""

from __future__ import annotations

import click

from .common import CONTEXT_SETTINGS


@click.group(context_settings=CONTEXT_SETTINGS)
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


def _register() -> None:
    from . import attribution, dataset, gallery, inspect, synthesis  # noqa: F401  (commands register themselves)


_register()


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="cnnvis-tasks")
