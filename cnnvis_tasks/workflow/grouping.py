"""Fewer, larger cluster jobs: which compute jobs one cluster submission may run together.

On a cluster every Snakemake job is one ``sbatch``: a million images at ``chunk_size``
256 with five techniques and the predictions are some 24,600 jobs, past most
clusters' limit on queued jobs, each paying its own queue wait, Python, torch and
model load.  Snakemake's job groups put several jobs into one submission: each rule of
the chunk layout (``layout: chunks``: one rule per technique, model and setting, with
the chunk as its wildcard) is a group of its own, ``compute-RULE``
(:func:`cluster_group`), and ``--group-components compute=N``
(``profiles/slurm/config.yaml``) lets one submission run N of its chunks (N
"connected components": a compute job depends on no other job, so each is one).
The image check, the summary, the tables, the gallery and the jobs without images
(class visualisation, one per model and setting) belong to no group and stay one
submission each.  Groups count only where Snakemake submits jobs (a cluster, a dry
run); ``snakemake --cores N`` on one machine runs every job as without them.

Why one rule per group, and none in the pictures layout: Snakemake names a group job
by its group and its first five rules (the plugin's log folder,
``results/logs/slurm/group_NAME/``), and a group's text resources (``device``,
``runtime_options``) must be the same for all its jobs.  One rule's chunks share them
and give a short name; in the pictures layout every job is a rule of its own, and five
of those names pass the 255 bytes a folder name may have (the SLURM plugin, 2.8.0,
then never submits the group and the run waits for ever).  Every group takes its N
from the one ``compute`` entry (:func:`register` points it there), so that the
profile need not name the rules.

How a group's resources add up on SLURM (Snakemake's ``GroupResources.basic_layered``):
its jobs run side by side up to the limits ``--resources`` and ``--cores`` set, in
layers after that; ``threads``, ``mem_mb`` and ``gpu`` add up within a layer and take
the largest layer, ``runtime`` the longest job of a layer and adds up over the
layers.  The profile limits ``gpu`` to 1 per submission (``set-resource-scopes:
gpu=local``), so with ``device: cuda`` a submission runs its N jobs one after another
on one GPU (``--gpus=1``, the largest job's memory, the sum of their times); with
``device: cpu`` it runs them side by side (N x threads CPUs, N x the memory, the
longest time) up to ``--cores``.

Imports neither torch nor snakemake.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from cnnvis_tasks.workflow.jobs import Job
from cnnvis_tasks.workflow.plan import Plan

COMPUTE_GROUP = "compute"  # the name --group-components gives N for (profiles/slurm)


def group_id(job: Job) -> str | None:
    """The group of a compute rule: ``compute-RULE`` for a rule of the chunk layout (all
    its chunks), None (no group) for a job of its own (the pictures layout, a technique
    without images)."""
    return f"{COMPUTE_GROUP}-{job.rule}" if job.chunks else None


def register(workflow: Any, group: str) -> None:
    """Make ``--group-components compute=N`` apply to ``group``: Snakemake looks a
    group's N up under its parent's name (``Workflow.parent_groupids``, the template a
    group name with wildcards was made from).  Without it (another Snakemake) each
    group would need an entry of its own."""
    parents = getattr(workflow, "parent_groupids", None)
    if isinstance(parents, dict) and group != COMPUTE_GROUP:
        parents[group] = COMPUTE_GROUP


def cluster_group(job: Job, workflow: Any = None) -> str | None:
    """The ``group:`` of a compute rule (``rules/compute.smk``)."""
    group = group_id(job)
    if workflow is not None and group is not None:
        register(workflow, group)
    return group


def compute_jobs(plan: Plan) -> tuple[Counter[str], int]:
    """What a run from scratch makes: per group, its compute jobs (one per chunk), and
    the compute jobs in no group."""
    counts: Counter[str] = Counter()
    alone = 0
    for job in (*plan.jobs, *plan.chunk_rules):
        group = group_id(job)
        if group is None:
            alone += 1
        else:
            counts[group] += len(job.chunks)
    return counts, alone


def submissions(counts: Counter[str] | dict[str, int], per_submission: int = 1) -> int:
    """Cluster jobs for ``counts`` compute jobs per group with ``--group-components
    compute=per_submission``: each group's jobs, ``per_submission`` to a submission."""
    if per_submission < 1:
        raise ValueError(f"per_submission must be at least 1, not {per_submission}")
    return sum(math.ceil(count / per_submission) for count in counts.values())


def cluster_jobs(plan: Plan, per_submission: int = 1, other_jobs: int = 0) -> int:
    """How many cluster jobs (``sbatch`` calls) a run of ``plan`` from scratch makes:
    each group's jobs, ``per_submission`` to a submission, the compute jobs in no group
    one each, and ``other_jobs``, the run's jobs outside the compute rules (the image
    check, the summary and class tables, each table's summary, each reduction, the
    gallery), one each."""
    counts, alone = compute_jobs(plan)
    return submissions(counts, per_submission) + alone + other_jobs


def group_components(options: dict[str, Any]) -> int:
    """The N that a profile's (or a command line's) ``group-components`` gives the compute
    groups: 1 (no grouping) when it names none."""
    entries = options.get("group-components") or []
    if isinstance(entries, str):
        entries = entries.split()
    for entry in entries:
        name, _, count = str(entry).partition("=")
        if name.strip() == COMPUTE_GROUP:
            return int(count)
    return 1
