#!/usr/bin/env python
"""Job costs: what each job declares (``mem_mb``, ``runtime``) against what it uses.

For a handful of real jobs (a few techniques, batch sizes and image counts, on the
embedded EfficientNet-Lite0 and on torchvision's ResNet-18 with random weights), this
plans the job as the workflow does (a config in a temporary folder, ``make_plan``),
runs its command line (``Job.arguments``, ``Job.runtime_options``, ``--device cpu
--threads 1``) as a fresh process and records its peak resident set size
(``ru_maxrss`` of that child, from ``os.wait4``) and wall time, then prints, per job,
the measured peak against the declared ``mem_mb`` and the measured time against the
declared ``runtime`` (:mod:`cnnvis_tasks.workflow.costs`).  The goal: no declared
``mem_mb`` below its measured peak (the ``headroom`` column stays above 1).  The
coefficients of ``costs.py`` were set from these numbers.  Writes the section
``## Job costs: declared and measured`` of ``bench/RESULTS.md``.

    .venv/bin/python bench/job_costs.py            # every case (about 6 minutes on 2 cores)
    .venv/bin/python bench/job_costs.py --quick    # three cases
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dataset import machine_info, make_images  # noqa: E402
from results_file import display_command, write_section  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SECTION = "## Job costs: declared and measured"
LITE = "efficientnet_lite0"

# (technique's config key, its block less "models", model, weights, images, batch size)
CASES = [
    ("feature_maps", {"size": 224, "channels": 16}, LITE, "default", 16, 16),
    ("saliency", {"size": 224, "methods": ["vanilla"], "renderings": ["gray"]}, LITE, "default", 16, 16),
    ("saliency", {"size": 224, "methods": ["vanilla"], "renderings": ["gray"]}, LITE, "default", 16, 4),
    ("saliency", {"size": 224, "methods": ["vanilla"], "renderings": ["gray"]}, LITE, "default", 48, 16),
    ("saliency", {"size": 448, "methods": ["vanilla"], "renderings": ["gray"]}, LITE, "default", 8, 8),
    ("grad_cam", {"size": 224, "renderings": ["overlay"]}, LITE, "default", 16, 16),
    ("smooth_grad", {"size": 224, "samples": 8}, LITE, "default", 4, 16),
    ("score_cam", {"size": 128}, LITE, "default", 2, 16),
    ("occlusion", {"size": 128, "patch": 32, "stride": 32}, LITE, "default", 4, 16),
    ("metrics", {"size": 128, "steps": 8, "road": False}, LITE, "default", 4, 16),
    ("saliency", {"size": 224, "methods": ["vanilla"], "renderings": ["gray"]}, "resnet18", "random", 16, 16),
    ("grad_cam", {"size": 224, "renderings": ["overlay"]}, "resnet18", "random", 16, 16),
]
QUICK = [0, 1, 10]
LAYERS = {"feature_maps": {LITE: {"layers": ["_blocks.1"]}}}


def plan_job(root: Path, key: str, block: dict, model: str, weights: str, count: int, batch: int):
    """The workflow's job for one case (its config in ``root``)."""
    from cnnvis_tasks.io.image_list import check_images, entries_for
    from cnnvis_tasks.workflow import check_config, make_plan
    from cnnvis_tasks.workflow.model_check import resolve_models

    images = sorted((root / "images").glob("*.jpg"))[:count]
    folder = root / f"case-{key}-{model}-{count}-{batch}"
    (folder / "images").mkdir(parents=True, exist_ok=True)
    for image in images:
        target = folder / "images" / image.name
        if not target.exists():
            target.symlink_to(image)
    models_block = LAYERS.get(key, {}).get(model, {})
    config = {
        "images": {"folder": str(folder / "images")},
        "results": str(folder / "results"),
        "device": "cpu",
        "threads": 1,
        "chunk_count": 1,
        "share_passes": False,
        "models": {model: {"weights": weights}},
        "techniques": {key: {**block, "batch_size": batch, "models": {model: models_block}}},
    }
    check_config(config, check_model_names=False)
    statuses = check_images(entries_for(sorted((folder / "images").iterdir())))
    models, _ = resolve_models(config, config["results"])
    plan = make_plan(config, statuses, models=models, exists=None)
    return next(job for job in plan.jobs if job.technique == key.replace("_", "-"))


def run(job, timeout: float) -> tuple[float, float]:
    """Peak RSS (MB) and wall seconds of the job's command, as a fresh process."""
    import shlex

    words = [*job.arguments, *shlex.split(job.runtime_options(1)), "--device", "cpu", "--threads", "1", "-q"]
    errors = tempfile.TemporaryFile()
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "cnnvis_tasks", *words], stdout=subprocess.DEVNULL, stderr=errors)
    try:
        _, status, usage = os.wait4(process.pid, 0)
    finally:
        if process.poll() is None:
            process.kill()
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status):
        errors.seek(0)
        raise RuntimeError(f"{job.rule}: {errors.read().decode(errors='replace')[-1500:]}")
    if wall > timeout:
        print(f"  (slow: {wall:.0f} s)", file=sys.stderr)
    return usage.ru_maxrss * 1024 / 1e6, wall  # ru_maxrss: KiB on Linux; MB as mem_mb counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="three cases only")
    parser.add_argument("--cases", default=None, help="only these cases, by index in CASES: 0,3,5")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "RESULTS.md")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    args = parser.parse_args()
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    chosen = [int(i) for i in args.cases.split(",")] if args.cases else QUICK if args.quick else range(len(CASES))
    cases = [CASES[i] for i in chosen]
    header = (
        "| job | model | images | batch | peak MB | mem_mb | headroom | time s | runtime min | time / runtime |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    lines = []
    print(header, flush=True)
    with tempfile.TemporaryDirectory(prefix="job-costs-") as tmp:
        root = Path(tmp)
        make_images(root / "images", max(case[4] for case in cases), height=480, width=640)
        for key, block, model, weights, count, batch in cases:
            job = plan_job(root, key, block, model, weights, count, batch)
            peak, wall = run(job, timeout=600)
            mem, minutes = job.mem_mb(1), job.runtime_minutes(1)
            options = ", ".join(f"{k} {v}" for k, v in block.items() if k not in ("renderings",))
            line = (
                f"| {key} ({options}) | {model} | {count} | {batch} | {peak:,.0f} | {mem:,} | {mem / peak:.2f} "
                f"| {wall:.1f} | {minutes} | {wall / 60 / minutes:.2f} |"
            )
            lines.append(line)
            print(line, flush=True)
    if args.no_write:
        return
    info = machine_info()
    text = "\n".join(
        [
            SECTION,
            "",
            f"Date: {started}. Command: `{display_command()}`",
            "",
            f"Machine: {info['cpu']}, {info['cores']} cores; Python {info['python']}, torch {info['torch']}.",
            "",
            "Each row is one workflow job (planned by `make_plan`, run as its own `cnnvis-tasks` process, device "
            "cpu, 1 thread) over pictures of 640x480 resized to the given size: its peak resident set size "
            "(`ru_maxrss`), the `mem_mb` it declares (`cnnvis_tasks/workflow/costs.py`) and their ratio "
            "(headroom, above 1: the declared memory covers the peak), its wall time and the `runtime` it declares.",
            "",
            header,
            *lines,
        ]
    )
    write_section(args.out, text)


if __name__ == "__main__":
    main()
