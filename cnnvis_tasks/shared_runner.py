"""Several techniques over the same images from one forward and one backward per batch.

The driver of ``cnnvis-tasks shared-pass``: each *job* is one technique call as
its own command would make it (rows, options, targets, outputs, what to do on a
failure, see :class:`cnnvis_tasks.cli.techniques.PreparedCall`).  The images
are decoded once, a batch at a time; for each batch one
:func:`cnnvis_tasks.mechanisms.shared_pass.shared_pass` serves every job
(``Technique.from_pass`` turns it into the job's :class:`Result`), and every
row is written by the job's own :class:`cnnvis_tasks.runner._Writer`, so files,
facts, placeholders and records are those of the separate commands.

Failures are the separate commands' too.  An image that cannot be decoded fails
in every job; a label that names no class fails that image in the jobs that
explain labels.  A batch the model fails on is tried again image by image, and
an image that still fails is computed by each job's own ``compute``, as its
command would, so that each job fails it (or not: a feature map before the
failing layer) with its own command's reason.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import CnnvisError
from .pipeline import Behind
from .progress import Progress
from .runner import _MODEL_ERRORS, Failures, Row, Session, _reason, _settings, _Writer, decoding_size, input_crop
from .technique import AUTO_LAYER, SILENT, PassNeeds, Technique

NAME = "shared-pass"


@dataclass
class SharedJob:
    """One technique call of a shared pass: what its own command would run."""

    technique: Technique
    rows: Sequence[Row]
    options: dict[str, Any]  # single values, parsed
    targets: Sequence[int | str | None] | None = None  # per image, as the command gives them
    renderings: Sequence[str] = ()
    failures: Failures = field(default_factory=Failures)
    png_level: int = 6


def pass_settings(job: SharedJob) -> list[tuple[dict[str, Any], list[int], PassNeeds | str]]:
    """Each setting of a job (its repeatable values, its rows) with what it reads from
    the pass, or why it cannot share it."""
    technique = job.technique
    found = []
    for values, members in _settings(job.rows, technique):
        if technique.shares_pass is None or technique.from_pass is None:
            needs: PassNeeds | str = f"{technique.name} has no shared pass (it runs the model its own way)"
        else:
            fixed = {name: technique.option(name).parse(value) for name, value in values.items()}
            needs = technique.shares_pass(job.options | fixed)
        found.append((values, members, needs))
    return found


class _Job:
    """A job while it runs: its writer, its failed rows, its settings."""

    def __init__(self, number: int, job: SharedJob, session: Session, images: Sequence[Path], warn: Callable):
        self.number, self.job, self.technique = number, job, job.technique
        name = job.technique.name
        self.writer = _Writer(
            job.technique,
            session,
            images,
            tuple(job.renderings),
            job.options,
            lambda text: warn(f"{name}: {text}"),
            job.png_level,
        )
        self.failed: dict[int, str] = {}
        self.noted: set[str] = set()
        self.settings = []
        for values, members, needs in pass_settings(job):
            if isinstance(needs, str):
                raise CnnvisError(f"{name} cannot share the pass: {needs}")
            fixed = {name: job.technique.option(name).parse(value) for name, value in values.items()}
            self.settings.append((fixed, set(members), needs))
        self.targets: list[int | None] | None = None
        self.by_image: dict[int, list[int]] = {}


class _SharedCall:
    """The jobs' rows in batches, one shared pass per batch; rows written behind the compute."""

    def __init__(self, session: Session, jobs: list[_Job], progress: Progress, behind: Behind, note: Callable):
        self.session, self.jobs, self.progress, self.behind, self.note = session, jobs, progress, behind, note
        self.done = 0.0

    def fail(self, job: _Job, positions: Sequence[int], reason: str) -> None:
        """The rows at ``positions`` of ``job`` failed: stop, or note it, write placeholders, go on."""
        failures = job.job.failures
        if not failures.keep_going:
            raise CnnvisError(reason)
        for position in positions:
            job.failed[position] = reason
            job.writer.warn(f"failed: {reason}")
            if failures.placeholders:
                try:
                    job.writer.placeholder(job.job.rows[position], reason)
                except OSError as error:
                    job.writer.warn(f"{job.writer.label(job.job.rows[position])}: no placeholder: {_reason(error)}")
        self.done += len(positions)
        self.progress.update(self.done)

    def collect(self, keep: int = 0) -> None:
        """Take back the rows written behind the compute (see ``runner._Call.collect``)."""
        for (number, position), warnings, error in self.behind.finished(keep):
            job = self.jobs[number]
            label = job.writer.label(job.job.rows[position])
            if error is not None:
                self.fail(job, [position], f"{label}: writing its files failed: {_reason(error)}")
                continue
            for message in warnings:
                job.writer.warn(f"{label}: {message}")
            self.done += 1
            self.progress.update(self.done)

    def resolve_targets(self, job: _Job) -> None:
        """A job's labels as class indices; an image whose label names no class fails in it."""
        from .errors import ImageError
        from .labels import resolve_label

        targets = job.job.targets
        if targets is None:
            return
        model, resolved = self.session.model, []
        for image, target in enumerate(targets):
            if isinstance(target, str):
                try:
                    target = resolve_label(target, model.categories or [], model.name)
                except CnnvisError as error:
                    error = ImageError(f"image {job.writer.images[image]}: {error}")
                    self.fail(job, [p for p, row in enumerate(job.job.rows) if row.image == image], str(error))
                    target = None
            resolved.append(target)
        job.targets = resolved

    def per_image(
        self, images: Sequence[Path], size: int, batch_size: int, max_pixels: int | None, crop: int | None = None
    ) -> None:
        """Images decoded a batch at a time, once for every job (with ``crop``: cropped
        square for a model of fixed input size); one shared pass per batch."""
        from .images import load_batches

        for job in self.jobs:
            self.resolve_targets(job)
            for position, row in enumerate(job.job.rows):
                if position not in job.failed:
                    job.by_image.setdefault(row.image, []).append(position)
        order = sorted({image for job in self.jobs for image in job.by_image})

        def unreadable(index: int, error: Exception) -> None:
            for job in self.jobs:
                if order[index] in job.by_image:
                    self.fail(job, job.by_image[order[index]], str(error))

        batches = load_batches(
            [images[i] for i in order],
            size,
            batch_size,
            max_pixels,
            failed=unreadable,
            workers=self.session.io_workers,
            crop=crop,
        )
        with contextlib.closing(batches):
            for indices, batch in batches:
                self.compute([order[i] for i in indices], batch.to(self.session.device))

    def compute(self, batch_images: list[int], pixels: Any) -> None:
        """One shared pass for the batch and every job's rows written; a failure is tried
        again image by image, and an image that fails alone is left to each job."""
        try:
            submitted = self._compute(batch_images, pixels)
        except _MODEL_ERRORS:
            if len(batch_images) > 1:
                if self.session.device.type == "cuda":
                    import torch

                    torch.cuda.empty_cache()
                for k, image in enumerate(batch_images):
                    self.compute([image], pixels[k : k + 1])
                return
            for job in self.jobs:
                self._compute_alone(job, batch_images[0], pixels)
            return
        self.collect(keep=submitted)

    def _layer(self, layer: str) -> str:
        if layer == AUTO_LAYER:
            from .techniques.cam_family import automatic_layer

            return automatic_layer(self.session.model.module)
        return layer

    def _wanted(self, job: _Job, batch_images: list[int], members: set[int]) -> list[tuple[int, int]]:
        """(position in the batch, row position) of the job's rows of one setting in the batch."""
        return [
            (k, p)
            for k, image in enumerate(batch_images)
            for p in job.by_image.get(image, ())
            if p in members and p not in job.failed
        ]

    def _compute(self, batch_images: list[int], pixels: Any) -> int:
        from .mechanisms.shared_pass import BackwardRequest, shared_pass

        model = self.session.model
        layers: list[str] = []
        backwards: dict[tuple | None, dict[str, Any]] = {}  # target set -> what its backward gives
        work = []  # (job, setting, target set, wanted)
        for job in self.jobs:
            for fixed, members, needs in job.settings:
                wanted = self._wanted(job, batch_images, members)
                if not wanted:
                    continue
                key = None
                layers += [self._layer(layer) for layer in needs.features]
                if needs.backward:
                    key = None if job.targets is None else tuple(job.targets[image] for image in batch_images)
                    request = backwards.setdefault(key, {"input": False, "layers": []})
                    request["input"] |= needs.input_gradient
                    request["layers"] += [self._layer(layer) for layer in needs.gradients]
                work.append((job, fixed, key, wanted))
        if not work:
            return 0
        keys = list(backwards)
        requests = [
            BackwardRequest(
                targets=None if key is None else list(key),
                input_gradient=backwards[key]["input"],
                layers=tuple(dict.fromkeys(backwards[key]["layers"])),
            )
            for key in keys
        ]
        passes = shared_pass(model.module, model.normalize(pixels), layers, requests)
        everything = list(range(len(batch_images)))
        results = []
        for job, fixed, key, wanted in work:
            one = passes[keys.index(key)] if key in backwards else passes[0]
            picked = [k for k, _ in wanted]
            inputs = pixels if picked == everything else pixels[picked]
            view = one if picked == everything else one.select(picked)
            result = job.technique.from_pass(model, view, inputs, **job.job.options, **fixed)
            self._note_layer(job, fixed, result)
            host = result.to_host()
            if len(host) != len(wanted):
                raise CnnvisError(f"{job.technique.name} computed {len(host)} results for {len(wanted)} rows")
            results.append((job, host, wanted))
        submitted = 0
        for job, host, wanted in results:  # nothing is written until every job's results are in
            for k, (_, position) in enumerate(wanted):
                self.behind.submit((job.number, position), job.writer.write, host, k, job.job.rows[position])
                submitted += 1
        return submitted

    def _note_layer(self, job: _Job, fixed: dict[str, Any], result: Any) -> None:
        requested = fixed.get("layer", job.job.options.get("layer"))
        if requested == AUTO_LAYER and result.layer and result.layer not in job.noted:
            job.noted.add(result.layer)
            if not self.session.quiet:
                self.note(f"{job.technique.name}: layer {result.layer} (chosen automatically)")

    def _compute_alone(self, job: _Job, image: int, pixels: Any) -> None:
        """One image the shared pass failed on, computed by ``job`` as its own command would."""
        for fixed, members, _needs in job.settings:
            wanted = self._wanted(job, [image], members)
            if not wanted:
                continue
            positions = [p for _, p in wanted]
            targets = None if job.targets is None else [job.targets[image]]
            try:
                result = job.technique.compute(
                    self.session.model,
                    pixels,
                    targets,
                    **job.job.options,
                    **fixed,
                    seed=self.session.seed,
                    report=SILENT,
                )
                self._note_layer(job, fixed, result)
                host = result.to_host()
            except _MODEL_ERRORS as error:
                label = job.writer.label(job.job.rows[positions[0]])
                size = f" ({pixels.shape[-1]} x {pixels.shape[-2]} as input)"
                self.fail(job, positions, f"{label}{size}: the model failed on it: {_reason(error)}")
                continue
            for k, position in enumerate(positions):
                self.behind.submit((job.number, position), job.writer.write, host, k, job.job.rows[position])
            self.collect(keep=len(positions))


def run_shared(
    session: Session,
    jobs: Sequence[SharedJob],
    images: Sequence[Path],
    *,
    size: int | None,
    batch_size: int,
    max_pixels: int | None = None,
    warn: Callable[[str], None] = print,
    note: Callable[[str], None] = print,
) -> list[dict[int, str]]:
    """Compute and write every job's rows over ``images``, decoded once at ``size`` (None:
    none given, the default) in batches of ``batch_size``, from one shared pass per
    batch.  A job whose options cannot share the pass raises :class:`CnnvisError` saying why, before any work.
    Writes each job's record; returns each job's failed rows: position -> reason."""
    running = [_Job(number, job, session, images, warn) for number, job in enumerate(jobs)]
    total = sum(len(job.rows) for job in jobs)
    with Progress(total, NAME, quiet=session.quiet) as progress, Behind(session.io_workers) as behind:
        call = _SharedCall(session, running, progress, behind, note)
        crop = input_crop(session.model, size, warn)
        call.per_image(images, decoding_size(size), batch_size, max_pixels, crop)
        call.collect()
    for job in running:
        if job.job.failures.record is not None:
            job.writer.record(job.job.failures.record, job.job.rows, job.failed)
    return [job.failed for job in running]
