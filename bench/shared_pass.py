#!/usr/bin/env python
"""Three techniques from one forward and backward per batch, against three separate jobs.

Over synthetic 500 x 375 JPEGs (those of bench/job_split.py) on the CPU, EfficientNet-Lite0,
this times, as fresh processes one after another, the three commands a chunk of the
workflow runs today:

- ``cnnvis-tasks saliency --method vanilla --rendering gray``
- ``cnnvis-tasks grad-cam --rendering overlay``
- ``cnnvis-tasks feature-maps --layer _blocks.4``

(each ``--keep-going --placeholders --record``, ``--png-level 1``, batch 16, 224 px),
against one ``cnnvis-tasks shared-pass`` process with the same three jobs; the
separate runs and the shared run alternate, ``--repeats`` times.  It checks that both
wrote the same files byte for byte, and writes the section ``## Shared pass: three
techniques, one forward and backward`` of bench/RESULTS.md.

    .venv/bin/python bench/shared_pass.py                     # 64 images, --threads 2, 3 repeats
    .venv/bin/python bench/shared_pass.py --count 8 --repeats 1 --out /tmp/r.md   # a sanity check
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from job_split import make_images  # noqa: E402
from results_file import display_command, write_section  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SECTION = "## Shared pass: three techniques, one forward and backward"
JOBS = {
    "saliency": "saliency --method vanilla --rendering gray",
    "grad-cam": "grad-cam --rendering overlay",
    "feature-maps": "feature-maps --layer _blocks.4",
}


def job_arguments(name: str, out: Path) -> str:
    return (
        f"{JOBS[name]} --out-dir {out}/{name} --record {out}/{name}.json --keep-going --placeholders "
        "--batch-size 16 --png-level 1"
    )


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def compare(first: Path, second: Path) -> tuple[int, int]:
    """(files, files that differ or are missing) of ``first`` against ``second``."""
    names = [p.relative_to(first) for p in first.rglob("*") if p.is_file()]
    differ = sum(
        1
        for name in names
        if not (second / name).is_file() or (second / name).read_bytes() != (first / name).read_bytes()
    )
    others = sum(1 for p in second.rglob("*") if p.is_file()) - len(names)
    return len(names), differ + abs(others)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=64, help="images")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tmp", type=Path, default=Path("/tmp/cnnvis-shared-pass"))
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "RESULTS.md")
    args = parser.parse_args()

    images = args.tmp / "images"
    make_images(images, args.count)
    tool = [str(Path(sys.executable).parent / "cnnvis-tasks")]
    common = ["--model", "efficientnet_lite0", "--weights", "default", "--seed", "0", "--image", str(images)]
    common += ["--device", "cpu", "--threads", str(args.threads), "--quiet"]
    environment = os.environ | {"PYTHONPATH": str(REPO)}
    os.environ.update(environment)
    load = os.getloadavg()
    separate: dict[str, list[float]] = {name: [] for name in JOBS}
    shared: list[float] = []
    for repeat in range(args.repeats):
        for which in ("separate", "shared"):
            out = args.tmp / f"{which}{repeat}"
            shutil.rmtree(out, ignore_errors=True)
            if which == "separate":
                for name in JOBS:
                    words = shlex.split(job_arguments(name, out))
                    separate[name].append(timed([*tool, words[0], *common, *words[1:]]))
            else:
                jobs = [a for name in JOBS for a in ("--job", job_arguments(name, out))]
                shared.append(timed([*tool, "shared-pass", *common, *jobs]))
        print(
            f"repeat {repeat + 1}: separate {[round(v[-1], 1) for v in separate.values()]} s, "
            f"shared {shared[-1]:.1f} s",
            file=sys.stderr,
        )
    files, differ = compare(args.tmp / "separate0", args.tmp / "shared0")

    totals = [sum(values[k] for values in separate.values()) for k in range(args.repeats)]
    best_separate, best_shared = min(totals), min(shared)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    import PIL
    import torch

    lines = [
        SECTION,
        "",
        f"Run {datetime.date.today()} on {platform.processor() or platform.machine()} ({os.cpu_count()} cores), "
        f"Python {platform.python_version()}, torch {torch.__version__}, Pillow {PIL.__version__}, commit "
        f"`{commit.stdout.strip()}`; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the start. Command:",
        "",
        "    " + display_command(),
        "",
        f"{args.count} synthetic 500 x 375 JPEGs, EfficientNet-Lite0 (default weights), `--device cpu --threads "
        f"{args.threads}`, batch 16, 224 px, `--png-level 1`, each job `--keep-going --placeholders --record`. "
        "*separate*: the three commands one after another, each a fresh process (its own start-up, model load, "
        "decoding, forward and, for saliency and Grad-CAM, backward); *shared*: one `cnnvis-tasks shared-pass` "
        "process with the same three `--job`s (one start-up, one decode, one forward and one backward per "
        f"batch). Wall time of the processes, {args.repeats} alternating repeats.",
        "",
        "| run | " + " | ".join(f"repeat {k + 1} s" for k in range(args.repeats)) + " | best s |",
        "|---|" + "---:|" * (args.repeats + 1),
    ]
    for name, values in separate.items():
        lines.append(f"| {name} | " + " | ".join(f"{v:.1f}" for v in values) + f" | {min(values):.1f} |")
    lines.append("| **separate, the three** | " + " | ".join(f"{v:.1f}" for v in totals) + f" | {best_separate:.1f} |")
    lines.append("| **shared-pass** | " + " | ".join(f"{v:.1f}" for v in shared) + f" | {best_shared:.1f} |")
    lines += [
        "",
        f"- Best of each: separate {best_separate:.1f} s, shared {best_shared:.1f} s: "
        f"**{best_separate / best_shared:.2f}x** faster ({100 * (1 - best_shared / best_separate):.0f}% less time); "
        f"medians {statistics.median(totals):.1f} s and {statistics.median(shared):.1f} s "
        f"({statistics.median(totals) / statistics.median(shared):.2f}x).",
        f"- The first repeat's outputs: {files} files (PNGs and records); {differ} differ in any byte "
        "between the separate commands and the shared pass.",
        "",
    ]
    write_section(args.out, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
