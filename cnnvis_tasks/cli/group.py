"""The ``cnnvis-tasks`` click group, which every command module adds its commands to.

Defined apart from the package (:mod:`cnnvis_tasks.cli`), which imports the command
modules: they import the group from here, not the package back.
"""

from __future__ import annotations

import click

from cnnvis_tasks.cli.common import CONTEXT_SETTINGS


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
