"""A data-set run end to end, before and after the throughput work, in one run.

    .venv/bin/python bench/throughput.py                  # 200 images, 3 techniques, --cores 2
    .venv/bin/python bench/throughput.py --images 24      # a sanity check

It makes N deterministic pictures (those of ``bench/dataset.py``'s runs) and times
``snakemake --cores C all`` (every job: the image check, the techniques, the
predictions, the summary and the gallery) of vanilla saliency (gray), Grad-CAM
(overlay) and feature maps (one layer) on EfficientNet-Lite0 at 224 px, CPU, one
thread per job, in fresh folders:

* ``before``: the workflow at ``--before`` (default 22d3227: serial jobs, PNG
  level 6, one job per technique and chunk), from a temporary ``git worktree``;
* ``pictures``: this checkout, the default layout (pipelined jobs, PNG level 1,
  ``share_passes``: one job per chunk for all three techniques);
* ``chunks``: this checkout, ``layout: chunks`` with ``share_passes`` (likewise).

The ratio of each to ``before`` is the figure. Writes its section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dataset import env_for_jobs, make_images, make_workdir, run_config, run_timed, snakemake_cmd  # noqa: E402
from results_file import REPO, display_command, write_section  # noqa: E402

TITLE = "## Data-set run: before and after the throughput work"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=200, help="N (default %(default)s)")
    parser.add_argument("--cores", type=int, default=2, help="snakemake --cores (default %(default)s)")
    parser.add_argument("--before", default="22d3227", help="the commit to compare with (default %(default)s)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per run (default %(default)s)")
    parser.add_argument("--tmp", type=Path, help="work folder (default: a new temporary one, removed at the end)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "RESULTS.md", help="file to update")
    args = parser.parse_args()
    tmp = args.tmp or Path(tempfile.mkdtemp(prefix="cnnvis-throughput-"))
    before = tmp / "before-code"
    try:
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "add", "-f", "--detach", str(before), args.before],
            check=True,
            capture_output=True,
        )
        images = tmp / "images"
        make_images(images, args.images)
        base = run_config({"folder": str(images)}, size=224)
        variants = [
            ("before", before, base),
            ("pictures", REPO, base),
            ("chunks", REPO, base | {"layout": "chunks", "share_passes": True}),
        ]
        rows = []
        for label, source, config in variants:
            workdir = tmp / label
            make_workdir(workdir, config)
            if source != REPO:  # the old workflow's own rules, and its package first on the path
                for name in ("Snakefile", "rules"):
                    target = workdir / name
                    shutil.rmtree(target) if target.is_dir() else target.unlink()
                    copy = shutil.copytree if (source / name).is_dir() else shutil.copy2
                    copy(source / name, target)
            env = env_for_jobs()
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(source), env.get("PYTHONPATH", "")]))
            command = [*snakemake_cmd(), "--cores", str(args.cores), "--quiet", "all"]
            print(f"[throughput] {label}: {' '.join(command)}", flush=True)
            result = run_timed(command, workdir, args.timeout, tmp / f"{label}.log", env)
            if result["rc"]:
                print(result["tail"], file=sys.stderr)
            pictures = sum(1 for p in (workdir / "results").rglob("*.png") if p.is_file())
            rows.append({"label": label, "wall": None if result["rc"] else result["wall"], "pictures": pictures})
            print(f"[throughput] {label}: {result['wall']:.1f} s, rc {result['rc']}, {pictures} PNGs", flush=True)
        write_section(args.out, section(rows, args))
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(before)], capture_output=True)
        if args.tmp is None:
            shutil.rmtree(tmp, ignore_errors=True)


def section(rows: list[dict], args: argparse.Namespace) -> str:
    first = rows[0]["wall"]
    lines = [
        TITLE,
        "",
        f"{time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} cores; `{display_command()}`",
        "",
        f"`snakemake --cores {args.cores} all` over {args.images} pictures (128 x 96 JPEGs, resized to 224 px) "
        "with vanilla saliency (gray), Grad-CAM (overlay) and feature maps (one layer) on EfficientNet-Lite0, "
        "CPU, one thread per job, chunk_size 256, from an empty results folder: every job (image check, "
        "techniques, predictions, summary, gallery). `before` is the workflow at "
        f"{args.before} in a git worktree.",
        "",
        "| variant | seconds | ratio to before | PNG files |",
        "|---|---:|---:|---:|",
    ]
    for row in rows:
        wall = row["wall"]
        ratio = f"{wall / first:.2f}" if wall and first else "-"
        lines.append(f"| {row['label']} | {f'{wall:.1f}' if wall else 'failed'} | {ratio} | {row['pictures']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
