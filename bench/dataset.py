#!/usr/bin/env python
"""Dataset-wide runs of the Snakemake workflow: chunked jobs, one image per job,
the in-process lower bound, dry-run time of a large DAG, and peak memory per job.

Everything runs on synthetic images in a temporary folder, with a copy of the
workflow (Snakefile, rules/, config/, profiles/) and a generated config.yaml,
so the repository's results/ is never touched.

1. Run: N images x 3 cheap techniques (saliency vanilla/gray, Grad-CAM overlay,
   feature maps of one layer) on EfficientNet-Lite0 at ``--size`` (224), built with
   ``snakemake --cores C`` (a) in chunks of ``--chunk-size`` images, (b) one
   image per job (a pinned chunk_count under which every image has a chunk of
   its own), and (c) the in-process lower bound: one Python process that loads
   the model once and runs the workflow's three ``cnnvis-tasks`` job commands
   in-process over all images, writing the same files (compared pixel by pixel).
   The targets are the technique pictures only: the workflow's predictions jobs
   (one per chunk, for summary.csv) run with the rest of the workflow, timed apart.
2. Dry run of M images x 5 per-image techniques: cold and warm results/.cache
   (image check, model check), folder and manifest, default and greedy scheduler; optionally profiled.
3. Peak memory (max_rss of Snakemake's benchmark files) of the chunk jobs
   against the number of images in the chunk.

The section ``## Dataset-wide runs`` of bench/RESULTS.md is replaced (after
every part, so an interrupted run keeps what it measured).

    .venv/bin/python bench/dataset.py                 # N=200, dry run of 10,000 images
    .venv/bin/python bench/dataset.py --quick         # N=24, dry run of 1,000 images
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import pstats
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_file import display_command, write_section  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
# The workflow's logic imports neither torch nor snakemake.
from cnnvis_tasks.workflow import full_schema  # noqa: E402
from cnnvis_tasks.workflow.plan import chunk_count as auto_chunk_count  # noqa: E402
from cnnvis_tasks.workflow.plan import chunk_of  # noqa: E402

SECTION = "## Dataset-wide runs"
DEFAULT_OUT = REPO / "bench" / "RESULTS.md"
MODEL = "efficientnet_lite0"
DRY_SIZE = 64  # the dry run computes nothing; any size does
FM_LAYER = "_blocks.4"
WORKFLOW_FILES = ["Snakefile", "rules", "config", "profiles", "envs"]


def default_chunk_size() -> int:
    """chunk_size when a config leaves it out (the workflow's schema)."""
    return full_schema()["properties"]["chunk_size"]["default"]


def default_batch_size() -> int:
    """batch_size of the run's techniques when a config leaves it out (the workflow's schema)."""
    blocks = full_schema()["properties"]["techniques"]["properties"]
    sizes = {blocks[key]["properties"]["batch_size"]["default"] for key in RUN_OUTPUTS}
    if len(sizes) != 1:
        raise RuntimeError(f"the run's techniques default to different batch sizes: {sorted(sizes)}")
    return sizes.pop()


# Output of each run technique (config key) per image, relative to results/ (as the workflow lays it out:
# ``{image}`` is the image's name, its path below the image folder with its extension, e.g. img00001.jpg;
# ``job_commands`` checks these against the workflow's plan).
RUN_OUTPUTS = {
    "saliency": f"{MODEL}/saliency/{{image}}/vanilla-gray.png",
    "grad_cam": f"{MODEL}/grad-cam/{{image}}/auto-overlay.png",
    "feature_maps": f"{MODEL}/feature-maps/{{image}}/{FM_LAYER}.png",
}
# The technique folders of those outputs (as in results/benchmarks/MODEL/TECHNIQUE/...).
RUN_TECHNIQUES = {pattern.split("/")[1] for pattern in RUN_OUTPUTS.values()}


# --- small helpers ------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_info() -> dict:
    import torch

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": _cpu_model(),
        "cores": f"{usable} usable of {os.cpu_count()}",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "snakemake": _version("snakemake"),
    }


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def run_timed(cmd: list[str], cwd: Path, timeout: float, log: Path | None = None, env: dict | None = None) -> dict:
    """Run ``cmd``; wall seconds, exit status, output tail.  On timeout the whole
    process group (started here) is killed."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True, env=env
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        timed_out = True
    wall = time.perf_counter() - start
    if log:
        log.write_text(out or "")
    return {"wall": wall, "rc": proc.returncode, "timed_out": timed_out, "tail": (out or "")[-3000:]}


def snakemake_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("snakemake")
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "snakemake"]


def env_for_jobs() -> dict:
    env = dict(os.environ)
    env.setdefault("CNNVIS_OFFLINE", "1")
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


# --- images, workdirs and configs ---------------------------------------------------


def make_images(
    folder: Path, count: int, height: int = 96, width: int = 128, fmt: str = "jpg", start: int = 0
) -> list[Path]:
    """Deterministic random-ish pictures: smooth colour blobs plus noise."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(start, start + count):
        rng = np.random.default_rng(index)
        coarse = rng.integers(0, 256, size=(max(2, height // 24), max(2, width // 24), 3), dtype=np.uint8)
        picture = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), dtype=np.int16)
        picture = np.clip(picture + rng.integers(-20, 21, size=picture.shape), 0, 255).astype(np.uint8)
        path = folder / f"img{index:05d}.{fmt}"
        if fmt == "jpg":
            Image.fromarray(picture).save(path, quality=90)
        else:
            Image.fromarray(picture).save(path)
        paths.append(path)
    return paths


def make_workdir(root: Path, config: dict) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, root / name)
    import yaml

    (root / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return root


def image_names(paths) -> list[str]:
    """The workflow's names of images given one by one (their path below the folder they
    share, extension included): for the files of one folder, as a folder source names them."""
    from cnnvis_tasks.io.image_list import entries_for

    return [entry.name for entry in entries_for(paths)]


def folder_images(folder: Path) -> list:
    """The images of a folder source as the workflow lists them (``ImageEntry``: path, name, label)."""
    from cnnvis_tasks.io.image_list import list_images

    listing = list_images(folder=folder)
    if listing.skipped:
        raise RuntimeError(f"{folder}: files the workflow would skip: {listing.skipped[:3]}")
    return listing.images


def one_per_job_count(names: list[str]) -> int:
    """The smallest chunk_count >= len(names) under which no two images share a chunk."""
    count = max(1, len(names))
    while len({chunk_of(name, count) for name in names}) < len(names):
        count += 1
    return count


def run_config(
    image_source: dict,
    *,
    size: int,
    chunk_size: int | None = None,
    chunk_count: int | None = None,
    share_passes: bool | None = None,
) -> dict:
    """The run's config: vanilla saliency, Grad-CAM and feature maps.  ``share_passes``
    False keeps one job per technique (what this benchmark times per job); None leaves
    the workflow's default (and a config the old workflow of ``before`` can read)."""
    config = {
        "images": image_source,
        "results": "results",
        "device": "cpu",
        "threads": 1,
        "seed": 0,
        "models": {MODEL: {"weights": "default"}},
        "gallery": {"title": "cnnvis dataset benchmark"},
        "techniques": {
            "saliency": {"methods": ["vanilla"], "renderings": ["gray"], "size": size, "models": {MODEL: {}}},
            "grad_cam": {"renderings": ["overlay"], "size": size, "models": {MODEL: {"layers": ["auto"]}}},
            "feature_maps": {"size": size, "models": {MODEL: {"layers": [FM_LAYER]}}},
        },
    }
    if chunk_size:
        config["chunk_size"] = chunk_size
    if chunk_count:
        config["chunk_count"] = chunk_count
    if share_passes is not None:
        config["share_passes"] = share_passes
    return config


def dry_config(image_source: dict, chunk_size: int) -> dict:
    """Five per-image techniques, one setting each (one job per technique and chunk; the plan adds
    one predictions job per chunk)."""
    dream = {"size": DRY_SIZE, "models": {MODEL: {"layers": ["_blocks.10"], "filters": ["all"]}}}
    return {
        "images": image_source,
        "results": "results",
        "chunk_size": chunk_size,
        "device": "cpu",
        "threads": 1,
        "models": {MODEL: {"weights": "default"}},
        "techniques": {
            "feature_maps": {"size": DRY_SIZE, "models": {MODEL: {"layers": [FM_LAYER]}}},
            "saliency": {"methods": ["vanilla"], "renderings": ["gray"], "size": DRY_SIZE, "models": {MODEL: {}}},
            "deep_dream": dict(dream),
            "deep_dream_octaves": dict(dream),
            "grad_cam": {"renderings": ["overlay"], "size": DRY_SIZE, "models": {MODEL: {"layers": ["auto"]}}},
        },
    }


def run_targets(names: list[str], results: str = "results") -> list[str]:
    return [f"{results}/{pattern.format(image=name)}" for name in names for pattern in RUN_OUTPUTS.values()]


# --- part 2: the runs -----------------------------------------------------------------


def benchmark_rows(workdir: Path) -> list[dict]:
    """One row per compute job of the run's techniques from results/benchmarks/**.tsv: technique,
    images in the chunk, s, max_rss."""
    rows = []
    for tsv in sorted((workdir / "results" / "benchmarks").rglob("*.tsv")):
        match = re.fullmatch(r"chunk(\d+)of(\d+)", tsv.stem)
        if not match:
            continue
        lines = tsv.read_text().splitlines()
        if len(lines) < 2:
            continue
        record = dict(zip(lines[0].split("\t"), lines[1].split("\t")))
        technique = tsv.relative_to(workdir / "results" / "benchmarks").parts[1]
        if technique not in RUN_TECHNIQUES:
            continue  # a predictions job (made by the rest of the workflow), not one of the run's
        try:
            max_rss = float(record.get("max_rss", "nan"))
        except ValueError:
            max_rss = float("nan")
        rows.append(
            {
                "technique": technique,
                "chunk": int(match.group(1)),
                "count": int(match.group(2)),
                "s": float(record["s"]),
                "max_rss": max_rss,
            }
        )
    return rows


def annotate_sizes(rows: list[dict], names: list[str]) -> None:
    for row in rows:
        row["images"] = sum(1 for name in names if chunk_of(name, row["count"]) == row["chunk"])


def snakemake_run(workdir: Path, cores: int, targets: list[str], timeout: float, label: str, logs: Path) -> dict:
    cmd = snakemake_cmd() + ["--cores", str(cores), "--quiet", "progress", "rules", "host", "--"] + targets
    # `--quiet` keeps the log short (errors still show); the targets are the technique outputs only
    # (image_status, the predictions jobs, the summary and the gallery are timed separately).
    print(f"[dataset] {label}: snakemake --cores {cores} ({len(targets)} targets) in {workdir}", flush=True)
    result = run_timed(cmd, workdir, timeout, logs / f"{label}.log", env_for_jobs())
    print(
        f"[dataset] {label}: {result['wall']:.1f} s, rc {result['rc']}{' TIMEOUT' if result['timed_out'] else ''}",
        flush=True,
    )
    if result["rc"] != 0 and not result["timed_out"]:
        print(result["tail"], file=sys.stderr)
    return result


def job_commands(images: list, out: Path, threads: int, size: int, batch_size: int) -> dict:
    """technique key -> the ``cnnvis-tasks`` arguments of the run's job over ``images`` (one chunk),
    as the workflow plans and runs it (``job.arguments``, ``job.runtime``, ``--device``, ``--threads``;
    plus ``-q``), writing the workflow's files (pictures and the job's record) under ``out``.

    ``images``: paths (named as the workflow names the files of their common folder) or
    ``ImageEntry`` objects.  The plan's predictions job (top-1 classes for summary.csv) is left
    out: the run's targets are the three techniques' pictures."""
    from cnnvis_tasks.io.image_list import ImageEntry, check_images, entries_for
    from cnnvis_tasks.workflow import check_config, make_plan
    from cnnvis_tasks.workflow.model_check import resolve_models
    from cnnvis_tasks.workflow.plan import PREDICTIONS

    images = list(images)
    entries = images if all(isinstance(image, ImageEntry) for image in images) else entries_for(images)
    config = run_config({"folder": str(Path(entries[0].path).parent)}, size=size, chunk_count=1, share_passes=False)
    config.update(results=str(out), threads=threads)
    for block in config["techniques"].values():
        block["batch_size"] = batch_size
    check_config(config, check_model_names=False)
    statuses = check_images(entries)
    bad = [record for record in statuses if record["status"] != "ok"]
    if bad:
        raise RuntimeError(f"{len(bad)} images cannot be used, e.g. {bad[0]['path']}: {bad[0]['reason']}")
    models, _ = resolve_models(config, config["results"])  # the model's file its jobs load, as the workflow's start
    plan = make_plan(config, statuses, models=models, exists=None)
    jobs = [job for job in plan.jobs if job.technique != PREDICTIONS]
    commands = {
        job.technique.replace("-", "_"): [
            *job.arguments,
            *job.runtime,
            "--device",
            job.device,
            "--threads",
            str(job.threads),
            "-q",
        ]
        for job in jobs
    }
    if len(jobs) != len(RUN_OUTPUTS) or set(commands) != set(RUN_OUTPUTS):
        raise RuntimeError(f"expected one job per technique of {sorted(RUN_OUTPUTS)}, got {[j.rule for j in jobs]}")
    for job in jobs:
        key = job.technique.replace("-", "_")
        runtime = list(job.runtime)
        if "--batch-size" not in runtime or runtime[runtime.index("--batch-size") + 1] != str(batch_size):
            raise RuntimeError(f"{job.rule}: its runtime arguments {job.runtime} do not set --batch-size {batch_size}")
        # the pictures this benchmark compares and counts are the ones the workflow plans
        planned = sorted(Path(path) for path in job.output_paths[1:])
        expected = sorted(out / RUN_OUTPUTS[key].format(image=record["name"]) for record in statuses)
        if planned != expected:
            raise RuntimeError(f"{job.rule}: the plan writes {planned[:2]} ..., RUN_OUTPUTS says {expected[:2]} ...")
    return commands


def record_path(arguments: list[str]) -> Path:
    """The record (JSON) a job command writes: every image's status, ok or failed."""
    return Path(arguments[arguments.index("--record") + 1])


def record_failures(record: Path) -> tuple[int, list[str]]:
    """(rows, reasons of the failed rows) of a job's record.  Jobs run with --keep-going
    --placeholders: an image that fails gets placeholder pictures and the job still exits 0."""
    rows = json.loads(record.read_text())["rows"]
    return len(rows), [f"{row['image']}: {row['reason']}" for row in rows if row["status"] != "ok"]


def records_summary(results: Path) -> dict:
    """Rows and failed rows over every technique record under ``results/records``."""
    rows, failed = 0, []
    for record in sorted((results / "records").rglob("*.json")):
        if record.relative_to(results / "records").parts[1] not in RUN_TECHNIQUES:
            continue
        count, reasons = record_failures(record)
        rows += count
        failed += reasons
    return {"rows": rows, "failed": len(failed), "first": failed[:1]}


def lower_bound_main(spec_path: str) -> None:
    """Hidden mode (--_lower-bound SPEC): one process, the model loaded once, the
    three job commands run in-process over every image, writing the workflow's files."""
    spec = json.loads(Path(spec_path).read_text())
    import cnnvis_tasks.run.runner as runner
    from cnnvis_tasks.cli import cli

    loaded = {}
    original = runner.load_model

    def load_once(*args, **kwargs):
        key = repr((args, sorted(kwargs.items())))
        if key not in loaded:
            loaded[key] = original(*args, **kwargs)
        return loaded[key]

    runner.load_model = load_once
    commands = job_commands(spec["images"], Path(spec["out"]), spec["threads"], spec["size"], spec["batch_size"])
    times = {}
    for key, args in commands.items():
        start = time.perf_counter()
        code = cli.main(args, prog_name="cnnvis-tasks", standalone_mode=False)
        times[key] = time.perf_counter() - start
        if code:
            raise SystemExit(f"cnnvis-tasks {args[0]}: exit status {code}")
        rows, failed = record_failures(record_path(args))
        if failed:
            print(f"{key}: {len(failed)} of {rows} images failed, e.g. {failed[0]}", file=sys.stderr)
    import resource

    times["max_rss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    Path(spec["report"]).write_text(json.dumps(times))


def lower_bound(tmp: Path, images: list[Path], threads: int, size: int, timeout: float, logs: Path) -> dict:
    """``images``: the files of the chunked run's image folder (so the lower bound names them alike)."""
    out = tmp / "lower-bound" / "results"
    spec = {
        "images": [str(p) for p in images],
        "out": str(out),
        "threads": threads,
        "size": size,
        "batch_size": default_batch_size(),
        "report": str(tmp / "lower-bound" / "report.json"),
    }
    (tmp / "lower-bound").mkdir(parents=True, exist_ok=True)
    spec_path = tmp / "lower-bound" / "spec.json"
    spec_path.write_text(json.dumps(spec))
    print(f"[dataset] lower bound: one process, {len(images)} images, {threads} thread(s)", flush=True)
    result = run_timed(
        [sys.executable, str(Path(__file__).resolve()), "--_lower-bound", str(spec_path)],
        tmp,
        timeout,
        logs / "lower-bound.log",
        env_for_jobs(),
    )
    print(f"[dataset] lower bound: {result['wall']:.1f} s, rc {result['rc']}", flush=True)
    if result["rc"] != 0:
        print(result["tail"], file=sys.stderr)
    else:
        result["inside"] = json.loads(Path(spec["report"]).read_text())
    result["out"] = out
    return result


def compare_outputs(a: Path, b: Path, names: list[str]) -> dict:
    """Pixel comparison of the run outputs under two results folders, and the failed rows of
    each side's job records (a failed image gets a 1 x 1 placeholder, so it would differ)."""
    import numpy as np
    from PIL import Image

    missing, worst, differing, total = 0, 0, 0, 0
    for name in names:
        for pattern in RUN_OUTPUTS.values():
            rel = pattern.format(image=name)
            if not (a / rel).is_file() or not (b / rel).is_file():
                missing += 1
                continue
            x = np.asarray(Image.open(a / rel), dtype=np.int16)
            y = np.asarray(Image.open(b / rel), dtype=np.int16)
            total += 1
            if x.shape != y.shape:
                differing += 1
                worst = 255
                continue
            diff = int(np.abs(x - y).max()) if x.size else 0
            worst = max(worst, diff)
            differing += diff > 0
    failed = {"a": records_summary(a), "b": records_summary(b)}
    return {"compared": total, "missing": missing, "differing": differing, "max_diff": worst, "records": failed}


def part_run(args, tmp: Path, logs: Path, results: dict, flush) -> None:
    n, k = args.images, min(args.per_image_images, args.images)
    folder = tmp / "run-images"
    print(f"[dataset] making {max(n, args.mem_images)} images in {folder}", flush=True)
    paths = make_images(folder, max(n, args.mem_images))
    all_names = image_names(paths)  # as the workflow names the files of one folder: img00001.jpg, ...
    run = results.setdefault("run", {"n": n, "k": k, "cores": args.cores, "chunk_size": args.chunk_size})
    subsets = {}

    def subset(count: int) -> Path:
        """A folder with the first ``count`` images (hard links)."""
        if count not in subsets:
            sub = tmp / f"images-{count}"
            sub.mkdir(exist_ok=True)
            for path in paths[:count]:
                target = sub / path.name
                if not target.exists():
                    os.link(path, target)
            subsets[count] = sub
        return subsets[count]

    def chunked(label: str, count: int, chunk_size: int | None = None, chunk_count: int | None = None) -> dict:
        names = [entry.name for entry in folder_images(subset(count))]  # what the workflow will see
        if names != all_names[:count]:
            raise RuntimeError(f"{label}: the workflow names the images {names[:3]} ..., expected {all_names[:3]} ...")
        workdir = make_workdir(
            tmp / label,
            run_config(
                {"folder": str(subset(count))},
                size=args.size,
                chunk_size=chunk_size,
                chunk_count=chunk_count,
                share_passes=False,
            ),
        )
        result = snakemake_run(workdir, args.cores, run_targets(names), args.timeout, label, logs)
        rows = benchmark_rows(workdir)
        annotate_sizes(rows, names)
        result.update(
            workdir=workdir,
            rows=rows,
            jobs=len(rows),
            images=count,
            chunk_size=chunk_size,
            chunk_count=chunk_count or auto_chunk_count(count, chunk_size),
        )
        return result

    # (a) chunked at N
    a = chunked("chunked", n, chunk_size=args.chunk_size)
    run["a"] = a
    flush()
    # no-op rerun (Snakemake's own overhead: read the workflow, check the image cache, build the DAG)
    noop = run_timed(
        snakemake_cmd() + ["--cores", str(args.cores), "--quiet", "all", "--"] + run_targets(all_names[:n]),
        a["workdir"],
        args.timeout,
        logs / "noop.log",
        env_for_jobs(),
    )
    run["noop"] = noop
    # the rest of the workflow (image_status, one predictions job per chunk, summary, gallery)
    rest = run_timed(
        snakemake_cmd() + ["--cores", str(args.cores), "--quiet", "all"],
        a["workdir"],
        args.timeout,
        logs / "rest.log",
        env_for_jobs(),
    )
    run["rest"] = rest
    print(
        f"[dataset] no-op rerun {noop['wall']:.1f} s (rc {noop['rc']}); image_status + predictions + summary + "
        f"gallery {rest['wall']:.1f} s (rc {rest['rc']})",
        flush=True,
    )
    for result in (noop, rest):
        if result["rc"] != 0 and not result["timed_out"]:
            print(result["tail"], file=sys.stderr)
    flush()

    # (c) lower bound at N, over (a)'s image folder
    lb_images = [entry.path for entry in folder_images(subset(n))]
    lb = lower_bound(tmp, lb_images, args.lb_threads or args.cores, args.size, args.timeout, logs)
    run["lb"] = lb
    if lb["rc"] == 0 and a["rc"] == 0:
        same = compare_outputs(a["workdir"] / "results", lb["out"], all_names[:n])
        run["same"] = same
        print(
            f"[dataset] lower bound vs chunked: {same['compared']} pictures compared, {same['differing']} differ "
            f"(max {same['max_diff']}), {same['missing']} missing; failed images in the records: "
            f"chunked {same['records']['a']['failed']} of {same['records']['a']['rows']}, "
            f"lower bound {same['records']['b']['failed']} of {same['records']['b']['rows']}",
            flush=True,
        )
    flush()

    # (b) one image per job at K (<= N), and chunked at K for a like-for-like ratio
    count = one_per_job_count(all_names[:k])
    run["b"] = chunked("per-image", k, chunk_count=count)
    flush()
    if k < n:
        run["a_k"] = chunked("chunked-k", k, chunk_size=args.chunk_size)
        flush()

    # memory: another chunk size
    if args.mem_chunk_size:
        run["mem"] = chunked("chunked-mem", args.mem_images, chunk_size=args.mem_chunk_size)
        flush()


# --- part 3: dry runs ---------------------------------------------------------------


def part_dry(args, tmp: Path, logs: Path, results: dict, flush) -> None:
    import copy

    from cnnvis_tasks.io.image_list import check_images, list_images
    from cnnvis_tasks.workflow import check_config, make_plan

    dry = results.setdefault("dry", {"chunk_size": args.dry_chunk_size, "sizes": []})
    made = 0
    folder = tmp / "dry-images"
    for m in args.dry_images:
        if any(entry.get(case, {}).get("timed_out") for entry in dry["sizes"] for case in DRY_CASES):
            print(f"[dataset] dry run {m} images: skipped (a smaller size timed out)", flush=True)
            dry.setdefault("skipped", []).append(m)
            continue
        if m > made:
            print(f"[dataset] making {m - made} tiny images for the dry run", flush=True)
            make_images(folder, m - made, height=16, width=16, fmt="png", start=made)
            made = m
        # the first m images, as a folder (hard links) and as a manifest
        sub = tmp / f"dry-{m}"
        sub.mkdir(exist_ok=True)
        files = sorted(folder.iterdir())[:m]
        for path in files:
            if not (sub / path.name).exists():
                os.link(path, sub / path.name)
        manifest = tmp / f"dry-{m}.txt"
        manifest.write_text("".join(f"{sub.name}/{p.name}\n" for p in files))
        entry = {"m": m}
        dry["sizes"].append(entry)

        # reading the source and checking the images, in-process
        start = time.perf_counter()
        listed = list_images(folder=sub)
        entry["list_folder"] = time.perf_counter() - start
        start = time.perf_counter()
        list_images(manifest=manifest)
        entry["list_manifest"] = time.perf_counter() - start
        cache = tmp / f"dry-check-{m}.json"
        start = time.perf_counter()
        check_images(listed.images, cache=cache)
        entry["check_cold"] = time.perf_counter() - start
        start = time.perf_counter()
        statuses = check_images(listed.images, cache=cache)
        entry["check_warm"] = time.perf_counter() - start
        # chunks and jobs of the folder run, from the workflow's own plan
        config = copy.deepcopy(dry_config({"folder": str(sub)}, args.dry_chunk_size))
        check_config(config, check_model_names=False)
        plan = make_plan(config, statuses, exists=None)
        entry["chunks"] = len(plan.chunks)
        entry["jobs"] = len(plan.jobs) + len(DRY_OTHER_JOBS)

        workdir = make_workdir(tmp / f"dry-wf-{m}", dry_config({"folder": str(sub)}, args.dry_chunk_size))
        manifest_wd = make_workdir(
            tmp / f"dry-wf-{m}-manifest", dry_config({"manifest": str(manifest)}, args.dry_chunk_size)
        )
        base = snakemake_cmd() + ["-n", "--cores", str(args.cores), "--quiet", "all"]
        cases = [
            ("folder_cold", workdir, base),
            ("folder_warm", workdir, base),
            ("folder_warm_greedy", workdir, base + ["--scheduler", "greedy"]),
            ("manifest_cold", manifest_wd, base),
            ("manifest_warm", manifest_wd, base),
        ]
        for label, wd, cmd in cases:
            if label not in args.dry_cases:
                continue
            if label.endswith("cold"):
                shutil.rmtree(wd / "results" / ".cache", ignore_errors=True)
            print(f"[dataset] dry run {m} images: {label}", flush=True)
            result = run_timed(cmd, wd, args.dry_timeout, logs / f"dry-{m}-{label}.log", env_for_jobs())
            entry[label] = {"wall": result["wall"], "rc": result["rc"], "timed_out": result["timed_out"]}
            print(
                f"[dataset]   {result['wall']:.1f} s rc {result['rc']}{' TIMEOUT' if result['timed_out'] else ''}",
                flush=True,
            )
            if result["rc"] != 0 and not result["timed_out"]:
                print(result["tail"], file=sys.stderr)
            flush()
            if result["timed_out"]:
                break
        flush()

    if args.profile_dry:
        m = args.profile_dry
        wd = tmp / f"dry-wf-{m}"
        if not wd.is_dir():
            print(f"[dataset] --profile-dry {m}: not among --dry-images, skipped", flush=True)
            return
        prof = tmp / f"dry-{m}.prof"
        print(f"[dataset] profiling a warm dry run of {m} images", flush=True)
        cmd = [sys.executable, "-m", "cProfile", "-o", str(prof), "-m", "snakemake"]
        cmd += ["-n", "--cores", str(args.cores), "--quiet", "all"]
        result = run_timed(cmd, wd, args.dry_timeout, logs / f"dry-{m}-profile.log", env_for_jobs())
        dry["profile"] = {
            "m": m,
            "wall": result["wall"],
            "rc": result["rc"],
            "rows": profile_rows(prof) if prof.is_file() else [],
        }
        flush()


DRY_CASES = ["folder_cold", "folder_warm", "folder_warm_greedy", "manifest_cold", "manifest_warm"]
# The dry run's jobs besides the plan's (technique and predictions jobs): Snakemake's rules of one job each.
DRY_OTHER_JOBS = ["image_status", "summary", "gallery", "all"]

# Where the time of `snakemake -n` goes: functions to report by cumulative time
# (the first match of each pattern).
PROFILE_POINTS = [
    ("read the workflow (Snakefile + rules/*.smk)", r"workflow\.py.*\(include\)"),
    ("  of which: rule() decorator per job rule", r"workflow\.py.*\(decorate\)"),
    ("  of which: check_images (image check, cache)", r"image_list\.py.*\(check_images\)"),
    ("  of which: list_images", r"image_list\.py.*\(list_images\)"),
    ("  of which: config check (schema, import torch/models)", r"\(check_config\)"),
    ("  of which: check_models (layer names on the meta device, cached)", r"model_check\.py.*\(check_models\)"),
    ("  of which: make_plan (chunks, jobs, outputs)", r"plan\.py.*\(make_plan\)"),
    ("build the DAG (DAG.init)", r"dag\.py.*\(init\)"),
    ("  of which: update (match outputs to rules)", r"dag\.py.*\(update\)$"),
    ("  of which: rule candidates for a file", r"dag\.py.*\(file2jobs\)"),
    ("  of which: job creation (new_job)", r"dag\.py.*\(new_job\)"),
    ("  of which: output existence / mtimes", r"dag\.py.*\(update_needrun\)"),
    ("scheduler (dry-run execution)", r"scheduler\.py.*\(schedule\)"),
    ("  of which: job selection", r"scheduler\.py.*\(job_selector"),
    ("regex matching of rule outputs (Rule.is_producer / match)", r"rules\.py.*\(is_producer\)"),
]


def profile_rows(prof: Path) -> list[dict]:
    stats = pstats.Stats(str(prof))
    total = max((v[3] for v in stats.stats.values()), default=0.0)
    labelled = {}
    for (filename, line, func), (_cc, nc, tt, ct, _callers) in stats.stats.items():
        key = f"{filename}:{line}({func})"
        labelled[key] = (nc, tt, ct)
    rows = [{"what": "total (cProfile, inflated by profiling)", "calls": 1, "cum": total}]
    for what, pattern in PROFILE_POINTS:
        hits = [(k, v) for k, v in labelled.items() if re.search(pattern, k)]
        if hits:
            key, (nc, tt, ct) = max(hits, key=lambda kv: kv[1][2])
            rows.append({"what": what, "calls": nc, "cum": ct, "where": _short(key)})
    top = sorted(labelled.items(), key=lambda kv: kv[1][1], reverse=True)[:12]
    rows.append({"what": "--- top functions by own time ---", "calls": "", "cum": None})
    for key, (nc, tt, ct) in top:
        rows.append({"what": _short(key), "calls": nc, "cum": ct, "own": tt})
    return rows


def _short(key: str) -> str:
    key = re.sub(r"^.*/site-packages/", "", key)
    return re.sub(r"^.*/(rules/|Snakefile|cnnvis_tasks/)", r"\1", key)


# --- the section --------------------------------------------------------------------


def _s(value) -> str:
    return "-" if value is None else f"{value:.1f} s"


def _wall(result: dict | None) -> str:
    if not result:
        return "-"
    text = f"{result['wall']:.1f} s"
    if result.get("timed_out"):
        return f"> {text} (timed out)"
    if result.get("rc"):
        return f"{text} (failed, rc {result['rc']})"
    return text


def _ok(result: dict | None) -> bool:
    return bool(result) and result.get("rc") == 0 and not result.get("timed_out")


def render_section(results: dict, args, info: dict, command: str, started: str, loads: tuple) -> str:
    lines = [SECTION, ""]
    end_load = f"{loads[1]:.2f}" if loads[1] is not None else "(running)"
    lines += [
        f"Date: {started}. Command: `{command}`",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores; Python {info['python']}, torch {info['torch']}, "
        f"snakemake {info['snakemake']}. Load average (1 min) at start {loads[0]:.2f}, at end {end_load}"
        + (" (the machine was shared with other work: timings are noisy)." if loads[0] > 0.5 else "."),
        "",
    ]
    run = results.get("run")
    if run:
        n, k, cores = run["n"], run["k"], run["cores"]
        lines += [
            f"### Run: {n} images x 3 techniques, `snakemake --cores {cores}`",
            "",
            f"Synthetic 96x128 JPEGs; EfficientNet-Lite0 (embedded weights), size {args.size}, "
            f"batch {default_batch_size()}, "
            f"device cpu, 1 thread per job: saliency vanilla (gray), Grad-CAM (auto layer, overlay), feature maps "
            f"({FM_LAYER}). Targets: the {3 * n} technique pictures, so the jobs are the three techniques' "
            "(the workflow's predictions jobs, one per model and chunk, run with image_status, the summary and "
            "the gallery, timed separately below). Wall time includes Snakemake reading the workflow and every "
            "job's process start.",
            "",
            "| run | images | jobs | chunks | wall | per image |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for key, label in (
            ("a", f"(a) chunked, chunk_size {run['chunk_size']}"),
            ("a_k", f"(a) chunked, chunk_size {run['chunk_size']}"),
            ("b", "(b) one image per job (chunk_count pinned, no two images share a chunk)"),
        ):
            r = run.get(key)
            if r:
                per = f"{r['wall'] / r['images']:.2f} s" if _ok(r) else "-"
                lines.append(f"| {label} | {r['images']} | {r['jobs']} | {r['chunk_count']} | {_wall(r)} | {per} |")
        lb = run.get("lb")
        if lb:
            per = f"{lb['wall'] / n:.3f} s" if _ok(lb) else "-"
            threads = args.lb_threads or args.cores
            lines.append(
                f"| (c) in-process lower bound: one process, model loaded once, {threads} torch threads "
                f"| {n} | 1 | - | {_wall(lb)} | {per} |"
            )
        lines.append("")

        a, b, a_k = run.get("a"), run.get("b"), run.get("a_k")
        ratio_lines = []
        if _ok(a) and _ok(lb):
            ratio = a["wall"] / lb["wall"]
            ratio_lines.append(
                f"| chunked / lower bound, N={n} | {ratio:.2f} | <= 1.3 | {'met' if ratio <= 1.3 else 'NOT met'} |"
            )
        if _ok(b) and (_ok(a_k) or (k == n and _ok(a))):
            ref = a_k if _ok(a_k) else a
            ratio = b["wall"] / ref["wall"]
            ratio_lines.append(
                f"| one-image-per-job / chunked, measured at N={k} | {ratio:.2f} | >= 5 | "
                f"{'met' if ratio >= 5 else 'NOT met'} at N={k} |"
            )
        noop = run.get("noop")
        if _ok(b) and _ok(a) and k < n and _ok(noop):
            # per-image jobs: a fixed Snakemake cost plus a cost per job; scale the latter to N
            fixed = noop["wall"]
            estimate = fixed + (b["wall"] - fixed) * n / k
            run["b_estimate"] = estimate
            ratio = estimate / a["wall"]
            ratio_lines.append(
                f"| one-image-per-job / chunked, N={n} **extrapolated** "
                f"(b at N={n} ~ {fixed:.1f} + ({b['wall']:.1f} - {fixed:.1f}) x {n}/{k} = {estimate:.0f} s) | "
                f"{ratio:.1f} | >= 5 | {'met' if ratio >= 5 else 'NOT met'} (estimate) |"
            )
        if ratio_lines:
            lines += ["| ratio | value | target | |", "|---|---:|---:|---|"] + ratio_lines + [""]
        extra = []
        if noop:
            extra.append(
                f"a second `snakemake` over the same targets (nothing to do: read the workflow, check the "
                f"cached images, build the DAG) took {_wall(noop)}"
            )
        rest = run.get("rest")
        if rest:
            extra.append(
                "then building the rest of the workflow (image_status, a predictions job per chunk, summary, "
                f"gallery) took {_wall(rest)}"
            )
        if _ok(a) and a["rows"]:
            job_s = [row["s"] for row in a["rows"]]
            extra.append(
                f"the chunked jobs took {statistics.median(job_s):.1f} s each (median of {len(job_s)}; "
                f"{sum(job_s):.0f} job-seconds in all)"
            )
        if _ok(b) and b["rows"]:
            job_s = [row["s"] for row in b["rows"]]
            extra.append(
                f"a one-image job took {statistics.median(job_s):.1f} s (median of {len(job_s)}), nearly all "
                "of it the process start (Python, torch, model load)"
            )
        if lb and lb.get("inside"):
            inside = lb["inside"]
            extra.append(
                "inside the lower-bound process: "
                + ", ".join(f"{key} {inside[key]:.1f} s" for key in RUN_OUTPUTS if key in inside)
                + f" (the rest of its {lb['wall']:.1f} s is starting Python and importing torch)"
            )
        same = run.get("same")
        if same:
            text = (
                f"the lower bound's {same['compared']} pictures against the chunked run's: "
                f"{same['differing']} differ (max pixel difference {same['max_diff']}), {same['missing']} missing"
            )
            records = same.get("records")
            if records:
                text += (
                    f"; images failed in the jobs' records: chunked {records['a']['failed']} of "
                    f"{records['a']['rows']}, lower bound {records['b']['failed']} of {records['b']['rows']}"
                )
            extra.append(text)
        if extra:
            lines += ["Also: " + "; ".join(extra) + ".", ""]

        # memory
        mem_runs = [(key, run.get(key)) for key in ("b", "a_k", "mem", "a") if _ok(run.get(key)) and run[key]["rows"]]
        if mem_runs:
            lines += [
                "### Peak memory per job (max_rss of Snakemake's benchmark files)",
                "",
                "| run | technique | images per job | jobs | max_rss MiB median | max_rss MiB max |",
                "|---|---|---|---:|---:|---:|",
            ]
            for key, r in mem_runs:
                label = {
                    "b": "one image per job",
                    "a": f"chunk_size {run['chunk_size']}",
                    "a_k": f"chunk_size {run['chunk_size']} (N={k})",
                    "mem": f"chunk_size {args.mem_chunk_size} (N={args.mem_images})",
                }[key]
                for technique in sorted({row["technique"] for row in r["rows"]}):
                    rows = [row for row in r["rows"] if row["technique"] == technique]
                    sizes = [row["images"] for row in rows]
                    rss = [row["max_rss"] for row in rows]
                    span = f"{min(sizes)}" if min(sizes) == max(sizes) else f"{min(sizes)}-{max(sizes)}"
                    lines.append(
                        f"| {label} | {technique} | {span} | {len(rows)} | {statistics.median(rss):.0f} "
                        f"| {max(rss):.0f} |"
                    )
            # slope over all chunk jobs with at least a full batch
            lines.append("")
            for technique in sorted({row["technique"] for _, r in mem_runs for row in r["rows"]}):
                pts = [
                    (row["images"], row["max_rss"])
                    for _, r in mem_runs
                    for row in r["rows"]
                    if row["technique"] == technique and row["images"] >= default_batch_size()
                ]
                if len({x for x, _ in pts}) >= 2:
                    mx = statistics.mean(x for x, _ in pts)
                    my = statistics.mean(y for _, y in pts)
                    slope = sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)
                    lines.append(
                        f"- {technique}: least-squares slope over jobs with >= {default_batch_size()} images "
                        f"({min(x for x, _ in pts)}-{max(x for x, _ in pts)} images): {slope:+.2f} MiB per image"
                    )
            lines.append("")

    dry = results.get("dry")
    if dry and dry["sizes"]:
        lines += [
            f"### Dry run: M images x 5 techniques (`snakemake -n --cores {args.cores} --quiet all`)",
            "",
            f"Tiny 16x16 PNGs; feature maps, saliency, deep dream, deep dream with octaves, Grad-CAM (one setting "
            f"each), chunk_size {dry['chunk_size']}: one job per technique and chunk, one predictions job per chunk, "
            "and image_status, summary, gallery and all. Cold: no `results/.cache` (every image decoded, and the "
            "config's layers checked against the model built on the meta device, while the workflow is read); "
            "warm: the second run. "
            "In-process columns: `list_images` of the folder / manifest and `check_images` without / with the cache.",
            "",
            "| M | chunks | jobs | folder cold | folder warm | warm, `--scheduler greedy` | manifest cold "
            "| manifest warm "
            "| list folder / manifest | check cold / warm |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
        ]
        for e in dry["sizes"]:
            cells = [
                _wall(e.get(key))
                for key in ("folder_cold", "folder_warm", "folder_warm_greedy", "manifest_cold", "manifest_warm")
            ]
            lines.append(
                f"| {e['m']} | {e.get('chunks', '-')} | {e.get('jobs', '-')} | "
                + " | ".join(cells)
                + f" | {e['list_folder']:.2f} / {e['list_manifest']:.2f} s"
                + f" | {e['check_cold']:.1f} / {e['check_warm']:.2f} s |"
            )
        lines.append("")
        done = [(e["m"], e["folder_warm"]["wall"]) for e in dry["sizes"] if _ok(e.get("folder_warm"))]
        if len(done) >= 2:
            import math

            (m1, t1), (m2, t2) = done[-2], done[-1]
            exponent = math.log(t2 / t1) / math.log(m2 / m1)
            goal = max(10000, max(args.dry_images))
            lines.append(
                f"Scaling of the warm folder dry run from M={m1} to M={m2}: wall time ~ M^{exponent:.2f} "
                "(whole wall times, Snakemake's fixed start-up included, so the part that grows with M grows "
                "faster than this)"
                + (
                    f"; extrapolated to M={goal}: at least about {t2 * (goal / m2) ** exponent / 60:.0f} minutes "
                    "(an estimate, not a measurement)."
                    if goal > m2
                    else "."
                )
            )
        if dry.get("skipped"):
            lines.append(
                f"Not run (a smaller M timed out after {args.dry_timeout:.0f} s): M = "
                + ", ".join(str(m) for m in dry["skipped"])
                + "."
            )
        lines.append("")
        prof = dry.get("profile")
        if prof and prof["rows"]:
            lines += [
                f"Where a warm dry run of {prof['m']} images spends its time (cProfile, cumulative seconds; "
                f"profiling inflates them, {prof['wall']:.0f} s wall under the profiler):",
                "",
                "| what | function | calls | cumulative s | own s |",
                "|---|---|---:|---:|---:|",
            ]
            for row in prof["rows"]:
                cum = "" if row.get("cum") is None else f"{row['cum']:.1f}"
                own = f"{row['own']:.1f}" if "own" in row else ""
                where = row.get("where", "")
                lines.append(f"| {row['what']} | {where} | {row['calls']} | {cum} | {own} |")
            lines.append("")
    notes = results.get("notes")
    if notes:
        lines += notes + [""]
    return "\n".join(lines)


# --- main ---------------------------------------------------------------------------


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=None, help="N: images of the run (default 200; --quick 24)")
    parser.add_argument(
        "--per-image-images",
        type=int,
        default=None,
        help="images of the one-image-per-job run (default N; smaller is extrapolated to N)",
    )
    parser.add_argument(
        "--chunk-size", type=int, default=None, help="chunk_size of the chunked run (default: the config default)"
    )
    parser.add_argument(
        "--mem-chunk-size",
        type=int,
        default=16,
        help="a second chunk size, for memory against images per job (default 16; 0: skip)",
    )
    parser.add_argument("--mem-images", type=int, default=None, help="images of that run (default 64; --quick 24)")
    parser.add_argument(
        "--dry-images",
        default=None,
        help="M, or a comma-separated list of M, for the dry run (default 10000; --quick 1000)",
    )
    parser.add_argument(
        "--dry-cases",
        default=",".join(DRY_CASES),
        help=f"which dry runs, comma-separated (default all: {','.join(DRY_CASES)})",
    )
    parser.add_argument(
        "--dry-chunk-size", type=int, default=None, help="chunk_size of the dry run (default: the config default)"
    )
    parser.add_argument(
        "--profile-dry",
        type=int,
        default=None,
        help="profile a warm dry run of this many images (one of --dry-images; default: none)",
    )
    parser.add_argument("--cores", type=int, default=2, help="snakemake --cores (default 2)")
    parser.add_argument(
        "--size",
        type=int,
        default=224,
        help="image size (shorter side) of the runs (default 224, the workflow's default)",
    )
    parser.add_argument(
        "--lb-threads", type=int, default=None, help="torch threads of the lower bound (default: --cores)"
    )
    parser.add_argument("--skip-run", action="store_true", help="leave out the runs and the memory table")
    parser.add_argument("--skip-dry", action="store_true", help="leave out the dry runs")
    parser.add_argument("--quick", action="store_true", help="small sizes (sanity check)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per snakemake run (default 3600)")
    parser.add_argument("--dry-timeout", type=float, default=900, help="seconds per dry run (default 900)")
    parser.add_argument(
        "--tmp", type=Path, default=None, help="work folder (default: a new temporary one, removed at the end)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="markdown file to update (default bench/RESULTS.md)"
    )
    parser.add_argument("--_lower-bound", dest="lower_bound", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.lower_bound:
        return args
    args.images = args.images or (24 if args.quick else 200)
    args.per_image_images = args.per_image_images or args.images
    args.mem_images = args.mem_images or (24 if args.quick else 64)
    dry = args.dry_images or ("1000" if args.quick else "10000")
    args.dry_cases = [c.strip() for c in args.dry_cases.split(",") if c.strip()]
    args.dry_images = sorted({int(x) for x in str(dry).split(",") if x.strip()})
    args.chunk_size = args.chunk_size or default_chunk_size()
    args.dry_chunk_size = args.dry_chunk_size or default_chunk_size()
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.lower_bound:
        lower_bound_main(args.lower_bound)
        return
    command = display_command()
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load_start = os.getloadavg()[0]
    info = machine_info()
    tmp = args.tmp or Path(tempfile.mkdtemp(prefix="cnnvis-dataset-"))
    tmp.mkdir(parents=True, exist_ok=True)
    logs = tmp / "logs"
    logs.mkdir(exist_ok=True)
    print(f"[dataset] work folder {tmp}", flush=True)
    results: dict = {}

    def flush(final: bool = False) -> None:
        loads = (load_start, os.getloadavg()[0] if final else None)
        write_section(args.out, render_section(results, args, info, command, started, loads))

    try:
        if not args.skip_run:
            part_run(args, tmp, logs, results, flush)
        if not args.skip_dry:
            part_dry(args, tmp, logs, results, flush)
    finally:
        flush(final=True)
        print(f"[dataset] wrote section {SECTION!r} of {args.out}", flush=True)
        if args.keep or args.tmp:
            print(f"[dataset] kept {tmp}", flush=True)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
