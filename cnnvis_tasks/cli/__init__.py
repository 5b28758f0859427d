"""The ``cnnvis-tasks`` command line: one click group, one command per task.

Technique commands are made from the techniques' descriptions
(:mod:`.techniques`); the others describe models (:mod:`.inspect`), check image
sets (:mod:`.dataset`) and write the gallery (:mod:`.gallery`).  Loading the
group imports no torch: each command imports what it needs when it runs.
"""

from __future__ import annotations

import click

from .common import CONTEXT_SETTINGS


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(package_name="cnnvis-tasks")
def cli() -> None:
    """See what a convolutional network does.

    Each technique command loads one model once, runs the technique over any
    number of images (files, folders, globs) in batches, and writes PNG pictures
    (with their facts stored as PNG text) and, on request, raw .npy arrays.
    Errors in the input end with a one-line message and a non-zero exit status;
    add --debug for a traceback.

    \b
    Start with:
      cnnvis-tasks models                      models and their weights
      cnnvis-tasks layers --model vgg16        layer paths to pass as --layer
      cnnvis-tasks saliency --image images/ --out-dir out
    """


def _register() -> None:
    from . import dataset, gallery, inspect, shared_pass, techniques  # noqa: F401  (they register their commands)

    techniques.register(cli)


_register()


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="cnnvis-tasks")
