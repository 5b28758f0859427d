"""Progress for long work: a live line on a terminal, sparse log lines otherwise."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import click


class Progress:
    """Report ``done / total`` with a status text to stderr.

    On an interactive terminal the line is redrawn in place; elsewhere (logs,
    cluster jobs) a plain line is written at most every ``log_every`` seconds
    and at the end.  ``quiet`` silences both.
    """

    def __init__(self, total: int, label: str, quiet: bool = False, log_every: float = 10.0, redraw_every: float = 0.2):
        self.total = max(total, 1)
        self.label = label
        self.quiet = quiet
        self.log_every = log_every
        self.redraw_every = redraw_every
        self.interactive = sys.stderr.isatty()
        self.started = time.monotonic()
        self.last_log = self.started
        self.done = 0

    def update(self, done: int, status: str | Callable[[], str] = "") -> None:
        """Record that ``done`` units are finished; ``status`` describes the state.

        ``status`` may be a function, called only when a line is actually written
        (so reading a value off the GPU happens rarely, not at every step).
        """
        self.done = done
        if self.quiet:
            return
        now = time.monotonic()
        finished = done >= self.total
        interval = self.redraw_every if self.interactive else self.log_every
        if not finished and now - self.last_log < interval:
            return
        self.last_log = now
        text = self._line(status() if callable(status) else status, now)
        if self.interactive:
            click.echo("\r\033[K" + text, err=True, nl=finished)
        else:
            click.echo(text, err=True)

    def _line(self, status: str, now: float) -> str:
        elapsed = now - self.started
        width = 24
        filled = int(width * self.done / self.total)
        bar = "#" * filled + "-" * (width - filled)
        eta = ""
        if 0 < self.done < self.total:
            eta = f" eta {elapsed / self.done * (self.total - self.done):.0f}s"
        status = f" {status}" if status else ""
        return f"{self.label} [{bar}] {self.done}/{self.total} {elapsed:.0f}s{eta}{status}"
