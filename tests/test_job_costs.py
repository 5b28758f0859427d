"""What each job asks the scheduler for (``mem_mb``, ``runtime``: cnnvis_tasks.workflow.costs),
a retry's larger request and smaller batch, and a local run kept inside ``--resources mem_mb``."""

from __future__ import annotations

import contextlib
import copy
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from test_workflow import environment, make_copy, snakemake

from cnnvis_tasks.technique import FORWARD, GRADIENT
from cnnvis_tasks.techniques import get_technique
from cnnvis_tasks.workflow import check_config, make_plan
from cnnvis_tasks.workflow.costs import (
    Work,
    memory_mb,
    model_size,
    retry_batch_size,
    runtime_minutes,
)

REPO = Path(__file__).resolve().parent.parent
BASE = Work(GRADIENT, images=256, batch_size=16, pixels=224 * 224, params=4.7, gflops=0.4)


def test_the_cost_model_grows_with_what_the_job_does():
    bigger = {
        "batch": replace(BASE, batch_size=64),
        "pixels": replace(BASE, pixels=448 * 448),
        "model": replace(BASE, params=138.4, gflops=15.47),
    }
    for what, work in bigger.items():
        assert memory_mb(work) > memory_mb(BASE), what
        assert runtime_minutes(work) >= runtime_minutes(BASE), what
    many = replace(BASE, images=20_000)
    assert runtime_minutes(many) > runtime_minutes(BASE)
    assert memory_mb(many) == memory_mb(BASE)  # one batch at a time: the count costs time, not memory
    # a gradient method keeps more than a forward; Score-CAM's copies take longer
    assert memory_mb(BASE) > memory_mb(replace(BASE, cost=FORWARD))
    assert runtime_minutes(replace(BASE, cost=get_technique("score-cam").cost, passes=1280)) > runtime_minutes(BASE)
    # a GPU job keeps its activations on the GPU, and runs faster
    gpu = replace(BASE, images=20_000, batch_size=256, device="cuda")
    assert runtime_minutes(gpu) < runtime_minutes(replace(gpu, device="cpu"))
    assert memory_mb(gpu) < memory_mb(replace(gpu, device="cpu"))
    # a model we do not know, without a weights file, is taken as a large one; a file's size says
    assert model_size("nobody_knows_me")[0] >= model_size("vgg16")[0]
    assert model_size("nobody_knows_me", 400_000_000)[0] == pytest.approx(100)
    assert runtime_minutes(replace(BASE, images=1)) >= 5  # a floor


def test_a_retry_asks_for_more_memory_and_time_with_half_the_batch():
    assert [retry_batch_size(16, attempt) for attempt in (1, 2, 3, 4, 5, 6)] == [16, 8, 4, 2, 1, 1]
    assert memory_mb(BASE, 2) > memory_mb(BASE, 1) * 1.4
    assert memory_mb(BASE, 3) > memory_mb(BASE, 2)
    assert runtime_minutes(BASE, 2) >= runtime_minutes(BASE, 1)


TINY = {
    "images": {"folder": "images"},
    "chunk_count": 1,
    "share_passes": False,
    "threads": 1,
    "device": "cpu",
    "models": {"efficientnet_lite0": {"weights": "default"}},
    "techniques": {
        "feature_maps": {"size": 64, "channels": 4, "models": {"efficientnet_lite0": {"layers": ["_blocks.1"]}}},
        "saliency": {
            "size": 64,
            "methods": ["vanilla"],
            "renderings": ["gray"],
            "models": {"efficientnet_lite0": {}},
        },
    },
}


def make_project(root: Path, images=("chelsea.png",), config: dict | None = None) -> Path:
    """:func:`test_workflow.make_copy`, with the rules' environment files where there are any."""
    make_copy(root, images=images, config=config)
    for name in ("envs",):
        if (REPO / name).is_dir() and not (root / name).exists():
            shutil.copytree(REPO / name, root / name)
    return root


def tiny_plan(root: Path, config: dict):
    """The plan of ``config`` over the images of ``root``, as the workflow makes it there."""
    from cnnvis_tasks.io.image_list import check_images, entries_for
    from cnnvis_tasks.workflow.model_check import resolve_models

    config = {**copy.deepcopy(config), "results": "results"}
    check_config(config, check_model_names=False)
    with contextlib.chdir(root):
        statuses = check_images(entries_for(sorted(Path("images").glob("*.png"))))
        models, _ = resolve_models(config, "results")  # writes the model's file its jobs load
        return make_plan(config, statuses, models=models, exists=None)


def test_every_job_asks_for_memory_and_time_and_a_retry_runs_a_smaller_batch(tmp_path):
    root = make_project(tmp_path / "w", images=("chelsea.png", "astronaut.png"))
    plan = tiny_plan(root, TINY)
    saliency = next(job for job in plan.jobs if job.technique == "saliency")
    assert saliency.batch_size == 16
    assert saliency.runtime_options(1) == saliency.runtime_command  # the first attempt: as planned
    second = shlex.split(saliency.runtime_options(2))
    assert second[second.index("--batch-size") + 1] == "8"
    note = second[second.index("--attempt-note") + 1]
    assert note == "attempt 2: batch size 8 (was 16), asking for 1.5x the memory and time of the first"
    assert saliency.mem_mb(2) > saliency.mem_mb(1)
    # a shared pass (its members carry their batch size): shared-pass's own --batch-size
    shared = [job for job in tiny_plan(root, {**TINY, "share_passes": True}).jobs if job.members]
    for job in shared:
        words = shlex.split(job.runtime_options(3))
        assert words[words.index("--batch-size") + 1] == "4"
        assert "attempt 3: batch size 4 (was 16)" in words[words.index("--attempt-note") + 1]


def test_the_rules_carry_the_resources_and_a_chunk_job_its_chunks_count(tmp_path):
    root = make_project(tmp_path / "w", images=("chelsea.png", "astronaut.png"), config=TINY)
    text = snakemake(root, "--dry-run").stdout
    plan = tiny_plan(root, TINY)
    for job in plan.jobs:
        block = re.search(rf"rule {job.rule}:\n(.*?)\n\n", text, re.S)
        assert block, (job.rule, text[-3000:])
        assert f"mem_mb={job.mem_mb(1)}," in block.group(1)
        assert f"runtime={job.runtime_minutes(1)}," in block.group(1)
    chunked = {**TINY, "layout": "chunks"}
    (root / "config.yaml").write_text(yaml.safe_dump(chunked, sort_keys=False))
    text = snakemake(root, "--dry-run").stdout
    rule = tiny_plan(root, chunked).chunk_rules[0]
    block = re.search(rf"rule {rule.rule}:\n(.*?)\n\n", text, re.S)
    assert block and f"mem_mb={rule.mem_mb(1, 2)}," in block.group(1), text[-3000:]


def test_a_retried_command_says_so_first_and_runs_with_the_smaller_batch(tmp_path):
    root = make_project(tmp_path / "w", images=("chelsea.png",))
    plan = tiny_plan(root, {**TINY, "share_passes": True})
    shared = next(job for job in plan.jobs if job.members)  # shared-pass: feature maps and saliency
    words = [*shared.arguments, *shlex.split(shared.runtime_options(2)), "--device", "cpu", "--threads", "1"]
    result = subprocess.run(
        [sys.executable, "-m", "cnnvis_tasks", *words],
        cwd=root,
        env=environment(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.startswith("attempt 2: batch size 8 (was 16), asking for 1.5x the memory and time of")
    assert all(Path(root, path).exists() for path in shared.output_paths)


def benchmark_spans(root: Path) -> list[tuple[float, float, str]]:
    """(start, end, job) of every job with a benchmark file: its end is when Snakemake wrote
    the file, its start that less the seconds the file records."""
    spans = []
    for path in (root / "results" / "benchmarks").rglob("*.tsv"):
        seconds = float(path.read_text().splitlines()[1].split("\t")[0])
        end = path.stat().st_mtime
        spans.append((end - seconds, end, str(path.relative_to(root))))
    return sorted(spans)


@pytest.mark.slow
def test_a_local_memory_limit_runs_jobs_that_do_not_fit_together_one_after_another(tmp_path):
    """Locally, ``--resources mem_mb=N`` keeps the machine inside N: jobs that together
    would need more than N run one after another, and every output is written."""
    root = make_project(tmp_path / "w", images=("chelsea.png",), config=TINY)
    plan = tiny_plan(root, TINY)
    jobs = [job for job in plan.jobs if job.technique in ("feature-maps", "saliency", "predictions")]
    assert len(jobs) == 3
    needs = sorted(job.mem_mb(1) for job in jobs)
    limit = needs[-1] + 1  # each fits alone, no two together
    assert needs[0] + needs[1] > limit
    targets = [path for job in jobs for path in job.output_paths]
    snakemake(root, *targets, "--resources", f"mem_mb={limit}")
    spans = benchmark_spans(root)
    assert len(spans) == 3, spans
    for (_, end, first), (start, _, second) in zip(spans, spans[1:]):
        assert start >= end - 0.5, f"{first} and {second} ran together under mem_mb={limit}: {spans}"
    assert all((root / path).exists() for path in targets)
