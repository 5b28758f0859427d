"""The Snakemake workflow's logic, importable and testable without Snakemake.

``rules/*.smk`` call :func:`load_plan` once and declare a rule for each job of
the plan; everything they declare comes from here: the checked config
(:mod:`.config`), the images and their chunks, the jobs and the gallery's
tables (:mod:`.plan`), and the facts of the machine (:mod:`.environment`).
Imports neither torch nor snakemake.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
from collections.abc import Iterator
from typing import Any

from cnnvis_tasks.errors import CnnvisError
from cnnvis_tasks.workflow.config import ConfigError, check_config, full_schema
from cnnvis_tasks.workflow.environment import gpu_visible, put_on_path, uses_gpu
from cnnvis_tasks.workflow.jobs import Job, Output
from cnnvis_tasks.workflow.plan import (
    CHUNK_WILDCARD,
    Plan,
    chunk_of,
    image_source_arguments,
    make_plan,
)

__all__ = [
    "CHUNK_WILDCARD",
    "check_device",
    "ConfigError",
    "Job",
    "Output",
    "Plan",
    "check_config",
    "chunk_of",
    "full_schema",
    "image_source_arguments",
    "load_plan",
    "make_plan",
]


def check_device(config: dict[str, Any], *, local: bool) -> None:
    """``device: cuda`` needs a GPU here when the jobs run here (``local``: Snakemake's
    executor is known only once a run starts, so this runs at its start)."""
    if local and config["device"].startswith("cuda") and not gpu_visible():
        raise ConfigError(
            f"config error: device: {config['device']}, but this machine shows no CUDA GPU to Snakemake; "
            "use device: cpu or auto, or run the jobs on a cluster (--workflow-profile profiles/slurm)"
        )


@contextlib.contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """Python's cycle collector off while the images are listed and planned, and what
    that made frozen after.

    A million images make millions of dicts, lists and strings, none of them in a
    cycle; the collector would walk all of them again and again while they are made
    (a third of the start of a 1,000,000-image workflow), and then at every later
    collection while Snakemake builds its DAG.  Reference counting still frees them.
    One collection before (cheap: the plan is not made yet) frees the cycles made so
    far, such as the model architecture the layer check builds, so that the freeze
    keeps none of them for good."""
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
        gc.freeze()


def load_plan(config: dict[str, Any], *, main_process: bool = True) -> Plan:
    """Check ``config`` (defaults filled in, in place), list and check its images,
    and plan every job.  ``main_process``: the Snakemake the user started (not a
    job it started on a cluster): checks model names and notes missing outputs."""
    check_config(config, check_model_names=main_process)
    check_results_folder(config["results"])
    results = config["results"].rstrip("/") or "."
    # Jobs run the cnnvis-tasks of the Python environment Snakemake runs in, activated or not.
    put_on_path(os.path.dirname(sys.executable), "cnnvis-tasks")
    with _no_cycle_collection():
        return _plan_images(config, results, main_process)


def _plan_images(config: dict[str, Any], results: str, main_process: bool) -> Plan:
    """:func:`load_plan` once the config is checked: the images listed and checked, the plan."""
    from cnnvis_tasks.io.image_list import check_images, list_images, listed_images, skipped_records

    source = config["images"]
    try:
        listing = list_images(
            folder=source.get("folder"),
            pattern=source.get("glob"),
            manifest=source.get("manifest"),
            extensions=source["extensions"],
        )
        if config["layout"] == "chunks" and not config["strict_images"]:
            # A million header reads cost a minute; the chunk jobs decode every image,
            # and one that cannot be read fails there, alone (the image_status job
            # reads the headers for the summary).
            statuses = listed_images(listing.images)
        else:
            # In the pictures layout every image is decoded here, when the workflow is
            # read (cheap, and cached by size and time): an image that cannot be used
            # never becomes a job.  strict_images in the chunk layout reads the headers.
            statuses = check_images(
                listing.images, cache=f"{results}/.cache/image-check.json", decode=config["layout"] != "chunks"
            )
    except CnnvisError as error:
        raise ConfigError(f"config error: images: {error}") from None
    bad = [record for record in statuses if record["status"] != "ok"]
    if bad and config["strict_images"]:
        shown = "; ".join(f"{record['name']}: {record['reason']}" for record in bad[:3])
        more = f" (and {len(bad) - 3} more)" if len(bad) > 3 else ""
        counted = "1 image cannot" if len(bad) == 1 else f"{len(bad)} images cannot"
        raise ConfigError(f"config error: strict_images: {counted} be used: {shown}{more}")
    models = _checked_models(config, results, statuses, main_process)
    statuses += skipped_records(listing)
    plan = make_plan(
        config,
        statuses,
        models=models,
        gpu=uses_gpu(config["device"]),
        exists=os.path.exists if main_process else None,
    )
    if main_process and plan.layout == "chunks":
        prepare_chunks(plan, verify=config["verify_pictures"])
    return plan


def _checked_models(config: dict[str, Any], results: str, statuses: list[dict[str, Any]], main_process: bool):
    """Each model loaded as its jobs will (cached), its file written for them, and what the
    config asks of it checked: ``classes: {from: folders}`` reads the source's class folders."""
    from cnnvis_tasks.workflow.model_check import check_models, resolve_models

    folder = config["images"].get("folder")
    labels = {record["label"] for record in statuses if record.get("label")}
    models, loaded = resolve_models(
        config, results, folder_root=folder, folder_labels=labels, main_process=main_process
    )
    if loaded:
        gc.collect()  # a model held by a reference cycle would stay for the run: the collector is off here
    if main_process:
        check_models(config, models, f"{results}/.cache/model-check.json")
    return models


def prepare_chunks(plan: Plan, verify: bool = False) -> None:
    """The chunk layout, at the start of a run: write the image lists that changed, and
    ask for every job whose record or folder is missing, or whose folder of pictures
    changed since it ran (its record is removed: the job runs again); ``verify`` also
    looks at every picture (config ``verify_pictures``).  Snakemake
    re-runs a job for a missing output only when that output is asked for."""
    from cnnvis_tasks.workflow.chunks import missing_records, stale_records, write_image_lists

    try:
        write_image_lists(plan)
    except OSError as error:
        raise ConfigError(f"config error: results: cannot write the chunks' image lists: {error}") from None
    for record, why in stale_records(plan, verify):
        print(f"cnnvis: {record}: {why}; this chunk's job runs again", file=sys.stderr)
        try:
            os.remove(record)
        except OSError:
            pass
    plan.missing += missing_records(plan)


def check_results_folder(results: str) -> None:
    """``results`` is a folder inside the working directory, or an absolute path other than /."""
    path = os.path.normpath(results)
    if os.path.isabs(path):
        if path == os.sep or os.path.dirname(path) == path:
            raise ConfigError(f"config error: results: {results!r} is the file system's root; name a folder")
        return
    if path == ".":
        raise ConfigError(f"config error: results: {results!r} is the working directory itself; name a folder in it")
    if path == ".." or path.startswith(".." + os.sep):
        raise ConfigError(
            f"config error: results: {results!r} leaves the working directory; give a folder "
            "inside it, or an absolute path"
        )
