"""Running a technique over many rows: decode, batch, compute, render, write, progress.

One driver serves every technique command.  The caller (the command line)
says which rows to compute and where each row's pictures and raw array go
(:class:`Row`); this module loads the images a batch at a time, calls the
technique's ``compute`` once per batch and setting, reads the result from the
device once, renders each row and writes its files atomically.  With I/O
workers (:func:`cnnvis_tasks.pipeline.split_cores`) the next batch is decoded
and the last one rendered and written while a batch computes.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import CnnvisError
from .names import DEFAULT_MODEL
from .outputs import DEFAULT_PNG_LEVEL, atomic_write, save_npy, save_png
from .pipeline import Behind
from .progress import Progress
from .technique import BATCH_SIZE, SIZE, Report, Result, Technique

if TYPE_CHECKING:
    import torch

    from .models import LoadedModel

RAW = "raw"  # the output name of a row's raw array, beside its renderings
# What a model raises on one bad input (a batch is then tried again row by row);
# AssertionError: torch._assert's checks of input shapes.
_MODEL_ERRORS = (RuntimeError, ValueError, IndexError, ArithmeticError, AssertionError)


@dataclass
class Session:
    """What a technique runs with: the model (loaded once per process), its device, the random seed."""

    model: LoadedModel
    device: torch.device
    seed: int = 0
    quiet: bool = False
    io_workers: int = 0  # threads that decode, render and write beside the compute (0: none, serial)


def load_model(*args: Any, **kwargs: Any) -> LoadedModel:
    """:func:`cnnvis_tasks.models.load_model`, imported on first use (it imports
    torch); a name of this module, so that bench/dataset.py can replace it."""
    from .models import load_model

    return load_model(*args, **kwargs)


def open_session(
    model: str = DEFAULT_MODEL,
    weights: str = "default",
    device: str = "auto",
    seed: int = 0,
    threads: int | None = None,
    quiet: bool = False,
    debug: bool = False,
    **spec_options: Any,
) -> Session:
    """Configure threads and seed, then load the model once for this process.
    ``spec_options``: the model's other options (:func:`cnnvis_tasks.model_spec.spec_from_options`)."""
    from .model_spec import spec_from_options

    spec = spec_from_options(model, weights, **spec_options)
    import torch

    from .devices import configure_threads, default_threads, resolve_device, use_full_precision
    from .gpu_claim import spread_over_gpus
    from .pipeline import split_cores

    torch_device = spread_over_gpus(resolve_device(device), quiet)  # plain cuda: a GPU of its own
    compute_threads, io_workers = split_cores(threads or default_threads(), torch_device.type)
    configure_threads(compute_threads)
    torch.manual_seed(seed)
    use_full_precision(torch_device)
    model_loaded = load_model(spec, device=torch_device, seed=seed)
    return Session(model=model_loaded, device=torch_device, seed=seed, quiet=quiet, io_workers=io_workers)


def input_crop(model: LoadedModel, size: int | None, warn: Callable[[str], None]) -> int | None:
    """The square side images are cropped to for ``model`` (None: any size runs, they
    are resized to shorter side ``size``); warns once when that is not what ``size`` asks
    (``size`` None: the user asked for none, the default stood)."""
    from .images import fixed_size_note

    side = model.input_size
    note = fixed_size_note(model.name, side, size) if side else None
    if note:
        warn(note)
    return side


def decoding_size(size: int | None) -> int:
    """The shorter side images are resized to: ``size``, or the default when none was given."""
    return SIZE.default if size is None else size


@dataclass
class Row:
    """One row of a call: an image (its index in the call's images) or none, the
    values of the repeatable options, and where its files go (rendering or
    ``raw`` -> path)."""

    image: int | None
    values: dict[str, Any]
    outputs: dict[str, Path] = field(default_factory=dict)


def combinations(technique: Technique, values: dict[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of the repeatable options' values, in the order given
    (the last option varies fastest); kernels' layers and parameters are rows of
    their own instead (``ModelRows("either")``)."""
    names = [option.name for option in technique.repeatable if values.get(option.name)]
    if technique.model_rows.mode == "either":
        return [{name: value} for name in names for value in values[name]]
    return [dict(zip(names, combo)) for combo in itertools.product(*(values[name] for name in names))]


class _StepReport(Report):
    """Step progress of one batch, folded into the call's progress in rows."""

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


def _settings(rows: Sequence[Row], technique: Technique) -> list[tuple[dict[str, Any], list[int]]]:
    """Rows grouped by the values of their options that cannot vary within a batch,
    in order of first appearance: [(those values, row positions)]."""
    fixed = [option.name for option in technique.repeatable if not option.per_row]
    groups: dict[tuple, tuple[dict[str, Any], list[int]]] = {}
    for position, row in enumerate(rows):
        key = tuple((name, repr(row.values.get(name))) for name in fixed)
        values = {name: row.values[name] for name in fixed if name in row.values}
        groups.setdefault(key, (values, []))[1].append(position)
    return list(groups.values())


@dataclass
class Failures:
    """What to do when one row fails: stop (the default), or go on; with
    ``placeholders``, a failed row still gets every file, a 1 x 1 picture whose
    facts say why (so that a workflow finds every output it expects)."""

    keep_going: bool = False
    placeholders: bool = False
    record: Path | None = None  # a JSON file: every row's status and reason


def run(
    technique: Technique,
    session: Session,
    rows: Sequence[Row],
    options: dict[str, Any],
    *,
    images: Sequence[Path] = (),
    targets: Sequence[int | str | None] | None = None,
    boxes: Sequence[Sequence[float] | None] | None = None,
    renderings: Sequence[str] = (),
    failures: Failures | None = None,
    max_pixels: int | None = None,
    png_level: int = DEFAULT_PNG_LEVEL,
    warn: Callable[[str], None] = print,
    note: Callable[[str], None] = print,
) -> dict[int, str]:
    """Compute ``rows`` with ``options`` (single values, parsed) and write their files.

    ``renderings`` are the rendering names every row writes (plus ``raw`` when
    its path is given).  Per-image techniques read ``images`` (the rows' image
    indices point into it) with the target of each image in ``targets`` (None:
    its top-1 prediction; a label: a class index, WordNet ID or class name).
    A technique that reads boxes gets each image's box in ``boxes`` (in the image's
    own pixels, None: no box) moved onto its input (:func:`~.images.input_box`).
    An image that fails (it cannot be read, it is larger than ``max_pixels``
    after resizing, its label names no class, the model fails on it alone)
    stops the call, or with ``failures.keep_going`` fails alone; so does a row
    whose files cannot be rendered or written.  PNGs are written at zlib level
    ``png_level``.  Returns the failed rows: position -> reason.
    """
    failures = failures or Failures()
    writer = _Writer(technique, session, images, tuple(renderings), options, warn, png_level)
    with Progress(len(rows), technique.name, quiet=session.quiet) as progress, Behind(session.io_workers) as behind:
        call = _Call(technique, session, rows, options, writer, progress, note, failures, behind)
        if technique.reads_images:
            call.per_image(images, call.resolved(targets), max_pixels, boxes if technique.reads_boxes else None)
        else:
            call.per_item()
        call.collect()
    if failures.record is not None:
        writer.record(failures.record, rows, call.failed)
    return call.failed


class _Call:
    """One call of a technique: its rows in batches, each computed once and written;
    a batch that fails is computed again row by row to find the row at fault.  Rows
    are written ``behind`` the compute (at most one batch behind it)."""

    def __init__(self, technique, session, rows, options, writer, progress, note, failures, behind):
        self.technique, self.session, self.rows, self.options = technique, session, rows, options
        self.writer, self.progress, self.note, self.failures = writer, progress, note, failures
        self.behind = behind
        self.done = 0.0
        self.noted: set[str] = set()
        self.failed: dict[int, str] = {}

    def fail(self, positions: Sequence[int], reason: str) -> None:
        """The rows at ``positions`` failed: stop, or note it, write placeholders and go on."""
        if not self.failures.keep_going:
            raise CnnvisError(reason)
        for position in positions:
            self.failed[position] = reason
            self.writer.warn(f"failed: {reason}")
            if self.failures.placeholders:
                try:
                    self.writer.placeholder(self.rows[position], reason)
                except OSError as error:  # the folder that failed the row may refuse its placeholders too
                    self.writer.warn(f"{self.writer.label(self.rows[position])}: no placeholder: {_reason(error)}")
        self.done += len(positions)
        self.progress.update(self.done)

    def collect(self, keep: int = 0) -> None:
        """Take back the rows written behind the compute, waiting while more than ``keep``
        are pending: count them, show their warnings; a row whose files could not be
        rendered or written fails alone, as a row the model fails on."""
        for position, warnings, error in self.behind.finished(keep):
            label = self.writer.label(self.rows[position])
            if error is not None:
                self.fail([position], f"{label}: writing its files failed: {_reason(error)}")
                continue
            for message in warnings:
                self.writer.warn(f"{label}: {message}")
            self.done += 1
            self.progress.update(self.done)

    def resolved(self, targets: Sequence[int | str | None] | None) -> list[int | None] | None:
        """Labels as class indices; an image whose label names no class fails."""
        if targets is None:
            return None
        from .errors import ImageError
        from .labels import resolve_label

        resolved: list[int | None] = []
        model = self.session.model
        for image, target in enumerate(targets):
            if isinstance(target, str):
                try:
                    target = resolve_label(target, model.categories or [], model.name)
                except CnnvisError as error:
                    error = ImageError(f"image {self.writer.images[image]}: {error}")
                    self.fail([p for p, row in enumerate(self.rows) if row.image == image], str(error))
                    target = None
            resolved.append(target)
        return resolved

    def compute(self, positions: list[int], inputs: Any, targets: Any, values: dict[str, Any], **per_row: Any) -> None:
        """Compute the rows at ``positions`` as one batch and write them; a failure the
        model raises is tried again row by row, so that only the row at fault fails."""
        try:
            self._compute(positions, inputs, targets, values, **per_row)
        except _MODEL_ERRORS as error:
            if len(positions) > 1:
                self._release_memory()
                for k, position in enumerate(positions):
                    one = {name: value[k : k + 1] for name, value in per_row.items()}
                    self.compute(
                        [position],
                        None if inputs is None else inputs[k : k + 1],
                        None if targets is None else targets[k : k + 1],
                        values,
                        **one,
                    )
                return
            reason = _reason(error)
            size = f" ({inputs.shape[-1]} x {inputs.shape[-2]} as input)" if inputs is not None else ""
            label = self.writer.label(self.rows[positions[0]])
            self.fail(positions, f"{label}{size}: the model failed on it: {reason}")
            return
        self.collect(keep=len(positions))  # the batch before this one is written: memory stays flat

    def _release_memory(self) -> None:
        if self.session.device.type == "cuda":
            import torch

            torch.cuda.empty_cache()

    def _compute(self, positions: list[int], inputs: Any, targets: Any, values: dict[str, Any], **per_row: Any):
        technique = self.technique
        report = _StepReport(
            self.progress,
            self.done + len(self.behind),
            len(positions),
            self.writer.snapshots(positions, self.rows),
            self.options.get("save_every", 0),
        )
        fixed = {name: technique.option(name).parse(value) for name, value in values.items()}
        result = technique.compute(
            self.session.model,
            inputs,
            targets,
            **self.options,
            **fixed,
            **per_row,
            seed=self.session.seed,
            report=report,
        )
        requested = values.get("layer", self.options.get("layer"))
        if requested == "auto" and result.layer and result.layer not in self.noted:
            self.noted.add(result.layer)
            if not self.session.quiet:
                self.note(f"{technique.name}: layer {result.layer} (chosen automatically)")
        host = result.to_host()
        if len(host) != len(positions):
            raise CnnvisError(f"{technique.name} computed {len(host)} results for {len(positions)} rows")
        for k, position in enumerate(positions):
            self.behind.submit(position, self.writer.write, host, k, self.rows[position])

    def per_image(
        self,
        images: Sequence[Path],
        targets: Sequence[int | None] | None,
        max_pixels: int | None,
        boxes: Sequence[Sequence[float] | None] | None = None,
    ):
        """Images are decoded a batch at a time (once for all settings); each setting is one compute."""
        import torch

        from .images import input_box, load_batches

        by_image: dict[int, list[int]] = {}
        for position, row in enumerate(self.rows):
            if position not in self.failed:
                by_image.setdefault(row.image, []).append(position)
        order = list(by_image)
        settings = [(values, set(members)) for values, members in _settings(self.rows, self.technique)]
        size = self.options.get("size")
        batch_size = self.options.get("batch_size", BATCH_SIZE.default)
        crop = input_crop(self.session.model, size, self.writer.warn)
        size = decoding_size(size)

        def unreadable(index: int, error: Exception) -> None:
            self.fail(by_image[order[index]], str(error))

        sizes: dict[int, tuple[int, int]] | None = {} if boxes is not None else None
        batches = load_batches(
            [images[i] for i in order],
            size,
            batch_size,
            max_pixels,
            failed=unreadable if self.failures.keep_going else None,
            workers=self.session.io_workers,
            crop=crop,
            sizes=sizes,
        )
        with contextlib.closing(batches):  # on an error, its decoding threads stop now
            for indices, batch in batches:
                batch_images = [order[i] for i in indices]
                pixels = batch.to(self.session.device)
                per_row: dict[str, Any] = {}
                if sizes is not None:
                    moved = [
                        input_box(box, *sizes.pop(i), size, crop) if (box := boxes[order[i]]) is not None else None
                        for i in indices
                    ]
                    nan = (math.nan,) * 4
                    per_row["boxes"] = torch.tensor([box or nan for box in moved], dtype=torch.float32)
                for values, members in settings:
                    wanted = [(k, p) for k, image in enumerate(batch_images) for p in by_image[image] if p in members]
                    if not wanted:
                        continue
                    picked = [k for k, _ in wanted]
                    inputs = pixels if picked == list(range(len(batch_images))) else pixels[picked]
                    batch_targets = None if targets is None else [targets[batch_images[k]] for k in picked]
                    rows = {name: value[picked] for name, value in per_row.items()}
                    self.compute([p for _, p in wanted], inputs, batch_targets, values, **rows)

    def per_item(self) -> None:
        """Techniques without images: rows that differ only in per-row values share a batch."""
        from .images import synthesis_size_note

        technique = self.technique
        model = self.session.model
        if any(name in self.options for name in ("width", "height")):
            size = synthesis_size_note(
                model.name, model.input_size, self.options.get("width"), self.options.get("height")
            )
            if size:
                self.writer.warn(size)
        per_row = [option.name for option in technique.repeatable if option.per_row]
        for values, members in _settings(self.rows, technique):
            batch_size = self.options.get("batch_size") or len(members)
            for start in range(0, len(members), batch_size):
                chunk = members[start : start + batch_size]
                row_values = {
                    name: [technique.option(name).parse(self.rows[p].values[name]) for p in chunk]
                    for name in per_row
                    if name in self.rows[chunk[0]].values
                }
                targets = row_values.pop("target", None)
                self.compute(chunk, None, targets, values, **row_values)


def _finite(value: Any) -> float | None:
    """A number for a JSON record: NaN and infinities (undefined) as None."""
    number = float(value)
    return number if math.isfinite(number) else None


class _Writer:
    """Renders each row of a result and writes its files."""

    def __init__(
        self,
        technique: Technique,
        session: Session,
        images: Sequence[Path],
        renderings: tuple[str, ...],
        options: dict[str, Any],
        warn: Callable[[str], None],
        png_level: int = DEFAULT_PNG_LEVEL,
    ):
        self.technique, self.session, self.images = technique, session, images
        self.renderings, self.options, self.warn = renderings, options, warn
        self.png_level = png_level
        # each written row's own numbers and facts (Result.row_numbers, row_facts), by id(row), for the record
        self.measured: dict[int, dict[str, Any]] = {}

    def placeholder(self, row: Row, reason: str) -> None:
        """A failed row's files: 1 x 1 gray pictures whose facts say why, an empty array."""
        import numpy as np

        record = self.base(row) | {"status": "failed", "reason": reason}
        for name, path in row.outputs.items():
            if name == RAW:
                save_npy(path, np.zeros((0,), dtype=np.float32))
            else:
                save_png(path, np.full((1, 1, 3), 128, dtype=np.uint8), record | {"rendering": name}, self.png_level)

    def record(self, path: Path, rows: Sequence[Row], failed: dict[int, str]) -> None:
        """Every row's status, as JSON: image, setting, status (ok|failed), reason, and
        what the technique measured of the row (``measured``: its row numbers and facts), if anything."""
        entries = []
        for position, row in enumerate(rows):
            entries.append(
                {
                    "image": str(self.images[row.image]) if row.image is not None else None,
                    "setting": self.technique.setting_name(row.values),
                    "status": "failed" if position in failed else "ok",
                    "reason": failed.get(position),
                }
            )
            measured = self.measured.get(id(row)) if position not in failed else None
            if measured:
                entries[-1]["measured"] = measured
        text = json.dumps(
            {"technique": self.technique.name, "model": self.session.model.name, "rows": entries}, indent=1
        )
        atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))

    def base(self, row: Row) -> dict[str, Any]:
        record = {
            "technique": self.technique.name,
            "model": self.session.model.name,
            "weights": self.session.model.weights,
            "preprocessing": self.session.model.preprocessing,
        }
        if row.image is not None:
            record["image"] = str(self.images[row.image])
        return record

    def write(self, result: Result, position: int, row: Row) -> list[str]:
        """Render the row at ``position`` of a host result and write its files; returns
        its warnings.  Runs on a writer thread: NumPy and Pillow, no torch ops."""
        from .render import as_array

        warnings: list[str] = []
        record = self.base(row) | result.record(position, self.session.model.class_name)
        measured: dict[str, Any] = {name: _finite(values[position]) for name, values in result.row_numbers.items()}
        measured |= result.row_facts[position] if result.row_facts is not None else {}
        if measured:
            self.measured[id(row)] = measured
        if self.renderings:
            several = self.technique.several_renderings
            rendered = self.technique.render(result, position, self.renderings, self.options)
            for name in self.renderings:
                picture, facts = rendered.pictures[name]
                facts = record | facts | ({"rendering": name} if several else {})
                save_png(row.outputs[name], picture, facts, self.png_level)
            warnings = list(rendered.warnings)
        if RAW in row.outputs:
            save_npy(row.outputs[RAW], as_array(result.maps[position]))
        return warnings

    def label(self, row: Row) -> str:
        if row.image is not None:
            return str(self.images[row.image])
        return self.technique.setting_name(row.values) or self.technique.name

    def snapshots(self, positions: Sequence[int], rows: Sequence[Row]) -> Callable[[int, Any], None] | None:
        """Writes each row's intermediate picture beside its first picture."""
        paths = [
            next((rows[p].outputs[name] for name in self.renderings if name in rows[p].outputs), None)
            for p in positions
        ]
        if not self.technique.reports_steps or not any(paths):
            return None

        def snapshot(step: int, pixels: Any) -> None:
            from .render import to_uint8

            for path, image in zip(paths, pixels):
                if path is not None:
                    save_png(
                        path.with_name(f"{path.stem}.step{step:04d}.png"),
                        to_uint8(image),
                        {"technique": self.technique.name, "step": step},
                        self.png_level,
                    )

        return snapshot


def _reason(error: BaseException) -> str:
    """``Type: first line of the message``."""
    return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else 'no message'}"
