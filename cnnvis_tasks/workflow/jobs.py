"""A job of the workflow as data: what it runs, on what, and what it writes.

The plan (:mod:`cnnvis_tasks.workflow.plan`) makes every job as a :class:`Job`:
a technique (or a model's predictions, or a shared pass of several jobs), a
model, the option values that decide its results, those that do not (the
batch size), its images with their per-image values (a label, a box: the
columns of :mod:`cnnvis_tasks.io.columns`) or its chunk's image list, and its
outputs.  The command line is made from it once, here, at the edge
(:attr:`Job.arguments`, made on first use and kept), and parsed once, by the technique's own command; a
shared pass is a job whose ``members`` are jobs, each given to ``cnnvis-tasks
shared-pass`` as its own ``--job`` text.  Nothing reads a command line back.

Imports neither torch nor click.
"""

from __future__ import annotations

import functools
import json
import os
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from cnnvis_tasks.technique import BOOL, FORWARD, Cost, Technique
from cnnvis_tasks.workflow import costs

PREDICTIONS = "predictions"  # a model's top-1 classes per chunk, for summary.csv (the predict command)
SHARED_PASS = "shared-pass"


@dataclass(frozen=True)
class Output:
    """A file a job writes; ``report`` holds its Snakemake report labels (pictures only)."""

    path: str
    report: dict[str, Any] | None = None


def declarable(path: str) -> bool:
    """Whether Snakemake can take ``path`` as an input: it reads any brace as a wildcard."""
    return "{" not in path and "}" not in path


def fingerprint(path: str) -> str:
    """``path size mtime``: stands in for an input Snakemake cannot take (a changed file
    changes the job's params, so the job runs again)."""
    try:
        status = os.stat(path)
    except OSError:
        return f"{path} missing"
    return f"{path} {status.st_size} {status.st_mtime_ns}"


@functools.cache
def model_facts(model_file: str) -> dict[str, Any]:
    """The model's description the workflow wrote (``arch``, ``input_size``), {} if none yet."""
    try:
        with open(model_file, encoding="utf-8") as handle:
            found = json.load(handle)
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def file_bytes(paths: tuple[str, ...]) -> int:
    """The size of the files that exist among ``paths`` (a model's weights)."""
    return sum(os.path.getsize(path) for path in paths if declarable(path) and os.path.isfile(path))


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


@dataclass(frozen=True)
class CommandRow:
    """One row of a job's command: an image (or, for a technique without images, an item
    in ``values``), its own values (the per-image target, its box: name -> text, in
    command order) and where its files go (output flag -> path)."""

    image: str | None = None
    values: tuple[tuple[str, str], ...] = ()
    outputs: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Job:
    """One job: a technique, a model, a setting and (for techniques that read images) a
    chunk; or, in the chunk layout, one rule over every chunk (``chunks``; its paths hold
    ``{chunk}``).  A shared pass (``technique`` :data:`SHARED_PASS`) stands for its
    ``members``; their outputs are its own."""

    rule: str
    technique: str  # a technique's name, PREDICTIONS or SHARED_PASS
    model: str
    setting: str
    chunk: str | None
    model_file: str
    seed: int
    options: tuple[tuple[str, Any], ...]  # option name -> value, deciding the results, in command order
    runtime: tuple[tuple[str, Any], ...]  # what does not decide them (the batch size): a change re-runs nothing
    weights: tuple[str, ...]  # the model's file and its weights file: a new one re-runs the job
    outputs: tuple[Output, ...]  # the job's record first (predictions: its CSV), then its pictures and arrays
    log: str
    benchmark: str
    threads: int
    gpu: int
    device: str
    rows: tuple[CommandRow, ...] = ()
    image_list: str | None = None  # the chunk layout: the chunk's image list
    job_outputs: tuple[tuple[str, str], ...] = ()  # output flag -> path for the whole job (--out-dir, --out)
    record: str | None = None  # the record of every row's status (--record; with --keep-going --placeholders)
    chunks: tuple[str, ...] = ()  # the chunk layout: the chunks its {chunk} stands for
    folder: str | None = None  # the chunk layout: its folder of pictures
    members: tuple[Job, ...] = ()
    description: Technique | None = None  # the technique (options' spellings on the command line)

    # --- what it is -----------------------------------------------------------------

    @property
    def parts(self) -> tuple[Job, ...]:
        """The jobs whose outputs this one writes: its members, or itself."""
        return self.members or (self,)

    @property
    def images(self) -> tuple[str, ...]:
        """The images it reads (a shared pass: its members', the same for all)."""
        return tuple(row.image for row in self.parts[0].rows if row.image is not None)

    def option(self, name: str, default: Any = None) -> Any:
        """The value of a single-valued option (``default`` when not given)."""
        return next((value for key, value in self.options if key == name), default)

    def values(self, name: str) -> list[Any]:
        """Every value given to option ``name`` (a repeatable option's)."""
        return [value for key, value in self.options if key == name]

    @property
    def runtime_values(self) -> dict[str, Any]:
        return dict(self.runtime)

    # --- the command line: made here, once --------------------------------------------

    def _words(self, name: str, value: Any) -> list[str]:
        option = None
        if self.description is not None:
            option = next((o for o in self.description.options if o.name == name), None)
        if option is not None and option.kind == BOOL:
            return [option.flag if value else f"--{option.negative or 'no-' + name.replace('_', '-')}"]
        return [flag(name), str(value)]

    def _body(self, images: bool) -> Iterator[str]:
        """The arguments after the model and seed: options, rows (with or without their
        ``--image``), the image list, the job's outputs, what to do on a failure."""
        for name, value in self.options:
            yield from self._words(name, value)
        for row in self.rows:
            if images and row.image is not None:
                yield from ("--image", row.image)
            for name, text in row.values:
                yield from (flag(name), text)
            for name, path in row.outputs:
                yield from (name, path)
        if images and self.image_list is not None:
            yield from ("--image-list", self.image_list)
        for name, path in self.job_outputs:
            yield from (name, path)
        if self.record is not None:
            yield from ("--keep-going", "--placeholders", "--record", self.record)

    @property
    def head(self) -> tuple[str, ...]:
        """The command, the model's file (its architecture, weights, classes and preprocessing), the seed."""
        command = "predict" if self.technique == PREDICTIONS else self.technique
        return (command, "--model-file", self.model_file, "--seed", str(self.seed))

    @functools.cached_property
    def arguments(self) -> tuple[str, ...]:
        """Of ``cnnvis-tasks``: everything that decides the results.  A shared pass gives the
        images once, then each member as ``--job 'TECHNIQUE ARGS'`` (:meth:`member_text`)."""
        if not self.members:
            return (*self.head, *self._body(images=True))
        first = self.members[0]
        images = [word for image in first.images for word in ("--image", image)]
        listed = ["--image-list", first.image_list] if first.image_list is not None else []
        jobs = [word for member in self.members for word in ("--job", member.member_text)]
        return (*self.head, *images, *listed, *jobs)

    @functools.cached_property
    def member_text(self) -> str:
        """This job as one ``--job`` of a shared pass: its technique, its arguments less the
        model, seed and images (given to the shared pass once), and its runtime options."""
        runtime = [word for name, value in self.runtime for word in self._words(name, value)]
        return shlex.join([self.technique, *self._body(images=False), *runtime])

    @property
    def command(self) -> str:
        """The arguments, quoted for the shell (in the chunk layout ``{chunk}`` is Snakemake's wildcard)."""
        return " ".join(shlex.quote(argument) for argument in self.arguments)

    @property
    def runtime_command(self) -> str:
        """The runtime arguments, quoted for the shell ("" when none; a shared pass's
        members carry theirs)."""
        if self.members:
            return ""
        return " ".join(shlex.quote(word) for name, value in self.runtime for word in self._words(name, value))

    # --- what Snakemake is told ---------------------------------------------------------

    @property
    def inputs(self) -> list[str]:
        """The job's images (chunk layout: its image list) and model files, those Snakemake can take."""
        if self.chunks:
            return [self.parts[0].image_list or "", *self.weights]
        return [path for path in (*self.images, *self.weights) if declarable(path)]

    @property
    def untracked(self) -> list[str]:
        """Fingerprints of the inputs Snakemake cannot take (file names with braces)."""
        return [fingerprint(path) for path in (*self.images, *self.weights) if not declarable(path)]

    @property
    def output_paths(self) -> list[str]:
        return [output.path for output in self.outputs]

    @property
    def folders(self) -> list[str]:
        """The chunk layout: each part's folder of pictures (``{chunk}`` in them)."""
        return [part.folder for part in self.parts if part.folder]

    def paths(self, chunk: str) -> list[dict[str, str | None]]:
        """The chunk layout: the record and folder of each part of one chunk's job."""
        return [
            {
                "record": part.outputs[0].path.format(chunk=chunk),
                "folder": part.folder.format(chunk=chunk) if part.folder else None,
            }
            for part in self.parts
        ]

    @property
    def records(self) -> list[str]:
        """Each part's record (predictions: its CSV), for every chunk in the chunk layout."""
        if self.chunks:
            return [part.outputs[0].path.format(chunk=chunk) for chunk in self.chunks for part in self.parts]
        return [part.outputs[0].path for part in self.parts]

    # --- what it asks the scheduler for: memory and time (cnnvis_tasks.workflow.costs) ----

    @property
    def batch_size(self) -> int | None:
        """The batch size it runs with (a shared pass: its members', the same for all)."""
        value = self.parts[0].runtime_values.get("batch_size")
        return None if value is None else int(value)

    def work(self, images: int | None = None) -> costs.Work:
        """What it does, for the cost model: ``images`` per job (the chunk layout: its chunk's)."""
        first = self.parts[0]
        facts = model_facts(self.model_file)
        params, gflops = costs.model_size(str(facts.get("arch") or self.model), file_bytes(self.weights[1:]))
        options = dict(first.options)
        defaults = {option.name: option.default for option in first.description.options} if first.description else {}
        if facts.get("input_size"):
            pixels = int(facts["input_size"]) ** 2
        elif options.get("width") or options.get("height"):
            side = int(options.get("width") or options.get("height"))
            pixels = side * int(options.get("height") or side)
        else:
            size = options.get("size")
            size = 224 if size is None else int(size)
            largest = int(options.get("max_pixels") or 4_000_000)
            pixels = largest if size == 0 else min(largest, int(size * size * 1.5))  # 3:2 pictures
        count = images if images is not None else len(first.rows)
        return costs.Work(
            cost=self.cost,
            images=max(count, 1),
            batch_size=self.batch_size or 16,
            pixels=pixels,
            params=params,
            gflops=gflops,
            device=self.device,
            threads=self.threads,
            passes=first.cost.passes({**defaults, **options}, pixels),
        )

    @property
    def cost(self) -> Cost:
        """What one image costs: its technique's (a shared pass: its members' together; the
        predictions: a forward)."""
        if self.members:
            return costs.shared_pass_cost([member.cost for member in self.members])
        return self.description.cost if self.description is not None else FORWARD

    def mem_mb(self, attempt: int = 1, images: int | None = None) -> int:
        """``mem_mb``: MB it asks for, more on a retry (``attempt`` 2, 3, ...)."""
        return costs.memory_mb(self.work(images), attempt)

    def runtime_minutes(self, attempt: int = 1, images: int | None = None) -> int:
        """``runtime``: minutes it asks for, more on a retry."""
        return costs.runtime_minutes(self.work(images), attempt)

    def runtime_options(self, attempt: int = 1) -> str:
        """The runtime arguments of attempt ``attempt``: the first's are :attr:`runtime_command`;
        a retry runs with half the batch size (at least 1) and says so first in its log."""
        if attempt <= 1:
            return self.runtime_command
        was = self.batch_size
        smaller = costs.retry_batch_size(was, attempt) if was is not None else None
        runtime = self.runtime_values
        if smaller is not None and not self.members:
            runtime["batch_size"] = smaller
        words = [word for name, value in runtime.items() for word in self._words(name, value)]
        if smaller is not None and self.members:
            words += ["--batch-size", str(smaller)]  # shared-pass's own: its members' batch size
        note = costs.retry_note(attempt, smaller, was)
        return " ".join(shlex.quote(word) for word in (*words, "--attempt-note", note))
