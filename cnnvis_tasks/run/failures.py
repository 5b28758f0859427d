"""The bookkeeping of a pass: rows that fail, rows written behind the compute, targets, notes.

One bad image loses one image.  :meth:`Ledger.fail` stops the pass, or with
``--keep-going`` notes the rows that failed and writes their placeholders;
:meth:`Ledger.collect` takes back the rows written behind the compute (a row
whose files cannot be written fails alone, but a full disk stops the pass: see
:class:`~cnnvis_tasks.errors.DiskFull`); :meth:`Ledger.resolve_targets` turns
labels into class indices (an image whose label names no class fails).  Each
member (:class:`cnnvis_tasks.run.members.Running`) keeps its own failed rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from cnnvis_tasks.errors import CnnvisError, DiskFull
from cnnvis_tasks.io.outputs import keep_room, raise_if_disk_full

if TYPE_CHECKING:
    from cnnvis_tasks.run.pipeline import Behind
    from cnnvis_tasks.run.progress import Progress
    from cnnvis_tasks.run.session import Session
    from cnnvis_tasks.technique import Result

# What a model raises on one bad input (a batch is then tried again in parts);
# AssertionError: torch._assert's checks of input shapes.
MODEL_ERRORS = (RuntimeError, ValueError, IndexError, ArithmeticError, AssertionError)


def reason(error: BaseException) -> str:
    """``Type: first line of the message``."""
    return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else 'no message'}"


class Ledger:
    """What a pass has done and what failed, over its members (``runs``); rows are written ``behind``
    the compute, under keys (member number, row position)."""

    def __init__(self, session: Session, runs: list, progress: Progress, behind: Behind, note: Callable[[str], None]):
        self.session, self.runs, self.progress, self.behind, self.note = session, runs, progress, behind, note
        self.done = 0.0

    def fail(self, run: Any, positions: Sequence[int], why: str) -> None:
        """The rows at ``positions`` of member ``run`` failed: stop, or note it, write placeholders and go on."""
        if not run.failures.keep_going:
            raise CnnvisError(why)
        for position in positions:
            run.failed[position] = why
            run.writer.warn(f"failed: {why}")
            if run.failures.placeholders:
                try:
                    run.writer.placeholder(run.rows[position], why)
                except DiskFull:  # the pass stops: no row is failed for a full disk
                    raise
                except OSError as error:  # the folder that failed the row may refuse its placeholders too
                    run.writer.warn(f"{run.label(position)}: no placeholder: {reason(error)}")
        self.done += len(positions)
        self.progress.update(self.done)

    def failed_on(self, run: Any, positions: Sequence[int], inputs: Any, error: BaseException) -> None:
        """The model failed on the rows at ``positions`` (one image, or one row, alone)."""
        size = f" ({inputs.shape[-1]} x {inputs.shape[-2]} as input)" if inputs is not None else ""
        self.fail(run, positions, f"{run.label(positions[0])}{size}: the model failed on it: {reason(error)}")

    def submit(self, run: Any, host: Result, positions: Sequence[int]) -> None:
        """Render and write the rows at ``positions`` from a host result (row k: ``positions[k]``)."""
        for k, position in enumerate(positions):
            self.behind.submit((run.number, position), run.writer.write, host, k, run.rows[position])

    def collect(self, keep: int = 0) -> None:
        """Take back the rows written behind the compute, waiting while more than ``keep``
        are pending: count them, show their warnings; a row whose files could not be
        rendered or written fails alone, as a row the model fails on, unless the disk is
        full: then :class:`DiskFull` stops the pass (every other row would fail as well,
        and a healthy image would be recorded as failed)."""
        keep_room()  # the job's log keeps room to say so if the disk fills up
        for (number, position), warnings, error in self.behind.finished(keep):
            run = self.runs[number]
            label = run.label(position)
            if isinstance(error, DiskFull):
                raise error
            if isinstance(error, OSError):  # one not written by atomic_write
                raise_if_disk_full(error, next(iter(run.rows[position].outputs.values()), "."))
            if error is not None:
                self.fail(run, [position], f"{label}: writing its files failed: {reason(error)}")
                continue
            for message in warnings:
                run.writer.warn(f"{label}: {message}")
            self.done += 1
            self.progress.update(self.done)

    def show_notes(self, run: Any, result: Result) -> None:
        """What the technique wants said once (the layer it chose), each distinct note once per member."""
        for text in result.notes:
            if text not in run.noted:
                run.noted.add(text)
                if not self.session.quiet:
                    self.note(f"{run.technique.name}: {text}")

    def resolve_targets(self, run: Any) -> None:
        """A member's labels as class indices; an image whose label names no class fails in it."""
        targets = run.member.targets
        if targets is None:
            return
        from cnnvis_tasks.errors import ImageError
        from cnnvis_tasks.models.labels import resolve_label

        resolved: list[int | None] = []
        model = self.session.model
        for image, target in enumerate(targets):
            if isinstance(target, str):
                try:
                    target = resolve_label(target, model.categories or [], model.name)
                except CnnvisError as error:
                    error = ImageError(f"image {run.writer.images[image]}: {error}")
                    self.fail(run, [p for p, row in enumerate(run.rows) if row.image == image], str(error))
                    target = None
            resolved.append(target)
        run.targets = resolved

    def release_memory(self) -> None:
        if self.session.device.type == "cuda":
            import torch

            torch.cuda.empty_cache()
