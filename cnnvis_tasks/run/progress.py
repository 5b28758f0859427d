"""Progress for long work: click's progress bar on a terminal, sparse log lines otherwise."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import click


class Progress:
    """Report ``done / total`` with a status text to stderr.

    On an interactive terminal a click progress bar (with an ETA) is redrawn at
    most every ``redraw_every`` seconds; elsewhere (logs, cluster jobs) a plain
    line is written at most every ``log_every`` seconds and at the end.
    ``quiet`` silences both.  ``done`` may be fractional (steps within a batch).
    """

    def __init__(self, total: int, label: str, quiet: bool = False, log_every: float = 10.0, redraw_every: float = 0.2):
        self.total = max(int(total), 1)
        self.label = label
        self.quiet = quiet
        self.log_every = log_every
        self.redraw_every = redraw_every
        self.interactive = not quiet and sys.stderr is not None and sys.stderr.isatty()
        self.started = time.monotonic()
        self.last_write = self.started
        self.done = 0.0
        self.status: str | Callable[[], str] = ""
        self.pending = False  # an update not written yet
        self.drawn = False
        self.finished = False
        self.bar = None
        if self.interactive:
            self.bar = click.progressbar(
                length=self.total,
                label=label,
                file=sys.stderr,
                show_eta=True,
                show_percent=False,
                show_pos=False,
                item_show_func=lambda text: text,
                update_min_steps=0,
            )

    def update(self, done: float, status: str | Callable[[], str] = "") -> None:
        """Record that ``done`` units are finished; ``status`` describes the state.

        ``status`` may be a function, called only when a line is actually written
        (so reading a value off the GPU happens rarely, not at every step).
        Reaching ``total`` writes the last line and ends the bar.
        """
        self.done = min(max(float(done), 0.0), float(self.total))
        self.status = status
        if self.quiet or self.finished:
            return
        now = time.monotonic()
        last = self.done >= self.total
        interval = self.redraw_every if self.interactive else self.log_every
        if not last and now - self.last_write < interval:
            self.pending = True
            return
        self._write(status, now)
        if last:
            self.finish()

    def finish(self) -> None:
        """Write the last state if its update was not written, and end the
        terminal line; later updates write nothing."""
        if self.quiet or self.finished:
            return
        if self.pending:
            self._write(self.status, time.monotonic())
        self.finished = True
        if self.bar is not None and self.drawn:
            self.bar.render_finish()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.finish()

    def _write(self, status: str | Callable[[], str], now: float) -> None:
        self.last_write = now
        self.pending = False
        text = status() if callable(status) else status
        if self.bar is not None:
            position = f"{int(self.done)}/{self.total}"
            self.bar.update(self.done - self.bar.pos, f"{position} {text}" if text else position)
            self.drawn = True
        else:
            click.echo(self.line(text, now), err=True)

    def line(self, status: str, now: float) -> str:
        """The plain log line: ``LABEL [####----] done/total Ns eta Ms STATUS``."""
        elapsed = now - self.started
        width = 24
        filled = int(width * self.done / self.total)
        bar = "#" * filled + "-" * (width - filled)
        eta = ""
        if 0 < self.done < self.total:
            eta = f" eta {elapsed / self.done * (self.total - self.done):.0f}s"
        status = f" {status}" if status else ""
        return f"{self.label} [{bar}] {int(self.done)}/{self.total} {elapsed:.0f}s{eta}{status}"
