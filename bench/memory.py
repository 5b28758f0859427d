#!/usr/bin/env python
"""Peak memory of one workflow job against the number of images it is given.

A chunk job is one ``cnnvis-tasks`` process over all the images of its chunk.
For each of the dataset benchmark's three techniques (``bench/dataset.py``:
saliency vanilla, Grad-CAM with its overlay, feature maps of one layer) and
each image count, this runs one job's command line (``job_commands``, which
the dataset benchmark's lower bound also runs: the plan's arguments and runtime
arguments, with ``--keep-going --placeholders --record``) as a fresh process
and records its peak resident set size (``ru_maxrss`` of that child, from
``os.wait4``), the median of its resident set size sampled over the second half
of the run, and its wall time.  A job that kept something for every image would
raise both with the count.  A cell counts only when the job wrote one picture per
image and its record lists none as failed.  Writes the section ``## Peak memory
of one job`` of ``bench/RESULTS.md``.

    .venv/bin/python bench/memory.py                    # 16, 64, 256, 1024 images
    .venv/bin/python bench/memory.py --counts 16,64     # quicker
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dataset import (  # noqa: E402
    MODEL,
    default_batch_size,
    job_commands,
    machine_info,
    make_images,
    record_failures,
    record_path,
)
from results_file import display_command, status_mib, write_section  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SECTION = "## Peak memory of one job"
DEFAULT_OUT = REPO / "bench" / "RESULTS.md"
LABELS = {
    "saliency": "saliency (vanilla, gray)",
    "grad_cam": "Grad-CAM (auto layer, overlay)",
    "feature_maps": "feature maps (one layer)",
}


def run_job(args: list[str], timeout: float, env: dict[str, str] | None = None) -> dict:
    """Run ``cnnvis-tasks ARGS``: its peak RSS, the median of its RSS sampled every
    0.2 s over the second half of the run (MiB), and wall seconds.  Fails loudly."""
    command = [sys.executable, "-m", "cnnvis_tasks", *args]
    errors_file = tempfile.TemporaryFile()  # not a pipe: a full pipe would block the job
    start = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=errors_file, env={**os.environ, **(env or {})}
    )
    deadline = start + timeout
    samples = []
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() > deadline:
            process.kill()
            pid, status, usage = os.wait4(process.pid, 0)
            raise RuntimeError(f"timed out after {timeout:.0f} s: {' '.join(args[:3])} ...")
        rss = status_mib("VmRSS", process.pid)
        if rss is not None:
            samples.append(rss)
        time.sleep(0.2)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    errors_file.seek(0)
    errors = errors_file.read().decode(errors="replace")
    errors_file.close()
    if process.returncode:
        raise RuntimeError(f"exit status {process.returncode}: {errors[-2000:]}")
    late = samples[len(samples) // 2 :]
    return {
        "peak": usage.ru_maxrss / 1024,  # ru_maxrss is in KiB on Linux
        "median": statistics.median(late) if late else None,
        "wall": wall,
    }


def render(rows: dict, args, info: dict, command: str, started: str) -> str:
    counts = args.counts
    lines = [
        SECTION,
        "",
        f"Date: {started}. Command: `{command}`",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores; Python {info['python']}, torch {info['torch']}.",
        "",
        f"Each cell is one fresh `cnnvis-tasks` process over that many images, with the command line of "
        f"`bench/dataset.py`'s jobs (`job_commands`): model {MODEL}, device cpu, {args.threads} thread(s), images "
        f"{args.size} px (shorter side), batch size {args.batch_size}. Each cell: peak resident set size of "
        f"the process (`ru_maxrss`) / median of its resident set size sampled every 0.2 s over the second half "
        f"of the run, MiB; then wall time."
        + (f" Job environment: {', '.join(f'`{k}={v}`' for k, v in args.env.items())}." if args.env else ""),
        "",
        "| technique | " + " | ".join(f"{n} images" for n in counts) + " | peak, MiB per image, last two counts |",
        "|---|" + "---:|" * (len(counts) + 1),
    ]
    for key, cells in rows.items():
        shown = [_cell(cells[n]) if n in cells else "-" for n in counts]
        done = [n for n in counts if n in cells]
        slope = ""
        if len(done) >= 2:
            a, b = done[-2], done[-1]
            slope = f"{(cells[b]['peak'] - cells[a]['peak']) / (b - a):+.3f}"
        lines.append(f"| {LABELS[key]} | " + " | ".join(shown) + f" | {slope} |")
    lines += [
        "",
        "The peak is the highest point reached in any one batch, so more batches give it more chances "
        "to be high; the median is where the job usually sits. A job that kept something for every image "
        "would raise both with the count.",
        "",
    ]
    return "\n".join(lines)


def _cell(cell: dict) -> str:
    median = "-" if cell["median"] is None else f"{cell['median']:.0f}"
    return f"{cell['peak']:.0f} / {median} ({cell['wall']:.0f} s)"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--counts", default="16,64,256,1024", help="image counts, comma-separated (default 16,64,256,1024)"
    )
    parser.add_argument("--techniques", default=",".join(LABELS), help=f"comma-separated (default {','.join(LABELS)})")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads per job, as the workflow's jobs (default 1)"
    )
    parser.add_argument("--size", type=int, default=224, help="image size, shorter side (default 224)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the workflow's")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per job (default 3600)")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set in each job's environment, e.g. MALLOC_MMAP_THRESHOLD_=131072; repeatable",
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="markdown file to update (default bench/RESULTS.md)"
    )
    args = parser.parse_args(argv)
    args.counts = sorted({int(n) for n in args.counts.split(",") if n.strip()})
    args.batch_size = args.batch_size or default_batch_size()
    if any("=" not in item for item in args.env):
        parser.error("--env takes NAME=VALUE")
    args.env = dict(item.split("=", 1) for item in args.env)
    techniques = [t.strip() for t in args.techniques.split(",") if t.strip()]
    unknown = set(techniques) - set(LABELS)
    if unknown:
        parser.error(f"unknown technique(s) {', '.join(sorted(unknown))}; choose from {', '.join(LABELS)}")

    command = display_command()
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    info = machine_info()
    tmp = Path(tempfile.mkdtemp(prefix="cnnvis-memory-"))
    rows: dict = {key: {} for key in techniques}
    try:
        print(f"[memory] making {max(args.counts)} images in {tmp}", flush=True)
        paths = make_images(tmp / "images", max(args.counts))
        for count in args.counts:
            for key in techniques:
                out = tmp / "out" / f"{key}-{count}"
                job = job_commands(paths[:count], out, args.threads, args.size, args.batch_size)[key]
                rows[key][count] = run_job(job, args.timeout, args.env)
                written = sum(1 for _ in out.rglob("*.png"))
                if written != count:
                    raise RuntimeError(f"{key} with {count} images wrote {written} pictures")
                # the job runs with --keep-going --placeholders, as in the workflow: a failed image
                # would still get a (placeholder) picture and exit status 0, so read its record
                recorded, failed = record_failures(record_path(job))
                if recorded != count or failed:
                    raise RuntimeError(
                        f"{key} with {count} images: its record lists {recorded} images, {len(failed)} failed"
                        + (f", e.g. {failed[0]}" if failed else "")
                    )
                print(f"[memory] {key} {count} images: {_cell(rows[key][count])}", flush=True)
                write_section(args.out, render(rows, args, info, command, started))
                shutil.rmtree(out, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"[memory] wrote section {SECTION!r} of {args.out}", flush=True)


if __name__ == "__main__":
    main()
