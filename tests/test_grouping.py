"""Fewer, larger cluster jobs (cnnvis_tasks/workflow/grouping.py): the compute rules'
job groups, how many cluster jobs a run makes, and that groups change nothing on one
machine.  tests/test_slurm.py counts the sbatch calls on a real (one-node) cluster."""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml
from test_workflow import TINY
from test_workflow import make_copy as make_workflow_copy

from cnnvis_tasks.workflow.config import check_config
from cnnvis_tasks.workflow.grouping import (
    COMPUTE_GROUP,
    cluster_group,
    cluster_jobs,
    compute_jobs,
    group_components,
    group_id,
    submissions,
)
from cnnvis_tasks.workflow.plan import chunk_count, make_plan

REPO = Path(__file__).resolve().parent.parent
PROFILE = REPO / "profiles" / "slurm" / "config.yaml"
OTHER_RULES = {"image_status", "summary", "class_summary", "gallery", "all"}  # TINY's jobs outside the groups


def make_copy(root: Path, **kwargs) -> Path:
    """test_workflow's copy, with the folders the rules name that it may not copy yet (envs/)."""
    workdir = make_workflow_copy(root, **kwargs)
    for name in ("envs",):
        if (REPO / name).is_dir() and not (workdir / name).exists():
            shutil.copytree(REPO / name, workdir / name)
    return workdir


def statuses(count: int) -> list[dict]:
    return [
        {"name": f"img{i:07d}", "path": f"images/img{i:07d}.png", "status": "ok", "reason": None} for i in range(count)
    ]


def config(**changes) -> dict:
    base = {
        "images": {"folder": "images"},
        "device": "cpu",
        "models": {"efficientnet_lite0": {}, "resnet18": {}},
        "techniques": {
            "saliency": {"methods": ["vanilla", "guided"], "models": {"efficientnet_lite0": {}, "resnet18": {}}},
            "grad_cam": {"models": {"efficientnet_lite0": {}}},
            "class_viz": {"classes": [1], "regularizations": ["none"], "models": {"resnet18": {}}},
        },
    }
    base.update(changes)
    return check_config(base, check_model_names=False)


def test_each_rule_of_the_chunk_layout_is_a_group_and_other_jobs_are_in_none():
    plan = make_plan(config(chunk_size=4, layout="chunks", share_passes=False), statuses(32), exists=None)
    assert len(plan.chunks) > 1 and plan.chunk_rules
    for rule in plan.chunk_rules:
        group = group_id(rule)
        assert group == f"{COMPUTE_GROUP}-{rule.rule}", group
        assert re.fullmatch(r"[A-Za-z0-9_.-]+", group), group  # a safe SLURM comment and folder name
        # Snakemake names a group job GROUP_RULE: the plugin's log folder, at most 255 bytes
        assert len(f"group_{group}_{rule.rule}") < 200
    assert [group_id(job) for job in plan.jobs] == [None] * len(plan.jobs)  # class_viz: no images
    pictures = make_plan(config(chunk_size=4, share_passes=False), statuses(32), exists=None)
    assert {group_id(job) for job in pictures.jobs} == {None}  # a rule per job: no groups


def test_cluster_group_points_each_group_at_the_profiles_compute_entry():
    class Workflow:
        parent_groupids: dict = {}

    plan = make_plan(config(chunk_size=4, layout="chunks"), statuses(8), exists=None)
    workflow = Workflow()
    names = {cluster_group(job, workflow) for job in (*plan.jobs, *plan.chunk_rules)} - {None}
    assert names and workflow.parent_groupids == dict.fromkeys(names, COMPUTE_GROUP)
    rule = plan.chunk_rules[0]
    assert cluster_group(rule) == group_id(rule)  # without a workflow: the name alone


@pytest.mark.parametrize("layout", ["pictures", "chunks"])
def test_how_many_cluster_jobs_a_run_makes(layout):
    images, size = 1000, 64
    plan = make_plan(config(chunk_size=size, layout=layout, share_passes=False), statuses(images), exists=None)
    chunks = chunk_count(images, size)
    assert chunks == 16 and len(plan.chunks) == chunks
    counts, alone = compute_jobs(plan)
    # per chunk: each model's predictions, saliency's two methods for both models, grad_cam
    # for one: 2 + 4 + 1 = 7 jobs; and one class_viz job
    if layout == "chunks":
        assert counts == dict.fromkeys(counts, chunks) and len(counts) == 7 and alone == 1
    else:
        assert counts == {} and alone == chunks * 7 + 1
    assert cluster_jobs(plan, 1) == chunks * 7 + 1
    assert cluster_jobs(plan, 16, other_jobs=4) == (7 + 1 + 4 if layout == "chunks" else chunks * 7 + 1 + 4)
    assert cluster_jobs(plan, 5) == (7 * math.ceil(16 / 5) + 1 if layout == "chunks" else chunks * 7 + 1)
    assert submissions(counts, 10**6) == len(counts)
    with pytest.raises(ValueError):
        submissions(counts, 0)


def test_the_slurm_profile_groups_compute_jobs():
    profile = yaml.safe_load(PROFILE.read_text())
    n = group_components(profile)
    assert n > 1
    assert "gpu=1" in profile["resources"] and "gpu=local" in profile["set-resource-scopes"]
    assert group_components({"group-components": "other=3 compute=4"}) == 4
    assert group_components({}) == 1


def dry_run_submissions(workdir: Path, *args: str) -> tuple[dict[str, list[str]], list[str]]:
    """A dry run through profiles/slurm: the group jobs (group -> its rules) and the
    jobs outside any group (their rules)."""
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--workflow-profile", "profiles/slurm", "--dry-run", *args],
        cwd=workdir,
        env=dict(os.environ, CNNVIS_OFFLINE="1"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    text = result.stdout + result.stderr
    assert result.returncode == 0, text[-4000:]
    groups: dict[str, list[str]] = {}
    alone: list[str] = []
    current = None
    for line in text.splitlines():
        if match := re.search(r"Group job (\S+) \(jobs in lexicogr. order\):", line):
            current = []
            groups.setdefault(match.group(1), []).append(current)  # a group name may have several jobs
        elif match := re.match(r"    rule (\w+):", line):
            current.append(match.group(1))
        elif match := re.match(r"(?:local)?rule (\w+):", line):
            alone.append(match.group(1))
    return groups, alone


TINY_CHUNKS = {**TINY, "layout": "chunks"}


def test_a_dry_run_puts_every_chunk_job_and_only_those_in_groups(tmp_path):
    pytest.importorskip("snakemake_executor_plugin_slurm")
    workdir = make_copy(tmp_path / "wf", config=TINY_CHUNKS)
    ungrouped, alone = dry_run_submissions(workdir, "--group-components", "compute=1")
    # the jobs without images (class_viz, filter_viz, kernels) are one rule each, in no group
    assert set(alone) > OTHER_RULES and not [rule for rule in alone if "chunk" in rule]
    per_group = Counter({name: len(jobs) for name, jobs in ungrouped.items()})
    assert all(len(rules) == 1 for jobs in ungrouped.values() for rules in jobs)
    assert per_group and set(per_group.values()) == {2}  # TINY's two chunks
    for name, jobs in ungrouped.items():
        assert name == f"{COMPUTE_GROUP}-{jobs[0][0]}", name  # a rule's chunks, and only those

    grouped, alone_grouped = dry_run_submissions(workdir, "--group-components", "compute=4")
    assert sorted(alone_grouped) == sorted(alone)
    assert {name: len(jobs) for name, jobs in grouped.items()} == dict.fromkeys(per_group, 1)
    assert submissions(per_group, 4) == sum(len(jobs) for jobs in grouped.values())
    # the profile's own N
    n = group_components(yaml.safe_load(PROFILE.read_text()))
    grouped, _ = dry_run_submissions(workdir)
    assert sum(len(jobs) for jobs in grouped.values()) == submissions(per_group, n)


LOCAL = {
    "images": {"folder": "images"},
    "chunk_size": 1,
    "chunk_count": 2,
    "layout": "chunks",
    "share_passes": False,
    "threads": 1,
    "device": "cpu",
    "models": {"efficientnet_lite0": {"weights": "default"}},
    "techniques": {"saliency": {"size": 64, "methods": ["vanilla"], "models": {"efficientnet_lite0": {}}}},
}


def test_on_one_machine_groups_change_nothing(tmp_path):
    """snakemake --cores N runs every job by itself: Snakemake ignores groups where it
    runs the jobs itself, whatever --group-components says."""
    workdir = make_copy(tmp_path / "wf", config=LOCAL)
    env = dict(os.environ, CNNVIS_OFFLINE="1", TORCH_HOME=str(tmp_path / "torch-home"))
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2", "--group-components", "compute=4"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    text = result.stdout + result.stderr
    assert result.returncode == 0, text[-4000:]
    assert "Group job" not in text and "compute-saliency" not in text
    ran = re.findall(r"^(?:local)?rule (\w+):", text, re.M)
    assert len([rule for rule in ran if rule.startswith(("saliency_", "predictions_"))]) == 4
    assert (workdir / "results" / "index.html").exists()
