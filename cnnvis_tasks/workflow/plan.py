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
:mod:`cnnvis_tasks.io.image_list`), ``RESULTS/MODEL/TECHNIQUE/SETTING[-RENDERING].png``
for the others, ``.npy`` for raw arrays; each job also writes its record,
``RESULTS/records/MODEL/TECHNIQUE/SETTING[/CHUNK].json`` (see results/README.md).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cnnvis_tasks.io.columns import COLUMNS
from cnnvis_tasks.models.names import fixed_input_size
from cnnvis_tasks.models.spec import ModelSpec
from cnnvis_tasks.techniques import all_techniques, get_technique
from cnnvis_tasks.workflow.class_tables import CONFUSION_NAME, PICTURE_FOLDER
from cnnvis_tasks.workflow.config import enabled_techniques, model_spec
from cnnvis_tasks.workflow.jobs import PREDICTIONS, Job, declarable, fingerprint
from cnnvis_tasks.workflow.planner import (
    IMAGE_LIST_PATTERN,
    PREDICTIONS_PATTERN,
    RECORD_PATTERN,
    Planner,
)
from cnnvis_tasks.workflow.reductions import ReduceJob, plan_reduced
from cnnvis_tasks.workflow.sharing import MAX_JOB_TEXT, share_passes

CHUNK_WILDCARD = r"chunk\d+of\d+"


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
    chunk_rules: list[Job] = field(default_factory=list)  # the chunk layout's jobs: one rule over every chunk each
    chunk_count: int = 1
    fingerprints: dict[str, Any] = field(default_factory=dict)  # name -> [bytes, mtime_ns] (chunk layout)
    # name -> its per-image inputs (column name -> value, cnnvis_tasks.io.columns), where the source gives any
    columns: dict[str, dict[str, Any]] = field(default_factory=dict)
    label_problems: dict[str, str] = field(default_factory=dict)  # name -> why its label names no class of a model
    reductions: list[ReduceJob] = field(default_factory=list)  # reducing techniques' merges (the channel atlas)

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
                **{column: COLUMNS[column].to_json(value) for column, value in self.columns.get(name, {}).items()},
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
    def gallery_extra_pages(self) -> list[str]:
        """The pages the gallery writes beside index.html: the image index and the views."""
        return [f"{self.results}/images.html", f"{self.results}/views.html"]

    @property
    def image_status_file(self) -> str:
        return f"{self.results}/images.json"

    @property
    def summary_file(self) -> str:
        return f"{self.results}/summary.csv"

    @property
    def class_table_file(self) -> str:
        """``per-class.csv``: per model and labelled class, its accuracy with an interval (class-summary)."""
        return f"{self.results}/per-class.csv"

    @property
    def confusion_file(self) -> str:
        """``confusion.csv``, beside :attr:`class_table_file`: every (label, predicted) pair's count per model."""
        return f"{self.results}/{CONFUSION_NAME}"

    @property
    def confusion_pictures(self) -> dict[str, str]:
        """Model -> its confusion picture, ``confusion/MODEL.png`` beside :attr:`class_table_file`."""
        return {model: f"{self.results}/{PICTURE_FOLDER}/{model}.png" for model in self.models}

    @property
    def records(self) -> list[str]:
        """Each job's record (its first output): what ``summary.csv`` is made from.  The
        gallery depends on the jobs through these alone: naming every picture of tens
        of thousands of images would cost Snakemake seconds per thousand; Snakemake
        re-runs a job only for missing outputs that are asked for, so ``all`` also
        asks for :attr:`missing`."""
        return [record for job in [*self.jobs, *self.chunk_rules] for record in job.records]

    @property
    def table_records(self) -> dict[str, list[str]]:
        """Per technique whose description declares a table (``Technique.table``): its jobs'
        records, what its summary files are made from (in plan order; none: not listed)."""
        tables = {technique.name for technique in all_techniques() if technique.table is not None}
        found: dict[str, list[str]] = {}
        for job in [*self.jobs, *self.chunk_rules]:
            for part in job.parts:
                if part.technique in tables:
                    found.setdefault(part.technique, []).extend(part.records)
        return found

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
            if (job.chunk is not None or job.chunks) and job.technique != PREDICTIONS
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
            "reductions": [
                job.spec_entry(self.results, get_technique(job.technique).reduction.title) for job in self.reductions
            ],
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
            from cnnvis_tasks.io.outputs import atomic_write

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


def make_plan(
    config: dict[str, Any],
    image_status: Sequence[Mapping[str, Any]],
    *,
    models: Mapping[str, ModelSpec] | None = None,
    gpu: bool = False,
    exists: Callable[[str], bool] | None = os.path.exists,
) -> Plan:
    """The plan of a checked config (:func:`cnnvis_tasks.workflow.config.check_config`)
    over ``image_status`` (:func:`cnnvis_tasks.io.image_list.check_images`, plus skipped files).

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
        columns={record["name"]: given for record in usable if (given := _columns(record))},
    )
    if models is None:
        models = {name: _unresolved(config, name) for name in config["models"]}
    planner = Planner(config, plan, {r["name"]: r.get("size") for r in usable}, models, gpu=gpu, exists=exists)
    for technique, settings in enabled_techniques(config):
        for model in settings["models"]:
            if model not in plan.models:
                plan.models.append(model)
            if technique.reduction is not None:
                plan_reduced(planner, technique, settings, model)
            elif technique.reads_images and layout == "chunks":
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
            plan.jobs = share_passes(plan.jobs, techniques, plan.results)
    plan.label_problems = planner.unusable_labels()
    for model in plan.models:
        planner.predictions(model)
    return plan


def _columns(record: Mapping[str, Any]) -> dict[str, Any]:
    """An image record's per-image inputs: column name -> value."""
    return {name: column.from_json(record[name]) for name, column in COLUMNS.items() if record.get(name)}


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
