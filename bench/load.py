#!/usr/bin/env python
"""Load test: the whole workflow on a few thousand generated images, several techniques,
``snakemake --cores 2``: images per second, each job's peak memory against the ``mem_mb``
it declared, and the jobs that failed.

    .venv/bin/python bench/load.py                         # 2,000 images (about 10 minutes on 2 cores)
    .venv/bin/python bench/load.py --images 500 --no-write # a quick look

The run is the chunk layout (``chunk_size`` 250) with vanilla saliency, Grad-CAM and
feature maps on the embedded EfficientNet-Lite0 at 128 px, and the predictions, the
summary and the gallery: what a data-set run does.  ``--mem-limit N`` adds
``--resources mem_mb=N`` (the jobs then run no more at once than fit in N MB).  Each job's
peak comes from Snakemake's benchmark file (``max_rss``), its declaration from the
resources Snakemake printed for it.  Goal: no failed job, and no job whose declared
``mem_mb`` is below its measured peak.  Writes the section ``## Load test: a data set
through the whole workflow`` of ``bench/RESULTS.md`` (with ``--mem-limit``, a section of its own).
"""

from __future__ import annotations

import argparse
import datetime
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dataset import FM_LAYER, MODEL, env_for_jobs, machine_info, make_images, make_workdir, run_timed, snakemake_cmd  # noqa: E402
from results_file import display_command, write_section  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SECTION = "## Load test: a data set through the whole workflow"
SIZE = 128


def load_config(chunk_size: int) -> dict:
    """Three techniques over every image, in the chunk layout."""
    return {
        "images": {"folder": "images"},
        "results": "results",
        "layout": "chunks",
        "chunk_size": chunk_size,
        "device": "cpu",
        "threads": 1,
        "models": {MODEL: {"weights": "default"}},
        "gallery": {"title": "cnnvis load test"},
        "techniques": {
            "saliency": {"methods": ["vanilla"], "renderings": ["gray"], "size": SIZE, "models": {MODEL: {}}},
            "grad_cam": {"renderings": ["overlay"], "size": SIZE, "models": {MODEL: {"layers": ["auto"]}}},
            "feature_maps": {"size": SIZE, "channels": 8, "models": {MODEL: {"layers": [FM_LAYER]}}},
        },
    }


def declared_resources(log: str) -> dict[str, dict[str, str]]:
    """Benchmark file -> the resources Snakemake printed for its job (``mem_mb``, ``runtime``)."""
    found = {}
    for block in re.split(r"\n\s*\n", log):
        benchmark = re.search(r"^\s*benchmark: (\S+)", block, re.M)
        resources = re.search(r"^\s*resources: (.+)$", block, re.M)
        if benchmark and resources:
            pairs = re.findall(r"(\w+)=([^,]+)", resources.group(1))
            found[benchmark.group(1)] = {key: value.strip() for key, value in pairs}
    return found


def measured(workdir: Path, declared: dict[str, dict[str, str]]) -> list[dict]:
    """One row per job that declared ``mem_mb``: its rule folder, seconds, peak and declaration."""
    rows = []
    for benchmark, resources in declared.items():
        if "mem_mb" not in resources:
            continue
        path = workdir / benchmark
        lines = path.read_text().splitlines() if path.is_file() else []
        if len(lines) < 2:
            rows.append({"job": benchmark, "s": None, "max_rss": None, "mem_mb": int(resources["mem_mb"])})
            continue
        record = dict(zip(lines[0].split("\t"), lines[1].split("\t")))
        rss = record.get("max_rss", "NA")
        rows.append(
            {
                "job": benchmark,
                "s": float(record["s"]),
                "max_rss": None if rss in ("NA", "-") else float(rss),
                "mem_mb": int(resources["mem_mb"]),
                "runtime": int(resources.get("runtime", 0) or 0),
            }
        )
    return rows


def kind_of(job: str) -> str:
    """A job's technique from its benchmark path (results/benchmarks/MODEL/TECHNIQUE/...)."""
    parts = Path(job).parts
    return parts[3] if len(parts) > 3 else parts[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--chunk-size", type=int, default=250)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--mem-limit", type=int, default=None, help="--resources mem_mb=N")
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "RESULTS.md")
    parser.add_argument("--no-write", action="store_true", help="print the section only")
    args = parser.parse_args()
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    with tempfile.TemporaryDirectory(prefix="cnnvis-load-") as tmp:
        workdir = make_workdir(Path(tmp) / "wf", load_config(args.chunk_size))
        make_images(workdir / "images", args.images, height=240, width=320)
        command = [*snakemake_cmd(), "--cores", str(args.cores), "--printshellcmds"]
        if args.mem_limit:
            command += ["--resources", f"mem_mb={args.mem_limit}"]
        print(f"[load] {args.images} images: {' '.join(command[1:])}", flush=True)
        result = run_timed(command, workdir, args.timeout, workdir / "snakemake.out", env_for_jobs())
        log = (workdir / "snakemake.out").read_text()
        rows = measured(workdir, declared_resources(log))
        failed = len(re.findall(r"^Error in rule ", log, re.M))
        pictures = sum(1 for _ in (workdir / "results").rglob("*.png"))
    over = [row for row in rows if row["max_rss"] is not None and row["max_rss"] > row["mem_mb"]]
    per_kind: dict[str, list[dict]] = {}
    for row in rows:
        per_kind.setdefault(kind_of(row["job"]), []).append(row)
    info = machine_info()
    lines = [
        SECTION + (f", under --resources mem_mb={args.mem_limit}" if args.mem_limit else ""),
        "",
        f"Date: {started}. Command: `{display_command()}`",
        "",
        f"Machine: {info.get('cpu', '?')}, {info.get('cores', '?')} cores; torch {info.get('torch', '?')}.",
        "",
        f"{args.images:,} generated 320x240 JPEGs in one folder, the chunk layout at chunk_size {args.chunk_size}, "
        f"vanilla saliency, Grad-CAM and feature maps ({FM_LAYER}, 8 channels) of EfficientNet-Lite0 at {SIZE} px, "
        f"the predictions, summary and gallery; `snakemake --cores {args.cores}`"
        + (f" `--resources mem_mb={args.mem_limit}`" if args.mem_limit else "")
        + ".",
        "",
        f"- Wall time {result['wall']:.0f} s (exit {result['rc']}{', timed out' if result['timed_out'] else ''}): "
        f"**{args.images / result['wall']:.2f} images per second** through three techniques and the predictions; "
        f"{pictures:,} pictures.",
        f"- Jobs that declared `mem_mb`: {len(rows)}; failed jobs: **{failed}**; jobs whose peak exceeded their "
        f"declared `mem_mb`: **{len(over)}**.",
        "",
        "| job kind | jobs | seconds (median) | peak MB (largest) | declared mem_mb | declared / peak (least) "
        "| runtime min |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, group in sorted(per_kind.items()):
        seconds = sorted(row["s"] for row in group if row["s"] is not None)
        peaks = [row["max_rss"] for row in group if row["max_rss"]]
        ratios = [row["mem_mb"] / row["max_rss"] for row in group if row["max_rss"]]
        lines.append(
            f"| {kind} | {len(group)} | {seconds[len(seconds) // 2] if seconds else float('nan'):.1f} "
            f"| {max(peaks) if peaks else float('nan'):,.0f} | {max(row['mem_mb'] for row in group):,} "
            f"| {min(ratios) if ratios else float('nan'):.2f} | {max(row.get('runtime', 0) for row in group)} |"
        )
    if result["rc"] != 0:
        lines += ["", "Snakemake's last lines:", "", "```", result["tail"][-1500:], "```"]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        write_section(args.out, text)


if __name__ == "__main__":
    main()
