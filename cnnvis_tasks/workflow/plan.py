"""The workflow's plan: images -> chunks -> jobs -> outputs, the gallery's tables and the summary.

Everything the Snakemake rules declare is computed here, from a checked config
and the image list, so that it can be tested without Snakemake:

* images are listed and checked (decoding is cached); one that cannot be used
  is left out and listed with the reason (or, with ``strict_images``, stops the
  run);
* good images go to chunks by a stable hash of their name, so adding an image
  changes only its chunk;
* each technique gives one job per model, setting (one value of each
  repeatable option, except those marked ``together``) and chunk of images
  (techniques without images: per model and setting), with its command line,
  inputs, outputs, record, log and benchmark; an image the technique cannot
  take (too large once resized, no label where ``target: label``) is left out
  of its jobs and listed with the reason;
* each model gives one predictions job per chunk (top-1 class, probability,
  the label's class), for ``summary.csv``;
* the gallery gets one table per technique and model.

Result paths: ``RESULTS/MODEL/TECHNIQUE/IMAGE/SETTING[-RENDERING].png`` for
techniques that read images (IMAGE: the image's path below its source, see
:mod:`cnnvis_tasks.image_list`), ``RESULTS/MODEL/TECHNIQUE/SETTING[-RENDERING].png``
for the others, ``.npy`` for raw arrays; each job also writes its record,
``RESULTS/records/MODEL/TECHNIQUE/SETTING[/CHUNK].json`` (see results/README.md).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import math
import os
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import CnnvisError
from ..image_list import IMAGE_LIST_FILE_NAME, box_text
from ..images import size_problem
from ..labels import resolve_label
from ..model_spec import ModelSpec
from ..names import fixed_input_size
from ..technique import BOOL, COMMAND_ONLY, MODEL_LEVEL, SIZE, Technique, slug
from ..techniques import all_techniques
from .config import ConfigError, enabled_techniques, model_spec, technique_max_pixels
from .model_check import model_file, model_inputs

RAW = "raw"
PREDICTIONS = "predictions"
# Below the results folder: the record of a job over images, and a chunk's predictions.
RECORD_PATTERN = "records/{model}/{technique}/{setting}/{chunk}.json"
PREDICTIONS_PATTERN = "records/{model}/predictions/{chunk}.csv"
# The chunk layout: each chunk's image list, and each job's folder of pictures.
IMAGE_LIST_PATTERN = "chunk-lists/{chunk}.csv"
CHUNK_FOLDER_PATTERN = "chunks/{model}/{technique}/{setting}/{chunk}"
CHUNK_FILE_NAME = IMAGE_LIST_FILE_NAME  # inside a chunk's folder: the command's default with --image-list
CHUNK_WILDCARD = r"chunk\d+of\d+"
HEAD_LENGTH = 5  # a job's command starts: NAME --model-file RESULTS/models/M-HASH.json --seed S


@dataclass(frozen=True)
class Output:
    """A file a job writes; ``report`` holds its Snakemake report labels (pictures only)."""

    path: str
    report: dict[str, Any] | None = None


def picture_key(technique: Technique, setting: str, rendering: str) -> str:
    """A picture's column in the gallery's tables: its setting and rendering (either may be absent)."""
    return "-".join(part for part in (setting, rendering if technique.several_renderings else "") if part)


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


@dataclass(frozen=True)
class Job:
    """One job: a technique, a model, a setting and (for techniques that read images) a chunk."""

    rule: str
    technique: str
    model: str
    setting: str
    chunk: str | None
    arguments: tuple[str, ...]  # of `cnnvis-tasks`: everything that decides the results
    runtime: tuple[str, ...]  # what does not (batch size): a change re-runs nothing
    images: tuple[str, ...]
    weights: tuple[str, ...]  # a weights file, when the model has one: a new file re-runs the job
    outputs: tuple[Output, ...]  # the job's record first, then its pictures and arrays
    log: str
    benchmark: str
    threads: int
    gpu: int
    device: str
    # A shared pass (technique "shared-pass"): the jobs it stands for; their outputs are its own.
    members: tuple[Job, ...] = ()

    @property
    def parts(self) -> tuple[Job, ...]:
        """The jobs whose outputs this one writes: its members, or itself."""
        return self.members or (self,)

    @property
    def command(self) -> str:
        """The arguments, quoted for the shell."""
        return " ".join(shlex.quote(argument) for argument in self.arguments)

    @property
    def runtime_command(self) -> str:
        """The runtime arguments, quoted for the shell ("" when none)."""
        return " ".join(shlex.quote(argument) for argument in self.runtime)

    @property
    def inputs(self) -> list[str]:
        """The job's images and weights file, those Snakemake can take."""
        return [path for path in (*self.images, *self.weights) if declarable(path)]

    @property
    def untracked(self) -> list[str]:
        """Fingerprints of the inputs Snakemake cannot take (file names with braces)."""
        return [fingerprint(path) for path in (*self.images, *self.weights) if not declarable(path)]

    @property
    def output_paths(self) -> list[str]:
        return [output.path for output in self.outputs]


@dataclass(frozen=True)
class ChunkRule:
    """The chunk layout's jobs of one technique, model and setting (or one model's
    predictions): one Snakemake rule with a ``{chunk}`` wildcard.  Its patterns hold
    ``{chunk}``; its inputs are the chunk's image list (and the weights file); its
    outputs the record (predictions: the CSV) and the chunk's folder of pictures."""

    rule: str
    technique: str
    model: str
    setting: str
    chunks: tuple[str, ...]
    arguments: tuple[str, ...]  # with {chunk}
    runtime: tuple[str, ...]
    image_list: str
    weights: tuple[str, ...]
    record: str  # the record, or the predictions CSV
    folder: str | None  # the folder of pictures (None: predictions)
    log: str
    benchmark: str
    threads: int
    gpu: int
    device: str
    # A shared pass (technique "shared-pass"): the rules it stands for; their records and
    # folders are its outputs.
    members: tuple[ChunkRule, ...] = ()

    @property
    def command(self) -> str:
        """The arguments quoted for the shell, as a Snakemake string whose ``{chunk}`` is
        the wildcard (a function would cost Snakemake milliseconds per job); a brace
        elsewhere (a weights file's name) is refused when the config is checked."""
        return " ".join(shlex.quote(argument) for argument in self.arguments)

    @property
    def runtime_command(self) -> str:
        return " ".join(shlex.quote(argument) for argument in self.runtime)

    @property
    def inputs(self) -> list[str]:
        return [self.image_list, *self.weights]

    @property
    def parts(self) -> tuple[ChunkRule, ...]:
        """The rules whose outputs this one writes: its members, or itself."""
        return self.members or (self,)

    @property
    def outputs(self) -> list[str]:
        """Output patterns: each part's record, then each part's folder (as ``directory``)."""
        return [part.record for part in self.parts]

    @property
    def folders(self) -> list[str]:
        return [part.folder for part in self.parts if part.folder]

    def paths(self, chunk: str) -> list[dict[str, str | None]]:
        """The record and folder of each part of one chunk's job."""
        return [
            {
                "record": part.record.format(chunk=chunk),
                "folder": part.folder.format(chunk=chunk) if part.folder else None,
            }
            for part in self.parts
        ]

    @property
    def records(self) -> list[str]:
        return [part.record.format(chunk=chunk) for chunk in self.chunks for part in self.parts]


@dataclass
class Plan:
    results: str
    statuses: list[dict[str, Any]]  # every entry of the source: ok, failed or skipped, with why (chunks: never failed)
    images: dict[str, str]  # name -> path of every usable image
    labels: dict[str, str | None]  # name -> its label, as the source gives it
    chunks: dict[str, list[str]]  # chunk name -> names of its images
    jobs: list[Job] = field(default_factory=list)
    gallery_tables: list[dict[str, Any]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # per job, its first missing output after the first
    manifest: str | None = None  # the image list, when the images come from one
    models: list[str] = field(default_factory=list)
    layout: str = "pictures"
    chunk_rules: list[ChunkRule] = field(default_factory=list)  # the chunk layout's jobs
    chunk_count: int = 1
    fingerprints: dict[str, Any] = field(default_factory=dict)  # name -> [bytes, mtime_ns] (chunk layout)
    boxes: dict[str, list[float]] = field(default_factory=dict)  # name -> its bounding box, where the source gives one
    label_problems: dict[str, str] = field(default_factory=dict)  # name -> why its label names no class of a model

    @property
    def image_lists(self) -> dict[str, str]:
        """Chunk -> its image list (chunk layout)."""
        return {chunk: f"{self.results}/" + IMAGE_LIST_PATTERN.format(chunk=chunk) for chunk in self.chunks}

    def image_list_records(self, chunk: str) -> list[dict[str, Any]]:
        """What a chunk's image list holds: each image's name, path, label, fingerprint and box."""
        return [
            {
                "name": name,
                "path": self.images[name],
                "label": self.labels.get(name),
                "fingerprint": self.fingerprints.get(name),
                "box": self.boxes.get(name),
            }
            for name in self.chunks[chunk]
        ]

    def _image_check_files(self) -> list[str]:
        # In the chunk layout the image lists stand for the images (they change when one does).
        images = list(self.image_lists.values()) if self.layout == "chunks" else list(self.images.values())
        return [*images, *([self.manifest] if self.manifest else [])]

    @property
    def image_check_inputs(self) -> list[str]:
        """What the image check reads that Snakemake can take: every usable image, and the manifest."""
        return [path for path in self._image_check_files() if declarable(path)]

    @property
    def image_check_untracked(self) -> list[str]:
        """Fingerprints of the files the image check reads that Snakemake cannot take."""
        return [fingerprint(path) for path in self._image_check_files() if not declarable(path)]

    @property
    def bad_images(self) -> dict[str, str]:
        return {s["name"]: s["reason"] for s in self.statuses if s["status"] != "ok"}

    @property
    def gallery_page(self) -> str:
        return f"{self.results}/index.html"

    @property
    def image_status_file(self) -> str:
        return f"{self.results}/images.json"

    @property
    def summary_file(self) -> str:
        return f"{self.results}/summary.csv"

    @property
    def records(self) -> list[str]:
        """Each job's record (its first output): what ``summary.csv`` is made from.  The
        gallery depends on the jobs through these alone: naming every picture of tens
        of thousands of images would cost Snakemake seconds per thousand; Snakemake
        re-runs a job only for missing outputs that are asked for, so ``all`` also
        asks for :attr:`missing`."""
        return [part.outputs[0].path for job in self.jobs for part in job.parts] + [
            r for rule in self.chunk_rules for r in rule.records
        ]

    @property
    def trust_records(self) -> list[str]:
        """The trust metrics jobs' records: what ``metrics.csv`` is made from."""
        from .trust import METRICS_TECHNIQUE

        jobs = [job.outputs[0].path for job in self.jobs if job.technique == METRICS_TECHNIQUE]
        return jobs + [r for rule in self.chunk_rules if rule.technique == METRICS_TECHNIQUE for r in rule.records]

    @property
    def trust_files(self) -> list[str]:
        """What the trust summary writes (nothing when no metrics job runs): the tables,
        then each model's averaged curves."""
        from .trust import curves_picture

        if not self.trust_records:
            return []
        tables = [f"{self.results}/metrics.csv", f"{self.results}/metrics-summary.csv"]
        return tables + [f"{self.results}/{curves_picture(model)}" for model in self.models]

    @property
    def image_check_mode(self) -> str:
        """How the image_status job checks the images: decoded (as the workflow's start
        does in the pictures layout), or, in the chunk layout, by their headers (the
        start only lists them; their jobs decode them)."""
        return "--header-only" if self.layout == "chunks" else "--decode"

    @property
    def image_check_cache(self) -> str:
        return f"{self.results}/.cache/image-check.json"

    @property
    def spec(self) -> dict[str, Any]:
        """What the gallery and summary commands read (their --spec): the tables, the
        models, the chunks and the settings of the jobs over images, whose records lie
        at :data:`RECORD_PATTERN` below the results folder (so that the spec stays
        small however many images there are)."""
        parts = [part for rule in [*self.jobs, *self.chunk_rules] for part in rule.parts]
        settings = {
            (job.model, job.technique, job.setting): None
            for job in parts
            if (job.chunk is not None if isinstance(job, Job) else True) and job.technique != PREDICTIONS
        }
        return {
            "layout": self.layout,
            "chunk_count": self.chunk_count,
            "tables": self.gallery_tables,
            "models": self.models,
            "chunks": list(self.chunks),
            "settings": [{"model": m, "technique": t, "setting": s} for m, t, s in settings],
            "records": RECORD_PATTERN,
            "predictions": PREDICTIONS_PATTERN,
            "label_problems": self.label_problems,
        }

    @property
    def gallery_spec(self) -> str:
        return json.dumps(self.spec, sort_keys=True)

    @functools.cached_property
    def gallery_spec_argument(self) -> str:
        """``--spec`` of the summary, trust-summary and gallery commands: the spec itself, or,
        when it is too long for one command-line argument (Linux: 128 KiB; many images left
        out with their reasons), ``@FILE``, a file named by its content (a changed spec is a
        changed argument: the commands run again)."""
        text = self.gallery_spec
        if len(text.encode("utf-8")) <= MAX_JOB_TEXT:
            return text
        digest = hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]
        path = f"{self.results}/.cache/gallery-spec-{digest}.json"
        if not os.path.isfile(path):
            from ..outputs import atomic_write

            atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))
        return "@" + path


def chunk_count(image_count: int, chunk_size: int, pinned: int | None = None) -> int:
    """``pinned``, else the next power of two of images / chunk_size (when that grows,
    each chunk splits in two)."""
    if pinned:
        return pinned
    return 2 ** math.ceil(math.log2(max(1, math.ceil(image_count / chunk_size))))


def chunk_of(name: str, count: int) -> int:
    """An image's chunk: a stable hash of its name, so adding an image changes only its chunk
    (the SHA-1 as a number, modulo ``count``)."""
    digest = hashlib.sha1(name.encode("utf-8")).digest()
    if count & (count - 1) == 0 and count <= 2**64:  # a power of two: the last 8 bytes decide, read faster
        return int.from_bytes(digest[-8:], "big") % count
    return int.from_bytes(digest, "big") % count


def chunk_name(index: int, count: int) -> str:
    return f"chunk{index:03d}of{count:03d}"


def make_chunks(names: Sequence[str], count: int) -> dict[str, list[str]]:
    chunks: dict[str, list[str]] = {}
    for name in names:
        chunks.setdefault(chunk_name(chunk_of(name, count), count), []).append(name)
    return dict(sorted(chunks.items()))


# --- the settings of a technique's jobs -----------------------------------------------


def _model_rows(technique: Technique, model_settings: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The rows one model's block names: option name -> value."""
    options = [option for option in technique.options if option.where == MODEL_LEVEL]
    mode = technique.model_rows.mode
    if mode == "pairs":
        return [
            {option.name: pair[option.name] for option in options}
            for pair in model_settings[technique.model_rows.key or "pairs"]
        ]
    if mode == "either":
        return [{option.name: value} for option in options for value in model_settings.get(option.config_key, [])]
    lists = [[(option.name, value) for value in model_settings[option.config_key]] for option in options]
    return [dict(combo) for combo in itertools.product(*lists)]


def job_settings(technique: Technique, settings: Mapping[str, Any], model_settings: Mapping[str, Any]) -> list[dict]:
    """One dict per job: a value of every repeatable option, and the whole list of
    each ``together`` option (its values share the job)."""
    level = [option for option in technique.repeatable if option.where != MODEL_LEVEL]
    apart = [[(o.name, value) for value in settings[o.config_key]] for o in level if not o.together]
    together = {o.name: list(settings[o.config_key]) for o in level if o.together}
    rows = []
    for model_row in _model_rows(technique, model_settings):
        for combo in itertools.product(*apart):
            rows.append(dict(combo) | model_row | together)
    return rows


def _scalar_arguments(
    technique: Technique, settings: Mapping[str, Any], job: Mapping[str, Any]
) -> tuple[list[str], list[str]]:
    """The technique's single-valued options as command-line arguments: (those that
    decide the results, those that do not).  A per-image option set to ``label``
    (the target) is left out: each image gets its own."""
    arguments: list[str] = []
    runtime: list[str] = []
    values = {
        o.name: settings[o.config_key]
        for o in technique.options
        if o.where not in (COMMAND_ONLY, MODEL_LEVEL) and not o.repeatable
    }
    if technique.job_options:
        values.update(technique.job_options(settings, job))
    for option in technique.options:
        value = values.get(option.name)
        if value is None or (option.per_image and value == "label"):
            continue
        if option.kind == BOOL:
            given = [option.flag if value else f"--{option.negative or 'no-' + option.name.replace('_', '-')}"]
        else:
            given = [option.flag, str(value)]
        (arguments if option.affects_results else runtime).extend(given)
    return arguments, runtime


def labelled_target(technique: Technique, settings: Mapping[str, Any]) -> bool:
    """Whether the technique explains each image's label (``target: label``)."""
    return any(option.per_image and settings.get(option.config_key) == "label" for option in technique.options)


# --- the plan ---------------------------------------------------------------------------


class _Planner:
    def __init__(
        self,
        config: dict[str, Any],
        plan: Plan,
        sizes: dict[str, Any],
        models: Mapping[str, ModelSpec],
        *,
        gpu: bool,
        exists: Callable[[str], bool] | None,
    ):
        self.config, self.plan, self.sizes, self.gpu, self.exists = config, plan, sizes, gpu, exists
        self.results = plan.results
        self.models = models
        self._label_problems: dict[tuple[str, str], str | None] = {}
        self.category = {t.name: f"{position}. {t.title}" for position, t in enumerate(all_techniques(), start=1)}

    def relative(self, path: str) -> str:
        return os.path.relpath(path, self.results)

    def renderings(self, technique: Technique, settings: Mapping[str, Any]) -> list[str]:
        if technique.several_renderings:
            return list(settings["renderings"])
        return [technique.renderings[0].name]

    def files(
        self, technique: Technique, settings: Mapping[str, Any], stem: str, labels: dict[str, Any], model: str
    ) -> list[tuple[str, Output, str]]:
        """(output option, file, rendering or "raw") of one row: each rendering, then the raw array."""
        files = []
        for name in self.renderings(technique, settings):
            rendering = next(r for r in technique.renderings if r.name == name)
            # a technique without repeatable options has no setting: IMAGE/gray.png, not IMAGE/-gray.png
            suffix = ("" if stem.endswith("/") else "-") + name if technique.several_renderings else ""
            report = {
                "category": self.category[technique.name],
                "subcategory": model,
                "labels": labels | ({"rendering": name} if technique.several_renderings else {}),
            }
            files.append((technique.output_flag(rendering), Output(f"{stem}{suffix}.png", report), name))
        if settings["raw"]:
            files.append(("--raw", Output(f"{stem}raw.npy" if stem.endswith("/") else f"{stem}.npy"), RAW))
        return files

    def column_label(self, technique: Technique, model: str, values: Mapping[str, Any], rendering: str) -> list[str]:
        return [model, *technique.setting_labels(values)] + ([rendering] if technique.several_renderings else [])

    def head(self, name: str, model: str) -> tuple[str, ...]:
        """The start of a job's command: the command, then the model's file (its
        architecture, weights, classes and preprocessing) and the seed (:data:`HEAD_LENGTH` words)."""
        command = "predict" if name == PREDICTIONS else name
        spec = self.models[model]
        return (command, "--model-file", model_file(self.results, spec), "--seed", str(self.config["seed"]))

    def weights_files(self, model: str) -> tuple[str, ...]:
        """The model's file and its weights file, when it has one (inputs: a changed
        description or a new weights file re-runs its jobs)."""
        spec = self.models[model]
        return (model_file(self.results, spec), *model_inputs(spec))

    def label_problem(self, model: str, name: str) -> str | None:
        """Why image ``name``'s label names no class of ``model``; None when it does (or the
        model's classes are not known here)."""
        label = self.plan.labels.get(name)
        classes = self.models[model].classes
        if not label or not classes:
            return None
        key = (model, label)
        if key not in self._label_problems:
            try:
                resolve_label(label, classes, model)
                self._label_problems[key] = None
            except CnnvisError as error:
                self._label_problems[key] = str(error)
        problem = self._label_problems[key]
        return f"{self.plan.images[name]}: {problem}" if problem else None

    def unusable_labels(self) -> dict[str, str]:
        """Images whose label names no class of any model a ``target: label`` technique
        explains them on, with why (for the gallery's count of usable images; an image
        only one of several models cannot take is left out of that model's tables alone)."""
        models = sorted(
            {
                model
                for technique, settings in enabled_techniques(self.config)
                if labelled_target(technique, settings)
                for model in settings["models"]
            }
        )
        if not models or any(not self.models[model].classes for model in models):
            return {}
        found: dict[str, str] = {}
        for name in self.plan.images:
            problems = [self.label_problem(model, name) for model in models]
            if all(problems):
                found[name] = problems[0]
        return found

    def add_job(
        self,
        name: str,
        model: str,
        setting: str,
        chunk: str | None,
        arguments: list[str],
        runtime: list[str],
        images: list[str],
        outputs: list[Output],
        *,
        runs_model: bool = True,
    ) -> None:
        """A job, its record (first output) and its log in a folder of their own."""
        where = "/".join(part for part in (model, name, setting, chunk) if part)
        record = Output(f"{self.results}/records/{where}.json")  # RECORD_PATTERN for jobs over images
        if name != PREDICTIONS:
            arguments = [*arguments, "--keep-going", "--placeholders", "--record", record.path]
            outputs = [record, *outputs]
            runtime = [*runtime, "--png-level", str(self.config["png_level"])]
        job = Job(
            rule=slug("_".join(part for part in (name.replace("-", "_"), model, setting, chunk) if part)),
            technique=name,
            model=model,
            setting=setting,
            chunk=chunk,
            arguments=(*self.head(name, model), *arguments),
            runtime=tuple(runtime),
            images=tuple(images),
            weights=self.weights_files(model),
            outputs=tuple(outputs),
            log=f"{self.results}/logs/{where}.log",
            benchmark=f"{self.results}/benchmarks/{where}.tsv",
            threads=self.config["threads"] if runs_model else 1,
            gpu=1 if self.gpu and runs_model else 0,
            device=self.config["device"] if runs_model else "cpu",
        )
        self.plan.jobs.append(job)
        if self.exists is not None:
            missing = next((o.path for o in job.outputs[1:] if not self.exists(o.path)), None)
            if missing:
                self.plan.missing.append(missing)

    def add_chunk_rule(
        self, name: str, model: str, setting: str, arguments: list[str], runtime: list[str], folder: str | None
    ) -> None:
        """The chunk layout's jobs of a technique, model and setting (or a model's
        predictions): one rule over every chunk, as :class:`ChunkRule`."""
        where = "/".join(part for part in (model, name, setting) if part)
        image_list = f"{self.results}/" + IMAGE_LIST_PATTERN
        if name == PREDICTIONS:
            record = f"{self.results}/" + PREDICTIONS_PATTERN.format(model=model, chunk="{chunk}")
            arguments = [*arguments, "--image-list", image_list, "--out", record]
        else:
            record = f"{self.results}/records/{where}/{{chunk}}.json"  # RECORD_PATTERN
            arguments = [*arguments, "--image-list", image_list, "--out-dir", folder or ""]
            arguments += ["--keep-going", "--placeholders", "--record", record]
            runtime = [*runtime, "--png-level", str(self.config["png_level"])]
        head = self.head(name, model)
        words = (*head, *arguments, *self.weights_files(model))
        braces = [a for a in words if not declarable(a.replace("{chunk}", ""))]
        if braces:
            raise ConfigError(
                f"config error: layout: chunks: {braces[0]!r} holds a brace, which Snakemake would read as a "
                "wildcard; rename it, or use layout: pictures"
            )
        self.plan.chunk_rules.append(
            ChunkRule(
                rule=slug("_".join(part for part in (name.replace("-", "_"), model, setting) if part)),
                technique=name,
                model=model,
                setting=setting,
                chunks=tuple(self.plan.chunks),
                arguments=(*head, *arguments),
                runtime=tuple(runtime),
                image_list=image_list,
                weights=self.weights_files(model),
                record=record,
                folder=folder,
                log=f"{self.results}/logs/{where}/{{chunk}}.log",
                benchmark=f"{self.results}/benchmarks/{where}/{{chunk}}.tsv",
                threads=self.config["threads"],
                gpu=1 if self.gpu else 0,
                device=self.config["device"],
            )
        )

    def per_image_chunked(self, technique: Technique, settings: Mapping[str, Any], model: str) -> None:
        """The chunk layout: per setting, one rule over the chunks; each job reads its
        chunk's image list and writes one folder.  Images the technique cannot take
        fail in the job, alone, with the reason (in its record, the summary and the
        gallery)."""
        columns = []
        labelled = labelled_target(technique, settings)
        renderings = self.renderings(technique, settings)
        for values in job_settings(technique, settings, settings["models"][model]):
            setting = technique.setting_name(values)
            arguments, runtime = _scalar_arguments(technique, settings, values)
            for option in technique.repeatable:
                arguments += [option.flag, str(values[option.name])]
            arguments += ["--max-pixels", str(technique_max_pixels(self.config, settings))]
            if labelled:
                arguments += ["--target", "label"]
            for rendering in [*renderings, *([RAW] if settings["raw"] else [])]:
                arguments += ["--rendering", rendering]
            parts = {"model": model, "technique": technique.name, "setting": setting or "-", "chunk": "{chunk}"}
            folder = f"{self.results}/" + CHUNK_FOLDER_PATTERN.format(**parts)
            self.add_chunk_rule(technique.name, model, setting, arguments, runtime, folder)
            for rendering in renderings:
                key = picture_key(technique, setting, rendering)
                picture = CHUNK_FILE_NAME.format(name="{image}", rendering=rendering, ext="png")
                columns.append(
                    {
                        "key": key,
                        "label": self.column_label(technique, model, values, rendering),
                        "path": self.relative(f"{folder}/{picture}"),
                    }
                )
        self.plan.gallery_tables.append(
            {"section": technique.name, "table": model, "per_image": True, "columns": columns, "failures": {}}
        )

    def left_out(self, technique: Technique, settings: Mapping[str, Any], model: str) -> dict[str, str]:
        """Images the technique cannot take on ``model``, with why: too large once resized
        (cropped, for a model of fixed input size), no label."""
        reasons = {}
        size = settings.get("size")
        crop = self.models[model].input_size
        labelled = labelled_target(technique, settings)
        for name in self.plan.images:
            problem = None
            if size is not None and self.sizes.get(name):
                problem = size_problem(*self.sizes[name], size, technique_max_pixels(self.config, settings), crop)
                problem = f"{self.plan.images[name]} is {problem}" if problem else None
            if problem is None and labelled and not self.plan.labels.get(name):
                problem = (
                    f"{self.plan.images[name]} has no label (target: label): give it a label column in "
                    "the manifest, or put it in a folder named by its class"
                )
            if problem is None and labelled:
                problem = self.label_problem(model, name)
            if problem:
                reasons[name] = problem
        return reasons

    def per_image(self, technique: Technique, settings: Mapping[str, Any], model: str) -> None:
        columns = []
        folder = f"{self.results}/{model}/{technique.name}"
        left_out = self.left_out(technique, settings, model)
        labelled = labelled_target(technique, settings)
        for values in job_settings(technique, settings, settings["models"][model]):
            setting = technique.setting_name(values)
            options, runtime = _scalar_arguments(technique, settings, values)
            for option in technique.repeatable:
                options += [option.flag, str(values[option.name])]
            options += ["--max-pixels", str(technique_max_pixels(self.config, settings))]
            labels = {o.name: o.token(values[o.name]) for o in technique.repeatable}
            for chunk, names in self.plan.chunks.items():
                names = [name for name in names if name not in left_out]
                if not names:
                    continue
                arguments, outputs = list(options), []
                boxed = technique.reads_boxes and any(name in self.plan.boxes for name in names)
                for name in names:
                    arguments += ["--image", self.plan.images[name]]
                    if labelled:
                        arguments += ["--target", str(self.plan.labels[name])]
                    if boxed:
                        arguments += ["--box", box_text(self.plan.boxes.get(name)) or "none"]
                    for flag, output, _ in self.files(
                        technique, settings, f"{folder}/{name}/{setting}", {"image": name} | labels, model
                    ):
                        arguments += [flag, output.path]
                        outputs.append(output)
                self.add_job(
                    technique.name,
                    model,
                    setting,
                    chunk,
                    arguments,
                    runtime,
                    [self.plan.images[n] for n in names],
                    outputs,
                )
            for _, output, rendering in self.files(technique, settings, f"{folder}/{{image}}/{setting}", {}, model):
                if rendering != RAW:
                    key = picture_key(technique, setting, rendering)
                    columns.append(
                        {
                            "key": key,
                            "label": self.column_label(technique, model, values, rendering),
                            "path": self.relative(output.path),
                        }
                    )
        self.plan.gallery_tables.append(
            {"section": technique.name, "table": model, "per_image": True, "columns": columns, "failures": left_out}
        )

    def without_images(self, technique: Technique, settings: Mapping[str, Any], model: str) -> None:
        """One job per setting; a ``together`` item option (class-viz's classes) makes the
        gallery's rows, else the table has one row."""
        item = technique.option(technique.item) if technique.item else None
        by_item = item is not None and item.together
        rows: dict[str, dict[str, Any]] = {}
        for values in job_settings(technique, settings, settings["models"][model]):
            own = {k: v for k, v in values.items() if not (by_item and k == item.name)}
            items = values[item.name] if by_item else [None]
            setting = technique.setting_name(own)
            arguments, runtime = _scalar_arguments(technique, settings, values)
            for option in technique.repeatable:
                if option.name in own:
                    arguments += [option.flag, str(own[option.name])]
            outputs = []
            for value in items:
                row_values = own | ({item.name: value} if by_item else {})
                if by_item:
                    arguments += [item.flag, str(value)]
                stem = f"{self.results}/{model}/{technique.name}/{technique.setting_name(row_values)}"
                labels = {o.name: o.token(row_values[o.name]) for o in technique.repeatable if o.name in row_values}
                row_key, row_label = (str(value), item.label(value)) if by_item else (technique.name, model)
                row = rows.setdefault(row_key, {"key": row_key, "label": row_label, "cells": []})
                for flag, output, rendering in self.files(technique, settings, stem, labels, model):
                    arguments += [flag, output.path]
                    outputs.append(output)
                    if rendering != RAW:
                        key = picture_key(technique, setting, rendering)
                        row["cells"].append(
                            {
                                "key": key,
                                "path": self.relative(output.path),
                                "label": self.column_label(technique, model, own, rendering),
                            }
                        )
            self.add_job(
                technique.name, model, setting, None, arguments, runtime, [], outputs, runs_model=technique.runs_model
            )
        self.plan.gallery_tables.append(
            {"section": technique.name, "table": model, "per_image": False, "rows": list(rows.values())}
        )

    def prediction_size(self, model: str) -> list[str]:
        """``--size`` of a model's predictions (summary.csv's top-1 classes): the size most of
        its techniques over images compute at, so that the summary's prediction is theirs
        (none: the command's default, which most use)."""
        sizes = [
            settings.get("size")
            for technique, settings in enabled_techniques(self.config)
            if technique.reads_images and model in settings["models"] and settings.get("size") is not None
        ]
        if not sizes:
            return []
        size = max(dict.fromkeys(sizes), key=sizes.count)  # the commonest; a tie: the first in gallery order
        return [] if size == SIZE.default else ["--size", str(size)]

    def predictions(self, model: str) -> None:
        """Each chunk's top-1 classes and probabilities, and its labels' classes, for summary.csv."""
        for chunk, names in self.plan.chunks.items():
            arguments = self.prediction_size(model)
            for name in names:
                arguments += ["--image", self.plan.images[name], "--label", self.plan.labels.get(name) or ""]
            output = Output(f"{self.results}/" + PREDICTIONS_PATTERN.format(model=model, chunk=chunk))
            self.add_job(
                PREDICTIONS,
                model,
                "",
                chunk,
                [*arguments, "--out", output.path],
                [],
                [self.plan.images[n] for n in names],
                [output],
            )


SHARED_PASS = "shared-pass"


def _option_value(arguments: Sequence[str], flag: str) -> str | None:
    return arguments[arguments.index(flag) + 1] if flag in arguments else None


def share_passes(rules: list[ChunkRule], techniques: Mapping[str, Technique], results: str) -> list[ChunkRule]:
    """Rules of one model whose settings can share one forward and backward (vanilla
    saliency, feature maps, the gradient CAMs) and decode the same batches, folded into
    one ``shared-pass`` rule per model and chunk; the others are kept as they are."""
    groups: dict[tuple, list[ChunkRule]] = {}
    kept: list[ChunkRule] = []
    for rule in rules:
        if not _can_share(techniques, rule):
            kept.append(rule)
            continue
        groups.setdefault((*_decoding(rule), rule.chunks), []).append(rule)
    kept += [members[0] for members in groups.values() if len(members) == 1]
    shared = [members for members in groups.values() if len(members) > 1]
    for number, members in enumerate(shared):
        first = members[0]
        jobs: list[str] = []
        for member in members:
            rest = list(member.arguments[HEAD_LENGTH:])
            at = rest.index("--image-list")
            del rest[at : at + 2]
            jobs += _job_text(member, rest)
        suffix = f"-{number}" if len(shared) > 1 else ""
        where = f"{first.model}/{SHARED_PASS}{suffix}"
        kept.append(
            ChunkRule(
                rule=slug(f"shared_pass_{first.model}{suffix.replace('-', '_')}"),
                technique=SHARED_PASS,
                model=first.model,
                setting="",
                chunks=first.chunks,
                arguments=(SHARED_PASS, *first.arguments[1:HEAD_LENGTH], "--image-list", first.image_list, *jobs),
                runtime=(),
                image_list=first.image_list,
                weights=first.weights,
                record=first.record,
                folder=first.folder,
                log=f"{results}/logs/{where}/{{chunk}}.log",
                benchmark=f"{results}/benchmarks/{where}/{{chunk}}.tsv",
                threads=first.threads,
                gpu=first.gpu,
                device=first.device,
                members=tuple(members),
            )
        )
    return kept


# A shared job's command carries each member's command as one argument; Linux refuses
# a single argument over 128 KiB (MAX_ARG_STRLEN) and a command over about 2 MB, and a
# pictures-layout member names every picture of its chunk.  Larger groups keep their
# jobs apart (chunk_size 256 with paths of usual length stays well under).
MAX_JOB_TEXT = 100_000
MAX_SHARED_COMMAND = 1_000_000


def share_job_passes(jobs: list[Job], techniques: Mapping[str, Technique], results: str) -> list[Job]:
    """The pictures layout's :func:`share_passes`: the jobs of one model and chunk whose
    settings can share one forward and backward and that decode the same images in the
    same batches, folded into one ``shared-pass`` job (in the place of the first of
    them), whose outputs are theirs; the others are kept as they are, and so are the
    jobs of a group whose command would be too long to start (:data:`MAX_JOB_TEXT`)."""
    groups: dict[tuple, list[Job]] = {}
    for job in jobs:
        if job.chunk is not None and _can_share(techniques, job):
            groups.setdefault((*_decoding(job), job.chunk, job.images), []).append(job)
    replaced: dict[int, Job | None] = {}  # id of a job -> the shared job in its place (None: folded in)
    numbers: dict[tuple[str, str | None], int] = {}
    for members in groups.values():
        if len(members) == 1:
            continue
        first = members[0]
        texts: list[str] = []
        for member in members:
            texts += _job_text(member, _without_images(member.arguments[HEAD_LENGTH:], member.images))
        longest, total = max(len(text.encode()) for text in texts), sum(len(text.encode()) for text in texts)
        if longest > MAX_JOB_TEXT or total + sum(len(image.encode()) for image in first.images) > MAX_SHARED_COMMAND:
            continue
        number = numbers.setdefault((first.model, first.chunk), 0)
        numbers[(first.model, first.chunk)] += 1
        name = SHARED_PASS + (f"-{number}" if number else "")
        where = f"{first.model}/{name}/{first.chunk}"
        replaced.update({id(member): None for member in members})
        replaced[id(first)] = replace(
            first,
            rule=slug(f"{name.replace('-', '_')}_{first.model}_{first.chunk}"),
            technique=SHARED_PASS,
            setting="",
            arguments=(
                SHARED_PASS,
                *first.arguments[1:HEAD_LENGTH],
                *[word for image in first.images for word in ("--image", image)],
                *texts,
            ),
            runtime=(),
            outputs=tuple(output for member in members for output in member.outputs),
            log=f"{results}/logs/{where}.log",
            benchmark=f"{results}/benchmarks/{where}.tsv",
            members=tuple(members),
        )
    kept = [replaced.get(id(job), job) for job in jobs]
    return [job for job in kept if job is not None]


def _can_share(techniques: Mapping[str, Technique], rule: ChunkRule | Job) -> bool:
    """Whether a rule's (or job's) setting can take its results from a shared pass."""
    technique = techniques.get(rule.technique)
    if technique is None or technique.shares_pass is None or technique.from_pass is None:
        return False
    values = {o.name: technique.option(o.name).parse(v) for o, v in _setting_values(technique, rule)}
    needs = technique.shares_pass(values)
    return needs is not None and not isinstance(needs, str)


def _decoding(rule: ChunkRule | Job) -> tuple:
    """What must be the same for rules to decode the same batches: model, size, max pixels, batch size."""
    return (
        rule.model,
        _option_value(rule.arguments, "--size"),
        _option_value(rule.arguments, "--max-pixels"),
        _option_value(rule.runtime, "--batch-size"),
    )


def _job_text(member: ChunkRule | Job, arguments: Sequence[str]) -> list[str]:
    """A member's ``--job`` text for the shared-pass command: its technique, the given
    arguments (the head and the images taken out) and its runtime options."""
    return ["--job", shlex.join([member.technique, *arguments, *member.runtime])]


def _without_images(arguments: Sequence[str], images: Sequence[str]) -> list[str]:
    """A job's arguments less its ``--image IMAGE`` pairs, in the order of ``images`` (a
    shared pass gives the images once); a value that only looks like one stays."""
    arguments = list(arguments)
    kept, at, position = [], 0, 0
    while position < len(arguments):
        word = arguments[position]
        if word == "--image" and at < len(images) and arguments[position + 1 : position + 2] == [images[at]]:
            at, position = at + 1, position + 2
            continue
        kept.append(word)
        position += 1
    return kept


def _setting_values(technique: Technique, rule: ChunkRule | Job) -> list[tuple[Any, str]]:
    """The repeatable options' values of a rule, as its command gives them."""
    return [
        (option, _option_value(rule.arguments, option.flag))
        for option in technique.repeatable
        if option.flag in rule.arguments
    ]


def make_plan(
    config: dict[str, Any],
    image_status: Sequence[Mapping[str, Any]],
    *,
    models: Mapping[str, ModelSpec] | None = None,
    gpu: bool = False,
    exists: Callable[[str], bool] | None = os.path.exists,
) -> Plan:
    """The plan of a checked config (:func:`cnnvis_tasks.workflow.config.check_config`)
    over ``image_status`` (:func:`cnnvis_tasks.image_list.check_images`, plus skipped files).

    ``models``: each model as :func:`~cnnvis_tasks.workflow.model_check.resolve_models`
    found it (its classes resolve the labels; None: as the config describes them,
    labels unchecked).  ``gpu``: compute jobs ask for a GPU.  ``exists`` tells which outputs exist,
    for :attr:`Plan.missing`; None leaves that empty (a job Snakemake started,
    which builds no gallery)."""
    usable = [record for record in image_status if record["status"] == "ok"]
    count = chunk_count(len(image_status), config["chunk_size"], config["chunk_count"])
    layout = config.get("layout", "pictures")
    plan = Plan(
        results=config["results"].rstrip("/") or ".",
        statuses=[dict(record) for record in image_status],
        images={record["name"]: str(record["path"]) for record in usable},
        labels={record["name"]: record.get("label") for record in usable},
        chunks=make_chunks([record["name"] for record in usable], count),
        manifest=config["images"].get("manifest"),
        layout=layout,
        chunk_count=count,
        fingerprints={record["name"]: record.get("fingerprint") for record in usable} if layout == "chunks" else {},
        boxes={record["name"]: record["box"] for record in usable if record.get("box")},
    )
    if models is None:
        models = {name: _unresolved(config, name) for name in config["models"]}
    planner = _Planner(config, plan, {r["name"]: r.get("size") for r in usable}, models, gpu=gpu, exists=exists)
    for technique, settings in enabled_techniques(config):
        for model in settings["models"]:
            if model not in plan.models:
                plan.models.append(model)
            if technique.reads_images and layout == "chunks":
                planner.per_image_chunked(technique, settings, model)
            elif technique.reads_images:
                planner.per_image(technique, settings, model)
            else:
                planner.without_images(technique, settings, model)
    if config.get("share_passes", True):
        techniques = {t.name: t for t in all_techniques()}
        if layout == "chunks":
            plan.chunk_rules = share_passes(plan.chunk_rules, techniques, plan.results)
        else:
            plan.jobs = share_job_passes(plan.jobs, techniques, plan.results)
    plan.label_problems = planner.unusable_labels()
    for model in plan.models:
        if layout == "chunks":
            if plan.chunks:
                planner.add_chunk_rule(PREDICTIONS, model, "", planner.prediction_size(model), [], None)
        else:
            planner.predictions(model)
    return plan


def _unresolved(config: dict[str, Any], name: str) -> ModelSpec:
    """A model as the config describes it, where it was not loaded: its fixed input size
    as the model's name says (torchvision's ViTs), its classes unknown."""
    from dataclasses import replace

    spec = model_spec(config, name)
    side = spec.input_size or fixed_input_size(spec.target, spec.weights)
    return replace(spec, classes=None, input_size=side)


def image_source_arguments(config: Mapping[str, Any]) -> list[str]:
    """The configured image source as ``check-images`` options."""
    source = config["images"]
    for key, flag in (("folder", "--folder"), ("glob", "--glob"), ("manifest", "--manifest")):
        if source.get(key):
            return [flag, str(source[key])]
    raise ValueError("no image source in the config")
