#!/usr/bin/env python
"""What the automatic Grad-CAM layer costs one job, before and after remembering it.

A CAM job with ``--layer auto`` (the default) chooses its layer once, in its own
process.  For each model this starts fresh processes that load the model on the
CPU and time one call of:

- ``traced_cam_layer``: the whole-forward trace every job ran before (the code of
  ``default_cam_layer`` at commit 22d3227, kept as the trace behind the cache);
- ``default_cam_layer`` with an empty cache folder (the first job of a model on
  a machine: the same trace, plus writing the entry);
- ``default_cam_layer`` with that entry present (every later job).

A fresh process per call, because part of the cost is paid once per process
(the first meta-device batch norm imports ``torch._dynamo``).  Each cell is
the median of ``--repeats`` processes; the three layers must agree.  Writes
the section ``## Automatic Grad-CAM layer: cost per job`` of ``bench/RESULTS.md``.

    .venv/bin/python bench/auto_layer.py                       # 5 models, 3 repeats
    .venv/bin/python bench/auto_layer.py --models vgg16 --repeats 1
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dataset import machine_info  # noqa: E402
from results_file import display_command, write_section  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SECTION = "## Automatic Grad-CAM layer: cost per job"
DEFAULT_OUT = REPO / "bench" / "RESULTS.md"
MODELS = ("efficientnet_lite0", "vgg16", "resnet50", "densenet121", "vit_b_16")
MODES = ("trace", "miss", "hit")


def child(model: str, mode: str, threads: int) -> None:
    """In a fresh process: load ``model`` on the CPU, time one choice, print it as JSON."""
    import time

    import torch

    from cnnvis_tasks.mechanisms.cam import default_cam_layer, traced_cam_layer
    from cnnvis_tasks.models.loading import load_model

    torch.set_num_threads(threads)
    weights = "default" if model == "efficientnet_lite0" else "random"
    module = load_model(model, weights, "cpu", 0).module
    choose = traced_cam_layer if mode == "trace" else default_cam_layer
    start = time.perf_counter()
    layer = choose(module)
    print(json.dumps({"seconds": time.perf_counter() - start, "layer": layer}))


def measure(model: str, mode: str, cache: Path, threads: int) -> dict:
    command = [sys.executable, __file__, "--child", model, mode, "--threads", str(threads)]
    env = {**os.environ, "CNNVIS_CACHE": str(cache), "PYTHONPATH": str(REPO)}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{model} {mode}: exit status {done.returncode}: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def render(rows: dict, args, info: dict, command: str, started: str) -> str:
    lines = [
        SECTION,
        "",
        f"Date: {started}. Command: `{command}`",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores; Python {info['python']}, torch {info['torch']}; "
        f"{args.threads} torch thread(s).",
        "",
        "Seconds one job spends choosing the automatic Grad-CAM layer (224x224), measured in a fresh process "
        "after loading the model on the CPU (EfficientNet-Lite0 with its embedded weights, the others random); "
        f"median of {args.repeats} processes. *Before*: the whole-forward trace every job ran "
        "(`traced_cam_layer`, the code of 22d3227). *First job*: the same trace plus writing the remembered "
        "entry (once per model, input size and machine or shared cache folder). *Later jobs*: reading it.",
        "",
        "| model | layer | before, s | first job, s | later jobs, s | before / later |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for model, row in rows.items():
        ratio = row["trace"] / row["hit"] if row["hit"] > 0 else float("inf")
        lines.append(
            f"| {model} | `{row['layer']}` | {row['trace']:.3f} | {row['miss']:.3f} | {row['hit']:.4f} | {ratio:.0f}x |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated model names")
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per cell (median)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads in each process")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results file (its section is replaced)")
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child, args.threads)
        return
    started = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    command, info = display_command(), machine_info()
    rows = {}
    for model in args.models.split(","):
        times = {mode: [] for mode in MODES}
        layers = set()
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as cache:
                for mode in MODES:  # interleaved, so load on the machine falls on all three alike
                    result = measure(model, mode, Path(cache), args.threads)
                    times[mode].append(result["seconds"])
                    layers.add(result["layer"])
        if len(layers) != 1:
            raise RuntimeError(f"{model}: the ways of choosing disagree: {sorted(layers)}")
        rows[model] = {mode: statistics.median(times[mode]) for mode in MODES} | {"layer": layers.pop()}
        print(f"{model}: " + ", ".join(f"{mode} {rows[model][mode]:.3f} s" for mode in MODES), file=sys.stderr)
        write_section(args.out, render(rows, args, info, command, started))


if __name__ == "__main__":
    main()
