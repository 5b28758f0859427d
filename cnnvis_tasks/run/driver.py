"""The pass driver: a pass of N members (technique calls) over the same images, a batch at a time.

Images are decoded a batch at a time, once for every member (resized on the
shorter side, or the central square for a model of fixed input size); each
member's per-image inputs (:mod:`cnnvis_tasks.io.columns`) are moved onto the
input as the pixels were.  Then either

* each member's setting is computed with its technique's ``compute`` (a
  technique command: a pass of one member).  A batch the model fails on is
  computed again row by row, so that only the row at fault fails; or
* with ``shared``, one forward and backward serves every member
  (:mod:`cnnvis_tasks.run.shared_batch`).  A batch the model fails on is
  computed again image by image, and an image that still fails is computed by
  each member alone, as above, so that each fails it with its own reason.

Techniques without images compute their rows (items) in batches of settings.
Results are read from the device once; rows are rendered and written behind the
compute (:class:`cnnvis_tasks.run.pipeline.Behind`), at most a batch behind.
Failures, targets and notes: :class:`cnnvis_tasks.run.failures.Ledger`.

Faults around the pass: before any work, the temporary files that a write of one
of its files cut off (a killed job, a lost node) left are removed; a full disk
(:class:`~cnnvis_tasks.errors.DiskFull`) stops the pass as a whole, once the
writes under way are done, saying where and how many files were written: no row
is failed for it, no record written, and every file written is complete.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cnnvis_tasks.errors import CnnvisError, DiskFull, OverTimeBudget
from cnnvis_tasks.io.outputs import keep_room, remove_stale_temporaries
from cnnvis_tasks.run.failures import MODEL_ERRORS, Ledger
from cnnvis_tasks.run.members import Member, Running
from cnnvis_tasks.run.pipeline import Behind
from cnnvis_tasks.run.progress import Progress
from cnnvis_tasks.run.rows import RAW
from cnnvis_tasks.run.session import Session, decoding_size, input_crop
from cnnvis_tasks.run.shared_batch import shared_results
from cnnvis_tasks.technique import BATCH_SIZE, Report


class _StepReport(Report):
    """Step progress of one batch, folded into the pass's progress in rows."""

    def __init__(self, progress: Progress, done: float, rows: int, snapshot: Callable | None, save_every: int):
        self.progress, self.done, self.rows = progress, done, rows
        self._snapshot, self.save_every = snapshot, save_every if snapshot else 0

    def step(self, step: int, total: int, objective: Any, stage: str = "") -> None:
        def status() -> str:
            return f"{stage + ' ' if stage else ''}objective {float(objective):.4g}"

        self.progress.update(self.done + self.rows * step / max(total, 1), status)

    def snapshot(self, step: int, pixels: Any) -> None:
        if self._snapshot is not None:
            self._snapshot(step, pixels)


class PassDriver(Ledger):
    """The members' rows in batches; see the module doc."""

    def __init__(self, session: Session, runs: list[Running], progress, behind, note, shared: bool = False):
        super().__init__(session, runs, progress, behind, note)
        self.shared = shared
        self.geometry: dict = {}  # image -> how it became the model's input (its batch's images)

    # --- decoding ------------------------------------------------------------------------

    def per_image(
        self,
        runs: Sequence[Running],
        images: Sequence[Path],
        size: int | None,
        batch_size: int,
        max_pixels: int | None,
        warn: Callable[[str], None],
    ) -> None:
        """Images decoded a batch at a time, once for every member (``size`` None: the
        default; a model of fixed input size crops them square)."""
        from cnnvis_tasks.io.columns import Geometry
        from cnnvis_tasks.io.images import load_batches

        for run in runs:
            self.resolve_targets(run)
            run.index_images()
        crop = input_crop(self.session.model, size, warn)
        size = decoding_size(size)
        order = sorted({image for run in runs for image in run.by_image})

        def unreadable(index: int, error: Exception) -> None:
            for run in runs:
                if order[index] in run.by_image:
                    self.fail(run, run.by_image[order[index]], str(error))

        sizes: dict[int, tuple[int, int]] | None = {} if any(run.columns for run in runs) else None
        batches = load_batches(
            [images[i] for i in order],
            size,
            batch_size,
            max_pixels,
            failed=unreadable,
            workers=self.session.io_workers,
            crop=crop,
            sizes=sizes,
        )
        with contextlib.closing(batches):  # on an error, its decoding threads stop now
            for indices, batch in batches:
                batch_images = [order[i] for i in indices]
                if sizes is not None:
                    self.geometry = {order[i]: Geometry(*sizes.pop(i), size, crop) for i in indices}
                pixels = batch.to(self.session.device)
                if self.shared:
                    self.compute_shared(runs, batch_images, pixels)
                else:
                    for run in runs:
                        self.separately(run, batch_images, pixels)

    def per_item(self, run: Running) -> None:
        """Techniques without images: rows that differ only in per-row values share a batch."""
        from cnnvis_tasks.io.images import synthesis_size_note

        technique, options, rows = run.technique, run.options, run.rows
        model = self.session.model
        if any(name in options for name in ("width", "height")):
            size = synthesis_size_note(model.name, model.input_size, options.get("width"), options.get("height"))
            if size:
                run.writer.warn(size)
        per_row = [option.name for option in technique.repeatable if option.per_row]
        for setting in run.settings:
            batch_size = options.get("batch_size") or len(setting.positions)
            for start in range(0, len(setting.positions), batch_size):
                chunk = setting.positions[start : start + batch_size]
                row_values = {
                    name: [technique.option(name).parse(rows[p].values[name]) for p in chunk]
                    for name in per_row
                    if name in rows[chunk[0]].values
                }
                targets = row_values.pop("target", None)
                self.compute(run, chunk, None, targets, setting.fixed, row_values)

    # --- computing -----------------------------------------------------------------------

    def separately(self, run: Running, batch_images: list[int], pixels: Any) -> None:
        """A member's rows of a batch, one ``compute`` per setting."""
        everything = list(range(len(batch_images)))
        if run.columns:
            self.check_columns(run, batch_images)
        for setting in run.settings:
            wanted = run.wanted(batch_images, setting)
            if not wanted:
                continue
            picked = [k for k, _ in wanted]
            inputs = pixels if picked == everything else pixels[picked]
            images = [batch_images[k] for k in picked]
            columns = run.column_values(images, self.geometry)
            self.compute(run, [p for _, p in wanted], inputs, run.batch_targets(images), setting.fixed, {}, columns)

    def check_columns(self, run: Running, batch_images: list[int]) -> None:
        """An image whose per-image inputs cannot be moved onto the input fails alone, saying why."""
        for image in batch_images:
            try:
                run.moved(image, self.geometry[image])
            except (ValueError, OSError) as error:
                rows = [p for p in run.by_image.get(image, ()) if p not in run.failed]
                if rows:
                    self.fail(run, rows, f"{run.writer.label(run.rows[rows[0]])}: {error}")

    def compute(
        self,
        run: Running,
        positions: list[int],
        inputs: Any,
        targets: Any,
        fixed: dict[str, Any],
        per_row: dict[str, Any] | None = None,
        columns: dict[str, list[Any]] | None = None,
    ) -> None:
        """Compute a member's rows at ``positions`` as one batch and write them; a failure the
        model raises is tried again row by row, so that only the row at fault fails."""
        per_row, columns = per_row or {}, columns or {}
        try:
            self._compute(run, positions, inputs, targets, fixed, per_row, columns)
        except (*MODEL_ERRORS, OverTimeBudget) as error:
            if len(positions) <= 1:
                if isinstance(error, OverTimeBudget):  # the image's own budget: it fails alone, saying why
                    self.fail(run, positions, f"{run.label(positions[0])}: {error}")
                else:
                    self.failed_on(run, positions, inputs, error)
                return
            self.release_memory()
            for k, position in enumerate(positions):
                self.compute(
                    run,
                    [position],
                    None if inputs is None else inputs[k : k + 1],
                    None if targets is None else targets[k : k + 1],
                    fixed,
                    {name: value[k : k + 1] for name, value in per_row.items()},
                    {name: value[k : k + 1] for name, value in columns.items()},
                )
            return
        self.collect(keep=len(positions))  # the batch before this one is written: memory stays flat

    def _compute(self, run: Running, positions, inputs, targets, fixed, per_row, columns) -> None:
        report = _StepReport(
            self.progress,
            self.done + len(self.behind),
            len(positions),
            run.writer.snapshots(positions, run.rows),
            run.options.get("save_every", 0),
        )
        result = run.technique.compute(
            self.session.model,
            inputs,
            targets,
            **run.options,
            **fixed,
            **per_row,
            **run.column_keywords(columns),
            seed=self.session.seed,
            report=report,
        )
        self.show_notes(run, result)
        host = result.to_host()
        if len(host) != len(positions):
            raise CnnvisError(f"{run.technique.name} computed {len(host)} results for {len(positions)} rows")
        self.submit(run, host, positions)

    def compute_shared(self, runs: Sequence[Running], batch_images: list[int], pixels: Any) -> None:
        """One shared pass for the batch and every member's rows written; a failure is tried
        again image by image, and an image that fails alone is left to each member."""
        try:
            results = shared_results(self.session, runs, batch_images, pixels, self.geometry, self.show_notes)
        except MODEL_ERRORS:
            if len(batch_images) > 1:
                self.release_memory()
                for k, image in enumerate(batch_images):
                    self.compute_shared(runs, [image], pixels[k : k + 1])
                return
            for run in runs:
                self.separately(run, batch_images, pixels)
            return
        for run, host, positions in results:  # nothing is written until every member's results are in
            self.submit(run, host, positions)
        self.collect(keep=sum(len(positions) for _, _, positions in results))


def run_pass(
    session: Session,
    members: Sequence[Member],
    images: Sequence[Path] = (),
    *,
    shared: bool = False,
    size: int | None = None,
    batch_size: int = BATCH_SIZE.default,
    max_pixels: int | None = None,
    label: str | None = None,
    warn: Callable[[str], None] = print,
    note: Callable[[str], None] = print,
    name_warnings: bool = False,
) -> list[dict[int, str]]:
    """Compute and write every member's rows: those over ``images`` decoded once at ``size``
    (None: the default) in batches of ``batch_size``, from one shared pass per batch with
    ``shared`` (a member that cannot share it raises :class:`CnnvisError` saying why, before
    any work); the others item by item.  ``label``: the progress's (default: the first
    member's technique); ``name_warnings``: each member's warnings begin with its technique's
    name.  Writes each member's record; returns each one's failed rows: position -> reason.
    A full disk raises :class:`DiskFull` (see the module doc)."""
    runs = []
    for number, member in enumerate(members):
        name = member.technique.name
        said = (lambda text, name=name: warn(f"{name}: {text}")) if name_warnings else warn
        runs.append(Running(number, member, session, images, said, shared))
    remove_stale_temporaries(_files(members))
    keep_room()  # the job's log keeps room to say why it stopped if the disk fills up
    total = sum(len(member.rows) for member in members)
    label = label or (members[0].technique.name if members else "")
    try:
        with Progress(total, label, quiet=session.quiet) as progress, Behind(session.io_workers) as behind:
            driver = PassDriver(session, runs, progress, behind, note, shared)
            over_images = [run for run in runs if run.technique.reads_images]
            if over_images:
                driver.per_image(over_images, images, size, batch_size, max_pixels, warn)
            for run in runs:
                if not run.technique.reads_images:
                    driver.per_item(run)
            driver.collect()
        for run in runs:
            run.writer.finish()
            if run.failures.record is not None:
                run.writer.record(run.failures.record, run.rows, run.failed)
    except DiskFull as error:  # leaving Behind waited for the writes under way: the count is final
        raise DiskFull(error.lead, _how_far(runs, error), error.errno) from error
    return [run.failed for run in runs]


def _files(members: Sequence[Member]) -> list[Path]:
    """Every file the members write: their rows' files, records and reductions."""
    paths = [Path(path) for member in members for row in member.rows for path in row.outputs.values()]
    paths += [Path(member.failures.record) for member in members if member.failures.record is not None]
    return paths + [Path(member.reduced) for member in members if member.reduced is not None]


def _how_far(runs: Sequence[Running], error: DiskFull) -> str:
    """How far a pass the disk stopped got: "N pictures written, M not; ..."."""
    outputs = [name for run in runs for row in run.rows for name in row.outputs]
    if not outputs:  # a reduction's file, say
        return f"{error.detail}; free some space and run again"
    written = sum(run.writer.written for run in runs)
    files = "files" if RAW in outputs else "pictures"
    text = f"{written} {files} written, {len(outputs) - written} not"
    if written >= len(outputs):  # its record, or its reduction, could not be written
        text += f" ({error.detail})"
    return f"{text}; free some space and run again"
