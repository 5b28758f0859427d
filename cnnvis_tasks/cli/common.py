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

from ..errors import CnnvisError

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100, "show_default": True}


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
