"""The workflow's plan: images -> chunks -> jobs -> outputs, and the gallery's tables.

Everything the Snakemake rules declare is computed here, from a checked config
and the image list, so that it can be tested without Snakemake:

* images are listed and checked (decoding is cached); bad ones get a failing
  job of their own instead of results;
* good images go to chunks by a stable hash of their name, so adding an image
  changes only its chunk;
* each technique gives one job per model, setting (one value of each
  repeatable option, except those marked ``together``) and chunk of images
  (techniques without images: per model and setting), with its command line,
  inputs, outputs, log and benchmark;
* the gallery gets one table per technique and model.

Result paths: ``RESULTS/MODEL/TECHNIQUE/IMAGE/SETTING[-RENDERING].png`` for
techniques that read images, ``RESULTS/MODEL/TECHNIQUE/SETTING[-RENDERING].png``
for the others, ``.npy`` for raw arrays (see results/README.md).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..technique import BOOL, COMMAND_ONLY, MODEL_LEVEL, Technique, slug
from ..techniques import all_techniques
from .config import enabled_techniques, model_weights

RAW = "raw"


@dataclass(frozen=True)
class Output:
    """A file a job writes; ``report`` holds its Snakemake report labels (pictures only)."""

    path: str
    report: dict[str, Any] | None = None


@dataclass(frozen=True)
class Job:
    """One job: a technique, a model, a setting and (for techniques that read images) a chunk."""

    rule: str
    technique: str
    model: str
    setting: str
    chunk: str | None
    arguments: tuple[str, ...]  # of `cnnvis-tasks`, without --device and --threads
    images: tuple[str, ...]
    weights: tuple[str, ...]  # a weights file, when the model has one: a new file re-runs the job
    outputs: tuple[Output, ...]
    log: str
    benchmark: str
    threads: int
    gpu: int
    device: str

    @property
    def command(self) -> str:
        """The arguments, quoted for the shell."""
        return " ".join(shlex.quote(argument) for argument in self.arguments)


@dataclass
class Plan:
    results: str
    images: dict[str, str]  # name -> path, every image of the source
    bad_images: dict[str, str]  # name -> why it cannot be used
    chunks: dict[str, list[str]]  # chunk name -> names of its (good) images
    jobs: list[Job] = field(default_factory=list)
    gallery_tables: list[dict[str, Any]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # per job, its first missing output after the first
    manifest: str | None = None  # the image list, when the images come from one

    @property
    def image_check_inputs(self) -> list[str]:
        """What the image check reads: every image, and the manifest."""
        return [*self.images.values(), *([self.manifest] if self.manifest else [])]

    @property
    def gallery_page(self) -> str:
        return f"{self.results}/index.html"

    @property
    def image_status_file(self) -> str:
        return f"{self.results}/images.json"

    @property
    def gallery_inputs(self) -> list[str]:
        """What the gallery depends on: each job through its first output.  Naming every
        picture of tens of thousands of images would cost Snakemake seconds per
        thousand; Snakemake re-runs a job only for missing outputs that are asked
        for, so ``all`` also asks for :attr:`missing`."""
        return [job.outputs[0].path for job in self.jobs]

    @property
    def bad_image_targets(self) -> list[str]:
        return [self.bad_image_target(name) for name in self.bad_images]

    def bad_image_target(self, name: str) -> str:
        return f"{self.results}/logs/check-images/{name}.ok"

    @property
    def bad_image_pattern(self) -> str:
        """A wildcard constraint that matches exactly the bad images' names."""
        return "|".join(re.escape(name) for name in self.bad_images) or "(?!)"

    @property
    def image_check_cache(self) -> str:
        return f"{self.results}/.cache/image-check.json"

    @property
    def gallery_spec(self) -> str:
        """What the gallery command shows (its --spec)."""
        return json.dumps({"tables": self.gallery_tables}, sort_keys=True)


def chunk_count(image_count: int, chunk_size: int, pinned: int | None = None) -> int:
    """``pinned``, else the next power of two of images / chunk_size (when that grows,
    each chunk splits in two)."""
    if pinned:
        return pinned
    return 2 ** math.ceil(math.log2(max(1, math.ceil(image_count / chunk_size))))


def chunk_of(name: str, count: int) -> int:
    """An image's chunk: a stable hash of its name, so adding an image changes only its chunk."""
    return int(hashlib.sha1(name.encode("utf-8")).hexdigest(), 16) % count


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


def _scalar_arguments(technique: Technique, settings: Mapping[str, Any], job: Mapping[str, Any]) -> list[str]:
    """The technique's single-valued options as command-line arguments."""
    arguments: list[str] = []
    values = {
        o.name: settings[o.config_key]
        for o in technique.options
        if o.where not in (COMMAND_ONLY, MODEL_LEVEL) and not o.repeatable
    }
    if technique.job_options:
        values.update(technique.job_options(settings, job))
    for option in technique.options:
        if option.name not in values or values[option.name] is None:
            continue
        value = values[option.name]
        if option.kind == BOOL:
            arguments.append(option.flag if value else f"--{option.negative or 'no-' + option.name.replace('_', '-')}")
        else:
            arguments += [option.flag, str(value)]
    return arguments


# --- the plan ---------------------------------------------------------------------------


class _Planner:
    def __init__(
        self,
        config: dict[str, Any],
        images: dict[str, str],
        chunks: dict[str, list[str]],
        *,
        gpu: bool,
        exists: Callable[[str], bool] | None,
    ):
        self.config, self.images, self.chunks, self.gpu, self.exists = config, images, chunks, gpu, exists
        self.results = config["results"].rstrip("/") or "."
        self.category = {t.name: f"{position}. {t.title}" for position, t in enumerate(all_techniques(), start=1)}
        self.jobs: list[Job] = []
        self.tables: list[dict[str, Any]] = []
        self.missing: list[str] = []

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
            suffix = f"-{name}" if technique.several_renderings else ""
            report = {
                "category": self.category[technique.name],
                "subcategory": model,
                "labels": labels | ({"rendering": name} if technique.several_renderings else {}),
            }
            files.append((technique.output_flag(rendering), Output(f"{stem}{suffix}.png", report), name))
        if settings["raw"]:
            files.append(("--raw", Output(f"{stem}.npy"), RAW))
        return files

    def column_label(self, technique: Technique, model: str, values: Mapping[str, Any], rendering: str) -> list[str]:
        return [model, *technique.setting_labels(values)] + ([rendering] if technique.several_renderings else [])

    def add_job(
        self,
        technique: Technique,
        model: str,
        setting: str,
        chunk: str | None,
        arguments: list[str],
        images: list[str],
        outputs: list[Output],
    ) -> None:
        folder = f"{model}/{technique.name}/{setting}"
        where = f"{folder}/{chunk}" if chunk else folder
        weights = model_weights(self.config, model)
        runs_model = technique.runs_model
        job = Job(
            rule=slug(f"{technique.config_key}_{model}_{setting}" + (f"_{chunk}" if chunk else "")),
            technique=technique.name,
            model=model,
            setting=setting,
            chunk=chunk,
            arguments=(
                technique.name,
                "--model",
                model,
                "--weights",
                weights,
                "--seed",
                str(self.config["seed"]),
                *arguments,
            ),
            images=tuple(images),
            weights=(weights,) if weights not in ("default", "random") else (),
            outputs=tuple(outputs),
            log=f"{self.results}/logs/{where}.log",
            benchmark=f"{self.results}/benchmarks/{where}.tsv",
            threads=self.config["threads"] if runs_model else 1,
            gpu=1 if self.gpu and runs_model else 0,
            device=self.config["device"] if runs_model else "cpu",
        )
        self.jobs.append(job)
        if self.exists is not None:
            missing = next((o.path for o in job.outputs[1:] if not self.exists(o.path)), None)
            if missing:
                self.missing.append(missing)

    def per_image(self, technique: Technique, settings: Mapping[str, Any], model: str) -> None:
        columns = []
        folder = f"{self.results}/{model}/{technique.name}"
        for values in job_settings(technique, settings, settings["models"][model]):
            setting = technique.setting_name(values)
            options = _scalar_arguments(technique, settings, values)
            for option in technique.repeatable:
                options += [option.flag, str(values[option.name])]
            labels = {o.name: o.token(values[o.name]) for o in technique.repeatable}
            for chunk, names in self.chunks.items():
                arguments, outputs = list(options), []
                for name in names:
                    arguments += ["--image", self.images[name]]
                    for flag, output, _ in self.files(
                        technique, settings, f"{folder}/{name}/{setting}", {"image": name} | labels, model
                    ):
                        arguments += [flag, output.path]
                        outputs.append(output)
                self.add_job(technique, model, setting, chunk, arguments, [self.images[n] for n in names], outputs)
            for _, output, rendering in self.files(technique, settings, f"{folder}/{{image}}/{setting}", {}, model):
                if rendering != RAW:
                    key = f"{setting}-{rendering}" if technique.several_renderings else setting
                    columns.append(
                        {
                            "key": key,
                            "label": self.column_label(technique, model, values, rendering),
                            "path": self.relative(output.path),
                        }
                    )
        self.tables.append({"section": technique.name, "table": model, "per_image": True, "columns": columns})

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
            arguments = _scalar_arguments(technique, settings, values)
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
                        key = f"{setting}-{rendering}" if technique.several_renderings else setting
                        row["cells"].append(
                            {
                                "key": key,
                                "path": self.relative(output.path),
                                "label": self.column_label(technique, model, own, rendering),
                            }
                        )
            self.add_job(technique, model, setting, None, arguments, [], outputs)
        self.tables.append({"section": technique.name, "table": model, "per_image": False, "rows": list(rows.values())})


def make_plan(
    config: dict[str, Any],
    image_status: Sequence[Mapping[str, Any]],
    *,
    gpu: bool = False,
    exists: Callable[[str], bool] | None = os.path.exists,
) -> Plan:
    """The plan of a checked config (:func:`cnnvis_tasks.workflow.config.check_config`)
    over ``image_status`` (:func:`cnnvis_tasks.image_list.check_images`).

    ``gpu``: compute jobs ask for a GPU.  ``exists`` tells which outputs exist,
    for :attr:`Plan.missing`; None leaves that empty (a job Snakemake started,
    which builds no gallery)."""
    images = {record["name"]: str(record["path"]) for record in image_status}
    bad = {record["name"]: record["reason"] for record in image_status if record["status"] != "ok"}
    good = [record["name"] for record in image_status if record["status"] == "ok"]
    count = chunk_count(len(images), config["chunk_size"], config["chunk_count"])
    planner = _Planner(config, images, make_chunks(good, count), gpu=gpu, exists=exists)
    for technique, settings in enabled_techniques(config):
        for model in settings["models"]:
            if technique.reads_images:
                planner.per_image(technique, settings, model)
            else:
                planner.without_images(technique, settings, model)
    return Plan(
        results=planner.results,
        images=images,
        bad_images=bad,
        chunks=planner.chunks,
        jobs=planner.jobs,
        gallery_tables=planner.tables,
        missing=planner.missing,
        manifest=config["images"].get("manifest"),
    )


def image_source_arguments(config: Mapping[str, Any]) -> list[str]:
    """The configured image source as ``check-images`` options."""
    source = config["images"]
    for key, flag in (("folder", "--folder"), ("glob", "--glob"), ("manifest", "--manifest")):
        if source.get(key):
            return [flag, str(source[key])]
    raise ValueError("no image source in the config")
