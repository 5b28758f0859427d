"""The Snakemake workflow's logic, importable and testable without Snakemake.

``rules/*.smk`` call :func:`load_plan` once and declare a rule for each job of
the plan; everything they declare comes from here: the checked config
(:mod:`.config`), the images and their chunks, the jobs and the gallery's
tables (:mod:`.plan`), and the facts of the machine (:mod:`.environment`).
Imports neither torch nor snakemake.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from ..errors import CnnvisError
from .config import ConfigError, check_config, full_schema
from .environment import put_on_path, uses_gpu
from .plan import Job, Output, Plan, chunk_of, image_source_arguments, make_plan

__all__ = [
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


def load_plan(config: dict[str, Any], *, main_process: bool = True) -> Plan:
    """Check ``config`` (defaults filled in, in place), list and check its images,
    and plan every job.  ``main_process``: the Snakemake the user started (not a
    job it started on a cluster): checks model names and notes missing outputs."""
    from ..image_list import check_images, list_images

    check_config(config, check_model_names=main_process)
    # Jobs run the cnnvis-tasks of the Python environment Snakemake runs in, activated or not.
    put_on_path(os.path.dirname(sys.executable), "cnnvis-tasks")
    source = config["images"]
    try:
        paths = list_images(
            folder=source.get("folder"),
            pattern=source.get("glob"),
            manifest=source.get("manifest"),
            extensions=source["extensions"],
        )
        # Decoding every image is cheap and cached (size, mtime), so it is done here,
        # when the workflow is read: bad images never enter a chunk.
        status = check_images(paths, cache=f"{config['results'].rstrip('/') or '.'}/.cache/image-check.json")
    except CnnvisError as error:
        raise ConfigError(f"config error: images: {error}") from None
    return make_plan(config, status, gpu=uses_gpu(config["device"]), exists=os.path.exists if main_process else None)
