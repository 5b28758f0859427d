"""The jobs of a technique that reduces the data set (:mod:`cnnvis_tasks.technique.reduction`).

Per model and setting: one *map* job per chunk (the pictures layout: its images
named; the chunk layout: one rule over the chunks) that writes its chunk's file
beside its record, and one *reduce* job (:class:`ReduceJob`, a rule of
``rules/gallery.smk``) that merges every chunk's file into a folder the gallery
reads.  A new image changes only its chunk, so only that chunk's map job and the
reduce run again.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cnnvis_tasks.technique import Technique, slug
from cnnvis_tasks.workflow.config import technique_max_pixels
from cnnvis_tasks.workflow.jobs import CommandRow, Output
from cnnvis_tasks.workflow.settings import job_settings, repeated_options, single_options

# Below the results folder: the reduce's folder (the map's files lie beside the records)
REDUCED_FOLDER = "{model}/{technique}/{setting}"


@dataclass(frozen=True)
class ReduceJob:
    """The reduce of one model and setting: every chunk's file into one folder."""

    rule: str
    technique: str
    model: str
    setting: str
    labels: tuple[str, ...]  # the setting as the gallery names it ("layer _blocks.4")
    inputs: tuple[str, ...]  # each chunk's file
    model_inputs: tuple[str, ...]  # the model's file and weights
    folder: str
    arguments: tuple[str, ...]  # of cnnvis-tasks, before the chunks' files
    log: str
    benchmark: str
    threads: int
    gpu: int
    device: str

    @property
    def command(self) -> str:
        return " ".join(shlex.quote(word) for word in self.arguments)

    def spec_entry(self, results: str, title: str) -> dict[str, Any]:
        """What the gallery is told of it (its folder relative to the results)."""
        import os

        return {
            "technique": self.technique,
            "title": title,
            "model": self.model,
            "setting": self.setting,
            "labels": list(self.labels),
            "folder": os.path.relpath(self.folder, results),
        }


def plan_reduced(planner: Any, technique: Technique, settings: Mapping[str, Any], model: str) -> None:
    """A reducing technique's map jobs (both layouts) and reduce jobs, into ``planner.plan``."""
    plan, results = planner.plan, planner.results
    suffix = technique.reduction.suffix
    chunked = plan.layout == "chunks"
    left_out = {} if chunked else planner.left_out(technique, settings, model)
    for values in job_settings(technique, settings, settings["models"][model]):
        setting = technique.setting_name(values)
        options, runtime = single_options(technique, settings, values)
        options += repeated_options(technique, values)
        options += [("max_pixels", technique_max_pixels(planner.config, settings))]
        where = "/".join(part for part in (model, technique.name, setting) if part)
        files = []
        if chunked:
            if not plan.chunks:
                continue
            reduced = f"{results}/records/{where}/{{chunk}}{suffix}"
            planner.add_chunk_job(technique, technique.name, model, setting, options, runtime, None, reduced)
            files = [reduced.format(chunk=chunk) for chunk in plan.chunks]
        else:
            for chunk, names in plan.chunks.items():
                rows = [CommandRow(image=plan.images[name]) for name in names if name not in left_out]
                if not rows:
                    continue
                reduced = f"{results}/records/{where}/{chunk}{suffix}"
                planner.add_technique_job(
                    technique, model, setting, chunk, options, runtime, rows, [Output(reduced)], reduced
                )
                files.append(reduced)
        if not files:
            continue
        folder = f"{results}/" + REDUCED_FOLDER.format(model=model, technique=technique.name, setting=setting or "-")
        size = dict(options).get("size")
        job = planner.job(
            technique, technique.reduction.command, model, setting, None, options=(), runtime=(), outputs=()
        )
        arguments = (
            technique.reduction.command,
            "--model-file",
            job.model_file,
            "--seed",
            str(job.seed),
            "--images",
            plan.image_status_file,
            "--out-dir",
            folder,
            *(("--size", str(size)) if size is not None else ()),
            *(
                word
                for option in technique.reduction.options
                if settings.get(option.config_key) is not None
                for word in (option.flag, str(settings[option.config_key]))
            ),
        )
        plan.reductions.append(
            ReduceJob(
                rule=slug(f"{technique.reduction.command}_{model}_{setting}"),
                technique=technique.name,
                model=model,
                setting=setting,
                labels=tuple(technique.setting_labels(values)),
                inputs=tuple(files),
                model_inputs=job.weights,
                folder=folder,
                arguments=arguments,
                log=job.log,
                benchmark=job.benchmark,
                threads=job.threads,
                gpu=job.gpu,
                device=job.device,
            )
        )
