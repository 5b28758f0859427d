"""Each technique's jobs, as data (:class:`~cnnvis_tasks.workflow.jobs.Job`), and the gallery's tables.

A technique over images gives one job per model, setting and chunk (the
pictures layout: every picture named) or one rule per model and setting over
every chunk (the chunk layout: a folder per chunk); a technique without images
one job per model and setting; a model one predictions job per chunk.  An
image's per-image values (its label where ``target: label``, the columns its
technique reads, such as a box) ride in its row of the job.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from cnnvis_tasks.errors import CnnvisError
from cnnvis_tasks.io.columns import COLUMNS
from cnnvis_tasks.io.images import size_problem
from cnnvis_tasks.io.list_file import IMAGE_LIST_FILE_NAME
from cnnvis_tasks.models.labels import resolve_label
from cnnvis_tasks.models.spec import ModelSpec
from cnnvis_tasks.technique import SIZE, Technique, slug
from cnnvis_tasks.techniques import all_techniques
from cnnvis_tasks.workflow.config import ConfigError, enabled_techniques, technique_max_pixels
from cnnvis_tasks.workflow.jobs import PREDICTIONS, CommandRow, Job, Output, declarable
from cnnvis_tasks.workflow.model_check import model_file, model_inputs
from cnnvis_tasks.workflow.settings import (
    job_settings,
    labelled_target,
    picture_key,
    repeated_options,
    single_options,
)
from cnnvis_tasks.workflow.summary import PREDICTION_TOP

RAW = "raw"
# Below the results folder: the record of a job over images, and a chunk's predictions.
RECORD_PATTERN = "records/{model}/{technique}/{setting}/{chunk}.json"
PREDICTIONS_PATTERN = "records/{model}/predictions/{chunk}.csv"
# The chunk layout: each chunk's image list, and each job's folder of pictures.
IMAGE_LIST_PATTERN = "chunk-lists/{chunk}.csv"
CHUNK_FOLDER_PATTERN = "chunks/{model}/{technique}/{setting}/{chunk}"
CHUNK_FILE_NAME = IMAGE_LIST_FILE_NAME  # inside a chunk's folder: the command's default with --image-list


class Planner:
    """Adds each technique's jobs and gallery table to a :class:`~cnnvis_tasks.workflow.plan.Plan`."""

    def __init__(
        self,
        config: dict[str, Any],
        plan: Any,
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

    def weights_files(self, model: str) -> tuple[str, ...]:
        """The model's file and its weights file, when it has one (inputs: a changed
        description or a new weights file re-runs its jobs)."""
        spec = self.models[model]
        return (model_file(self.results, spec), *model_inputs(spec))

    # --- labels -------------------------------------------------------------------------

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

    # --- jobs -----------------------------------------------------------------------------

    def job(self, technique: Technique | None, name: str, model: str, setting: str, chunk: str | None, **fields):
        """A job of ``model`` with its log and benchmark in folders of their own (the chunk
        layout: ``{chunk}`` in them); ``fields``: the rest of :class:`Job`."""
        where = "/".join(part for part in (model, name, setting, chunk) if part)
        if fields.get("chunks"):
            where += "/{chunk}"
        runs_model = technique.runs_model if technique is not None else True
        return Job(
            rule=slug("_".join(part for part in (name.replace("-", "_"), model, setting, chunk) if part)),
            technique=name,
            model=model,
            setting=setting,
            chunk=chunk,
            model_file=model_file(self.results, self.models[model]),
            seed=self.config["seed"],
            weights=self.weights_files(model),
            log=f"{self.results}/logs/{where}.log",
            benchmark=f"{self.results}/benchmarks/{where}.tsv",
            threads=self.config["threads"] if runs_model or fields.get("chunks") else 1,
            gpu=1 if self.gpu and (runs_model or fields.get("chunks")) else 0,
            device=self.config["device"] if runs_model or fields.get("chunks") else "cpu",
            description=technique,
            **fields,
        )

    def add(self, job: Job) -> None:
        """A job into the plan; notes its first missing output after the record (pictures layout)."""
        if job.chunks:
            self.plan.chunk_rules.append(job)
            return
        self.plan.jobs.append(job)
        reduced = job.description is not None and job.description.reduction is not None  # its reduce asks for it
        if self.exists is not None and not reduced:
            missing = next((o.path for o in job.outputs[1:] if not self.exists(o.path)), None)
            if missing:
                self.plan.missing.append(missing)

    def runtime(self, runtime: list[tuple[str, Any]]) -> tuple[tuple[str, Any], ...]:
        return (*runtime, ("png_level", self.config["png_level"]))

    def add_technique_job(
        self,
        technique: Technique,
        model: str,
        setting: str,
        chunk: str | None,
        options: list[tuple[str, Any]],
        runtime: list[tuple[str, Any]],
        rows: list[CommandRow],
        outputs: list[Output],
        reduced: str | None = None,
    ) -> None:
        """A job of the pictures layout (or of a technique without images) with its rows,
        its record first among its outputs (:data:`RECORD_PATTERN` for jobs over images);
        ``reduced``: a reducing technique's one file (``--out``)."""
        where = "/".join(part for part in (model, technique.name, setting, chunk) if part)
        record = f"{self.results}/records/{where}.json"
        fields = {"options": tuple(options), "runtime": self.runtime(runtime), "rows": tuple(rows)}
        if reduced is not None:
            fields["job_outputs"] = (("--out", reduced),)
        outputs = (Output(record), *outputs)
        self.add(self.job(technique, technique.name, model, setting, chunk, record=record, outputs=outputs, **fields))

    def per_image(self, technique: Technique, settings: Mapping[str, Any], model: str) -> None:
        """The pictures layout: per setting and chunk, one job naming every picture."""
        columns = []
        folder = f"{self.results}/{model}/{technique.name}"
        left_out = self.left_out(technique, settings, model)
        labelled = labelled_target(technique, settings)
        for values in job_settings(technique, settings, settings["models"][model]):
            setting = technique.setting_name(values)
            options, runtime = single_options(technique, settings, values)
            options += repeated_options(technique, values)
            options += [("max_pixels", technique_max_pixels(self.config, settings))]
            labels = {o.name: o.token(values[o.name]) for o in technique.repeatable}
            for chunk, names in self.plan.chunks.items():
                names = [name for name in names if name not in left_out]
                if not names:
                    continue
                given = [c for c in technique.columns if any(c in self.plan.columns.get(n, {}) for n in names)]
                rows, outputs = [], []
                for name in names:
                    values_of_row = [("target", str(self.plan.labels[name]))] if labelled else []
                    own = self.plan.columns.get(name, {})
                    values_of_row += [(c, COLUMNS[c].text(own[c]) if c in own else "none") for c in given]
                    stem = f"{folder}/{name}/{setting}"
                    files = self.files(technique, settings, stem, {"image": name} | labels, model)
                    rows.append(
                        CommandRow(
                            image=self.plan.images[name],
                            values=tuple(values_of_row),
                            outputs=tuple((flag, output.path) for flag, output, _ in files),
                        )
                    )
                    outputs += [output for _, output, _ in files]
                self.add_technique_job(technique, model, setting, chunk, options, runtime, rows, outputs)
            for _, output, rendering in self.files(technique, settings, f"{folder}/{{image}}/{setting}", {}, model):
                if rendering != RAW:
                    columns.append(
                        {
                            "key": picture_key(technique, setting, rendering),
                            "label": self.column_label(technique, model, values, rendering),
                            "path": self.relative(output.path),
                            "setting": setting,
                        }
                    )
        self.plan.gallery_tables.append(
            {"section": technique.name, "table": model, "per_image": True, "columns": columns, "failures": left_out}
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
            options, runtime = single_options(technique, settings, values)
            options += repeated_options(technique, values)
            options += [("max_pixels", technique_max_pixels(self.config, settings))]
            options += [("target", "label")] if labelled else []
            options += [("rendering", rendering) for rendering in [*renderings, *([RAW] if settings["raw"] else [])]]
            parts = {"model": model, "technique": technique.name, "setting": setting or "-", "chunk": "{chunk}"}
            folder = f"{self.results}/" + CHUNK_FOLDER_PATTERN.format(**parts)
            self.add_chunk_job(technique, technique.name, model, setting, options, runtime, folder)
            for rendering in renderings:
                picture = CHUNK_FILE_NAME.format(name="{image}", rendering=rendering, ext="png")
                columns.append(
                    {
                        "key": picture_key(technique, setting, rendering),
                        "label": self.column_label(technique, model, values, rendering),
                        "path": self.relative(f"{folder}/{picture}"),
                        "setting": setting,
                    }
                )
        self.plan.gallery_tables.append(
            {"section": technique.name, "table": model, "per_image": True, "columns": columns, "failures": {}}
        )

    def add_chunk_job(
        self,
        technique: Technique | None,
        name: str,
        model: str,
        setting: str,
        options: list[tuple[str, Any]],
        runtime: list[tuple[str, Any]],
        folder: str | None,
        reduced: str | None = None,
    ) -> None:
        """The chunk layout's jobs of a technique, model and setting (or a model's
        predictions): one rule over every chunk (``{chunk}`` in its paths); ``reduced``: a
        reducing technique's one file per chunk (``--out``), instead of a folder."""
        image_list = f"{self.results}/" + IMAGE_LIST_PATTERN
        if name == PREDICTIONS:
            record = f"{self.results}/" + PREDICTIONS_PATTERN.format(model=model, chunk="{chunk}")
            fields: dict[str, Any] = {"job_outputs": (("--out", record),), "runtime": tuple(runtime)}
        else:
            where = "/".join(part for part in (model, name, setting) if part)
            record = f"{self.results}/records/{where}/{{chunk}}.json"  # RECORD_PATTERN
            fields = {"job_outputs": (("--out-dir", folder or ""),), "record": record, "runtime": self.runtime(runtime)}
            if reduced is not None:
                fields["job_outputs"] = (("--out", reduced),)
        job = self.job(
            technique,
            name,
            model,
            setting,
            None,
            options=tuple(options),
            image_list=image_list,
            outputs=(Output(record), *((Output(reduced),) if reduced is not None else ())),
            folder=folder,
            chunks=tuple(self.plan.chunks),
            **fields,
        )
        braces = [a for a in (*job.arguments, *job.weights) if not declarable(a.replace("{chunk}", ""))]
        if braces:
            raise ConfigError(
                f"config error: layout: chunks: {braces[0]!r} holds a brace, which Snakemake would read as a "
                "wildcard; rename it, or use layout: pictures"
            )
        self.add(job)

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
            options, runtime = single_options(technique, settings, values)
            options += repeated_options(technique, own)
            command_rows, outputs = [], []
            for value in items:
                row_values = own | ({item.name: value} if by_item else {})
                stem = f"{self.results}/{model}/{technique.name}/{technique.setting_name(row_values)}"
                labels = {o.name: o.token(row_values[o.name]) for o in technique.repeatable if o.name in row_values}
                row_key, row_label = (str(value), item.label(value)) if by_item else (technique.name, model)
                row = rows.setdefault(row_key, {"key": row_key, "label": row_label, "cells": []})
                files = self.files(technique, settings, stem, labels, model)
                command_rows.append(
                    CommandRow(
                        values=((item.name, str(value)),) if by_item else (),
                        outputs=tuple((flag, output.path) for flag, output, _ in files),
                    )
                )
                for _flag, output, rendering in files:
                    outputs.append(output)
                    if rendering != RAW:
                        row["cells"].append(
                            {
                                "key": picture_key(technique, setting, rendering),
                                "path": self.relative(output.path),
                                "label": self.column_label(technique, model, own, rendering),
                            }
                        )
            self.add_technique_job(technique, model, setting, None, options, runtime, command_rows, outputs)
        self.plan.gallery_tables.append(
            {"section": technique.name, "table": model, "per_image": False, "rows": list(rows.values())}
        )

    def prediction_size(self, model: str) -> list[tuple[str, Any]]:
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
        return [] if size == SIZE.default else [("size", size)]

    def predictions(self, model: str) -> None:
        """Each chunk's top-1 classes and probabilities, and its labels' classes, for summary.csv
        (and each image's top-5, for the gallery's image pages)."""
        if self.plan.layout == "chunks":
            if self.plan.chunks:
                options = [*self.prediction_size(model), ("top", PREDICTION_TOP)]
                self.add_chunk_job(None, PREDICTIONS, model, "", options, [], None)
            return
        for chunk, names in self.plan.chunks.items():
            output = Output(f"{self.results}/" + PREDICTIONS_PATTERN.format(model=model, chunk=chunk))
            rows = [
                CommandRow(image=self.plan.images[name], values=(("label", self.plan.labels.get(name) or ""),))
                for name in names
            ]
            self.add(
                self.job(
                    None,
                    PREDICTIONS,
                    model,
                    "",
                    chunk,
                    options=(*self.prediction_size(model), ("top", PREDICTION_TOP)),
                    runtime=(),
                    rows=tuple(rows),
                    job_outputs=(("--out", output.path),),
                    outputs=(output,),
                )
            )
