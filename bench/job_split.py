#!/usr/bin/env python
"""Where a chunk job's time goes, before and after the pipelined job, in one run.

For Grad-CAM (gray, heatmap and overlay) and vanilla saliency (color and gray) over
chunks of synthetic 500 x 375 JPEGs on the CPU, this runs one job's command
(``cnnvis-tasks grad-cam ... --keep-going --record``) as a fresh process with the
package of commit ``--before`` (default 22d3227: the serial job, in a temporary
``git worktree``) and with this checkout's, and times inside each process:

- start-up: the imports and the model load (everything before the first batch);
- decode: the main thread waiting for decoded batches (the serial job decodes there);
- compute: the main thread in the technique's compute and its read from the device
  (the automatic Grad-CAM layer apart: another change makes it cheap);
- render+encode: the main thread rendering and writing (serial), or waiting for
  the writer threads (pipelined);
- their busy time: decode, render, PNG encode+write summed over every thread;

and, in a third process over the same images, the compute alone (decoded
beforehand, the automatic layer chosen beforehand).  It checks that both jobs
wrote every picture and no failure, and that the pipelined job at --png-level 6
writes the serial job's files byte for byte.  Then it measures the PNG levels
and threads against processes for the encoding.  Writes the section ``## Chunk
job: where the time goes`` of bench/RESULTS.md.

    .venv/bin/python bench/job_split.py                    # 64 and 256 images, --threads 2
    .venv/bin/python bench/job_split.py --counts 16 --quick # a sanity check
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

T0 = time.perf_counter()  # the job's clock starts here: after the interpreter, before any import

REPO = Path(__file__).resolve().parents[1]
SECTION = "## Chunk job: where the time goes"
DEFAULT_OUT = REPO / "bench" / "RESULTS.md"
JOBS = {
    "grad-cam": ["--rendering", "gray", "--rendering", "heatmap", "--rendering", "overlay"],
    "saliency": ["--method", "vanilla", "--rendering", "color", "--rendering", "gray"],
}
PICTURES = {"grad-cam": 3, "saliency": 2}


# --- inside a job process -----------------------------------------------------------


class Clock:
    """Seconds spent in wrapped functions, by name, on the main thread and on all threads."""

    def __init__(self):
        self.main: dict[str, float] = {}
        self.busy: dict[str, float] = {}
        self.cpu: dict[str, float] = {}  # CPU time of the threads in it (no waiting for a core)
        self.lock = threading.Lock()

    def add(self, name: str, seconds: float, cpu: float = 0.0) -> None:
        with self.lock:
            self.busy[name] = self.busy.get(name, 0.0) + seconds
            self.cpu[name] = self.cpu.get(name, 0.0) + cpu
            if threading.current_thread() is threading.main_thread():
                self.main[name] = self.main.get(name, 0.0) + seconds

    def wrap(self, owner, attribute: str, name: str) -> None:
        function = getattr(owner, attribute)

        def timed(*args, **kwargs):
            start, start_cpu = time.perf_counter(), time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                self.add(name, time.perf_counter() - start, time.thread_time() - start_cpu)

        setattr(owner, attribute, timed)

    def wrap_iterator(self, owner, attribute: str, name: str) -> None:
        """Time each step of the iterators ``owner.attribute(...)`` returns."""
        function = getattr(owner, attribute)

        def timed(*args, **kwargs):
            iterator = iter(function(*args, **kwargs))
            while True:
                start = time.perf_counter()
                try:
                    item = next(iterator)
                except StopIteration:
                    self.add(name, time.perf_counter() - start)
                    return
                self.add(name, time.perf_counter() - start)
                yield item

        setattr(owner, attribute, timed)


def job_process(args: argparse.Namespace) -> None:
    """Run one job in this process under the clock; write its figures as JSON."""
    sys.path.insert(0, str(args.root))
    import torch  # noqa: F401  (part of the start-up either way)

    import cnnvis_tasks
    from cnnvis_tasks.cli import cli
    from cnnvis_tasks.io import images, outputs
    from cnnvis_tasks.run import runner
    from cnnvis_tasks.techniques import cam_family

    assert Path(cnnvis_tasks.__file__).is_relative_to(args.root), cnnvis_tasks.__file__
    imported = time.perf_counter()
    clock = Clock()
    clock.wrap(runner, "load_model", "model load")
    clock.wrap(cam_family, "automatic_layer", "automatic layer")
    # the decoder of one image: load_image before the box work, _load_sized after
    clock.wrap(images, "_load_sized" if hasattr(images, "_load_sized") else "load_image", "decode")
    clock.wrap_iterator(images, "load_batches", "decode wait")
    if hasattr(runner, "_Call"):  # a tree from before the one pass driver
        call, writer_class, files = runner._Call, runner._Writer, runner
    else:
        from cnnvis_tasks.run import driver, writer

        call, writer_class, files = driver.PassDriver, writer.Writer, writer
    clock.wrap(call, "_compute", "compute+submit")
    clock.wrap(writer_class, "write", "render+encode")
    clock.wrap(files, "save_png", "encode")
    clock.wrap(files, "save_npy", "encode")
    if hasattr(call, "collect"):
        clock.wrap(call, "collect", "write wait")
    if args.split:
        from cnnvis_tasks.run import pipeline

        compute_threads, workers = (int(n) for n in args.split.split(","))
        pipeline.split_cores = lambda threads, device: (compute_threads, workers)
    first_batch = {}
    original = images.load_batches

    def marked(*a, **k):
        first_batch.setdefault("at", time.perf_counter())
        return original(*a, **k)

    images.load_batches = marked
    command = [args.technique, *JOBS[args.technique], "--out-dir", str(args.out), "--device", args.device]
    command += ["--threads", str(args.threads), "-q", "--keep-going", "--record", str(args.out / "record.json")]
    command += [item for path in args.images for item in ("--image", str(path))]
    if args.png_level is not None:
        command += ["--png-level", str(args.png_level)]
    cli.main(command, standalone_mode=False)
    end = time.perf_counter()
    args.json.write_text(
        json.dumps(
            {
                "imports": imported - T0,
                "before first batch": first_batch.get("at", end) - T0,
                "total": end - T0,
                "main": clock.main,
                "busy": clock.busy,
                "cpu": clock.cpu,
                "pillow": outputs.Image.__version__,
            }
        )
    )


def compute_process(args: argparse.Namespace) -> None:
    """The compute alone over the same images: decoded first, the automatic layer chosen first."""
    sys.path.insert(0, str(args.root))
    import torch

    from cnnvis_tasks.io.images import load_batches
    from cnnvis_tasks.run.runner import open_session
    from cnnvis_tasks.techniques import get_technique
    from cnnvis_tasks.techniques.cam_family import automatic_layer

    session = open_session("efficientnet_lite0", device=args.device, threads=args.threads, quiet=True)
    torch.set_num_threads(args.threads)
    technique = get_technique(args.technique)
    batches = [batch.to(session.device) for _, batch in load_batches(args.images, 224, 16)]
    options = (
        {"method": "vanilla"} if args.technique == "saliency" else {"layer": automatic_layer(session.model.module)}
    )
    if session.device.type != "cpu":  # a warm-up: cuDNN picks its algorithms on the first call
        technique.compute(session.model, batches[0], None, **options).to_host()
    start = time.perf_counter()
    for batch in batches:
        technique.compute(session.model, batch, None, **options).to_host()  # to_host waits for the device
    args.json.write_text(json.dumps({"compute": time.perf_counter() - start}))


# --- the parent ---------------------------------------------------------------------


def make_images(folder: Path, count: int) -> list[Path]:
    """Deterministic 500 x 375 JPEGs: colour gradients, a few discs and noise."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    y, x = np.mgrid[0:375, 0:500].astype(np.float32)
    paths = []
    for k in range(count):
        path = folder / f"img{k:04d}.jpg"
        paths.append(path)
        if path.exists():
            continue
        rng = np.random.default_rng(k)
        picture = np.stack([x / 500 * rng.uniform(50, 255), y / 375 * rng.uniform(50, 255), (x + y) / 875 * 200], -1)
        for _ in range(3):
            cy, cx, radius = rng.uniform(0, 375), rng.uniform(0, 500), rng.uniform(30, 120)
            picture[(y - cy) ** 2 + (x - cx) ** 2 < radius**2] = rng.uniform(0, 255, 3)
        picture += rng.normal(0, 12, picture.shape)
        Image.fromarray(np.clip(picture, 0, 255).astype(np.uint8)).save(path, quality=90)
    return paths


def before_tree(commit: str, where: Path) -> Path:
    """A worktree of ``commit`` (made once, detached)."""
    if not (where / "cnnvis_tasks").is_dir():
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(where), commit], cwd=REPO, check=True, capture_output=True
        )
    return where


def child(mode: str, root: Path, technique: str, paths: list[Path], threads: int, work: Path, **extra) -> dict:
    """Run this script as ``--_job``/``--_compute`` in a fresh process; its JSON."""
    result_file = work / "result.json"
    command = [sys.executable, str(Path(__file__).resolve()), mode, "--root", str(root), "--technique", technique]
    command += ["--threads", str(threads), "--json", str(result_file), "--out", str(work / "out")]
    for name, value in extra.items():
        if value is not None:
            command += [f"--{name.replace('_', '-')}", str(value)]
    command += ["--images", *map(str, paths)]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)} | {"CNNVIS_OFFLINE": "1"}
    done = subprocess.run(command, cwd=work, capture_output=True, text=True, env=env, timeout=3600)
    if done.returncode:
        raise RuntimeError(f"{mode} {root.name} {technique} failed:\n{done.stderr[-3000:]}")
    return json.loads(result_file.read_text())


def check_outputs(out: Path, technique: str, count: int) -> None:
    record = json.loads((out / "record.json").read_text())
    failed = [row for row in record["rows"] if row["status"] != "ok"]
    pictures = list(out.glob("*.png"))
    if failed or len(pictures) != count * PICTURES[technique]:
        raise RuntimeError(f"{out}: {len(pictures)} pictures, {len(failed)} failed rows")


def _net_ratio(job: dict, alone: float, count: int) -> float:
    """A job's time without its start-up and automatic layer, over the compute alone."""
    return (job["total"] - job["before first batch"] - split(job, count)["auto layer"]) / alone


def split(job: dict, count: int) -> dict:
    """The job's main-thread time by part, and its threads' busy time per image."""
    main, busy, cpu = job["main"], job["busy"], job.get("cpu", {})
    auto = main.get("automatic layer", 0.0)
    main_write = main.get("render+encode", 0.0)
    compute = main.get("compute+submit", 0.0) - main_write - auto
    write = main_write + main.get("write wait", 0.0)
    decode = main.get("decode wait", 0.0)
    startup = job["before first batch"]
    other = job["total"] - startup - decode - compute - auto - write
    return {
        "total": job["total"],
        "startup": startup,
        "imports": job["imports"],
        "model load": main.get("model load", 0.0),
        "decode": decode,
        "compute": compute,
        "auto layer": auto,
        "write": write,
        "other": other,
        "decode busy": busy.get("decode", 0.0) / count * 1000,
        "render busy": (busy.get("render+encode", 0.0) - busy.get("encode", 0.0)) / count * 1000,
        "encode busy": busy.get("encode", 0.0) / count * 1000,
        "render+encode cpu": cpu.get("render+encode", 0.0) / count * 1000,
    }


def same_files(a: Path, b: Path) -> tuple[int, int]:
    """(files compared, files that differ) of two output folders (records aside)."""
    names = sorted(p.name for p in a.glob("*.png"))
    if names != sorted(p.name for p in b.glob("*.png")):
        return len(names), len(names)
    return len(names), sum((a / name).read_bytes() != (b / name).read_bytes() for name in names)


# --- PNG levels, threads and processes --------------------------------------------------


def _pictures(paths: list[Path]) -> list:
    """Real Grad-CAM and saliency pictures of a few of the images (rendered by this checkout)."""
    import numpy as np
    import torch

    from cnnvis_tasks import render
    from cnnvis_tasks.io.images import load_image

    pictures = []
    for k, path in enumerate(paths):
        image = load_image(path)
        coarse = torch.rand(1, 1, 7, 7, generator=torch.Generator().manual_seed(k))
        cam = torch.nn.functional.interpolate(coarse, size=image.shape[-2:], mode="bilinear")[0, 0]
        map01, _ = render.normalize01(cam)
        gradient = (image - image.mean()) * torch.randn(image.shape, generator=torch.Generator().manual_seed(k)) * 0.1
        pictures += [render.to_uint8(map01), render.heatmap(map01), render.overlay(image, map01)]
        pictures += [render.gradient_color(gradient)[0], render.gradient_gray(gradient)[0]]
    return [np.ascontiguousarray(p) for p in pictures]


def _encode(picture, level: int, writer: str = "cnnvis") -> int:
    """Bytes of one PNG: Pillow's encoder (adaptive filters, zlib), or ours (Sub filter, ISA-L)."""
    if writer == "cnnvis":
        from cnnvis_tasks.io.png import encode_png

        return len(encode_png(picture, {"cnnvis": "{}"}, level))
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG", compress_level=level)
    return buffer.tell()


def _encode_all(pictures: list, level: int, writer: str = "cnnvis") -> int:
    return sum(_encode(p, level, writer) for p in pictures)


def png_levels(pictures: list, repeats: int) -> list[dict]:
    rows = []
    for writer, levels in (("Pillow", range(10)), ("cnnvis", range(1, 4))):
        for level in levels:
            best = float("inf")
            for _ in range(repeats):
                start = time.perf_counter()
                size = _encode_all(pictures, level, writer.lower())
                best = min(best, time.perf_counter() - start)
            rows.append(
                {
                    "writer": writer,
                    "level": level,
                    "ms": best / len(pictures) * 1000,
                    "kib": size / len(pictures) / 1024,
                }
            )
    return rows


def pools(pictures: list, workers: int, repeats: int) -> list[dict]:
    """Encoding the pictures at level 1: in the caller, on threads, on processes."""
    work = pictures * 4
    rows = []
    for name in ("serial", "threads", "processes"):
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            if name == "serial":
                _encode_all(work, 1)
            else:
                pool_type = ThreadPoolExecutor if name == "threads" else ProcessPoolExecutor
                with pool_type(workers) as pool:
                    list(pool.map(_encode, work, [1] * len(work)))
            best = min(best, time.perf_counter() - start)
        rows.append({"pool": name, "ms": best / len(work) * 1000})
    return rows


# --- the report ---------------------------------------------------------------------


def table(results: list[dict]) -> list[str]:
    lines = [
        "| job | images | code | total s | start-up s | decode s | compute s | auto layer s | "
        "render+encode s | other s | compute alone s | job / compute alone | job - start-up - auto layer "
        "/ compute alone | decode / render / encode ms per image (busy, all threads) | render+encode CPU ms "
        "per image |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in results:
        s, alone = r["split"], r["alone"]
        net = (s["total"] - s["startup"] - s["auto layer"]) / alone
        lines.append(
            f"| {r['technique']} | {r['count']} | {r['code']} | {s['total']:.1f} | {s['startup']:.1f} | "
            f"{s['decode']:.2f} | {s['compute']:.1f} | {s['auto layer']:.1f} | {s['write']:.2f} | {s['other']:.2f} | "
            f"{alone:.1f} | {s['total'] / alone:.2f}x | {net:.2f}x | "
            f"{s['decode busy']:.1f} / {s['render busy']:.1f} / {s['encode busy']:.1f} | "
            f"{s['render+encode cpu']:.1f} |"
        )
    return lines


def write_report(path: Path, info: dict, results: list[dict], identical: list[str], levels, pool_rows, notes) -> None:
    from results_file import display_command, write_section

    lines = [
        SECTION,
        "",
        f"Run {info['date']} on {info['cpu']} ({info['cores']}), Python {info['python']}, torch {info['torch']}, "
        f"Pillow {info['pillow']}; load average {info['load']} at the start. Command:",
        "",
        f"    {display_command()}",
        "",
        f"One job = one `cnnvis-tasks` process, EfficientNet-Lite0, `--device cpu --threads {info['threads']}`, "
        "batch 16, 224 px, over synthetic 500 x 375 JPEGs; Grad-CAM writes gray, heatmap and overlay "
        "(3 PNGs per image), saliency vanilla color and gray (2). *before*: commit "
        f"`{info['before']}` (serial: decode, compute, render, encode in turn; PNG level 6); *after*: this checkout "
        f"(`{info['after']}`; decoding ahead and writing behind on {info['workers']} I/O thread(s); PNG level 1). "
        "Times are on the job's main thread, from the first line of the process (the interpreter's own start "
        "excluded); *start-up* is everything before the first batch (imports, model load); *render+encode* is "
        "the main thread rendering and writing (before) or waiting for the writer threads (after). The compute "
        f"alone, the before job and the after job ran in {info['job repeats']} alternating rounds; each pair of rows "
        "is the round whose after job over compute alone is the median (every round is listed below the table). "
        "*compute alone*: "
        "the same images' compute and read-back in another process, decoded and the automatic layer chosen "
        "beforehand. The last column is the time per image in each stage summed over all threads (wall time on "
        "each thread: on a busy machine it includes waiting for a core); the column after it is the CPU time "
        "of the threads rendering and writing (`time.thread_time`), the work itself.",
        "",
        *table(results),
        "",
    ]
    for technique in JOBS:
        for count in sorted({r["count"] for r in results}):
            pair = {r["code"]: r for r in results if r["technique"] == technique and r["count"] == count}
            if len(pair) == 2:
                b, a = pair["before"]["split"], pair["after"]["split"]
                speed = (b["render busy"] + b["encode busy"]) / max(a["render busy"] + a["encode busy"], 1e-9)
                cpu_speed = b["render+encode cpu"] / max(a["render+encode cpu"], 1e-9)
                lines.append(
                    f"- {technique}, {count} images: job {b['total']:.1f} s -> {a['total']:.1f} s "
                    f"({b['total'] / a['total']:.2f}x faster); render+encode per image "
                    f"{b['render busy'] + b['encode busy']:.1f} -> {a['render busy'] + a['encode busy']:.1f} ms "
                    f"busy ({speed:.1f}x less), {b['render+encode cpu']:.1f} -> {a['render+encode cpu']:.1f} ms "
                    f"CPU ({cpu_speed:.1f}x less)."
                )
    lines += ["", *identical, "", *notes, ""]
    if levels:
        lines += [
            "PNG writers and levels, best of "
            f"{info['repeats']} over {info['pictures']} real pictures (224 x 298: gray, heatmap, "
            "overlay, saliency color and gray of the synthetic images), one thread. *Pillow*: its encoder "
            "(`compress_level`, a filter chosen per row, zlib of Pillow's wheel), which writes levels 0 and 4-9; "
            "*cnnvis*: `cnnvis_tasks/io/png.py` (the Sub filter on every row, ISA-L's deflate), which writes "
            "levels 1-3:",
            "",
            "| writer | level | ms per picture | KiB per picture |",
            "|---|---:|---:|---:|",
            *[f"| {r['writer']} | {r['level']} | {r['ms']:.2f} | {r['kib']:.1f} |" for r in levels],
            "",
        ]
    if pool_rows:
        lines += [
            f"Encoding {info['pool pictures']} pictures at level 1 (our writer) with {info['workers pool']} workers "
            "(ms per picture, wall): " + ", ".join(f"{r['pool']} {r['ms']:.2f}" for r in pool_rows) + ".",
            "",
        ]
    sys.path.insert(0, str(REPO / "bench"))
    write_section(path, "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--counts", default="64,256", help="images per job, comma-separated  [64,256]")
    parser.add_argument("--techniques", default="grad-cam,saliency", help="jobs to time  [grad-cam,saliency]")
    parser.add_argument("--threads", type=int, default=2, help="the job's --threads  [2]")
    parser.add_argument("--before", default="22d3227", help="the commit of the serial job  [22d3227]")
    parser.add_argument(
        "--splits", default="", help="also time the after job of the first count with these torch,I/O splits: '1,1;2,2'"
    )
    parser.add_argument("--repeats", type=int, default=5, help="repeats of the PNG and pool measurements  [5]")
    parser.add_argument("--quick", action="store_true", help="no PNG level and pool measurements")
    parser.add_argument(
        "--job-repeats",
        type=int,
        default=3,
        help="rounds of the compute alone, the before and the after job; the table has the median round  [3]",
    )
    parser.add_argument(
        "--device",
        default="cpu",
        help="where the jobs compute  [cpu]; with cuda: images per second of each job against its compute "
        "alone and the device's busy fraction, in the section '## Chunk job on the GPU' (no before run)",
    )
    parser.add_argument("--tmp", type=Path, default=None, help="work folder (kept); default: a temporary one")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results file  [bench/RESULTS.md]")
    # inside a child process
    for hidden in ("--_job", "--_compute"):
        parser.add_argument(hidden, action="store_true", help=argparse.SUPPRESS)
    for hidden in ("--root", "--technique", "--json", "--split", "--png-level"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    parser.add_argument("--images", nargs="*", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.job_repeats < 1:
        parser.error("--job-repeats must be at least 1")
    if args._job or args._compute:
        args.root, args.json, args.threads = Path(args.root), Path(args.json), int(args.threads)
        args.out = Path(args.out)
        (job_process if args._job else compute_process)(args)
        return

    sys.path.insert(0, str(REPO / "bench"))
    from dataset import machine_info

    if args.device != "cpu":
        device_run(args)
        return
    work = Path(args.tmp or tempfile.mkdtemp(prefix="cnnvis-job-split-"))
    work.mkdir(parents=True, exist_ok=True)
    counts = [int(c) for c in args.counts.split(",")]
    techniques = args.techniques.split(",")
    paths = make_images(work / "images", max(counts))
    before = before_tree(args.before, work / "before")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "cnnvis_tasks"], cwd=REPO, capture_output=True, text=True)
    from cnnvis_tasks.run.pipeline import split_cores

    info = machine_info() | {
        "date": datetime.date.today().isoformat(),
        "load": " ".join(f"{v:.2f}" for v in os.getloadavg()),
        "threads": args.threads,
        "before": args.before,
        "after": commit.stdout.strip() + (" + changes" if dirty.stdout.strip() else ""),
        "workers": split_cores(args.threads, "cpu")[1],
        "repeats": args.repeats,
        "job repeats": args.job_repeats,
    }
    results, identical, notes = [], [], []
    levels = pool_rows = None

    def report() -> None:
        write_report(args.out, info, results, identical, levels, pool_rows, notes)

    for count in counts:
        chosen = paths[:count]
        for technique in techniques:
            # The before job, the after job and the compute alone, in alternating rounds: on a
            # shared two-core machine one run can be 30-50 % slower than the next. The table
            # shows the round whose after ratio is the median, that round's three runs together.
            rounds = []
            for _ in range(args.job_repeats):
                alone = child("--_compute", REPO, technique, chosen, args.threads, _fresh(work / "alone"))
                jobs = {}
                for code, root in (("before", before), ("after", REPO)):
                    folder = _fresh(work / f"job-{code}")
                    jobs[code] = child("--_job", root, technique, chosen, args.threads, folder)
                    check_outputs(folder / "out", technique, count)
                rounds.append({"alone": alone["compute"], **jobs})
            ratios = [_net_ratio(r["after"], r["alone"], count) for r in rounds]
            chosen_round = rounds[sorted(range(len(rounds)), key=ratios.__getitem__)[len(rounds) // 2]]
            for code in ("before", "after"):
                job, alone = chosen_round[code], chosen_round["alone"]
                results.append(
                    {"technique": technique, "count": count, "code": code, "split": split(job, count), "alone": alone}
                )
                info["pillow"] = job["pillow"]
                print(f"{technique} {count} {code}: {job['total']:.1f} s (compute alone {alone:.1f} s)", flush=True)
            if args.job_repeats > 1:
                listed = ", ".join(f"{ratio:.2f}x" for ratio in ratios)
                seconds = ", ".join(f"{r['alone']:.1f}" for r in rounds)
                befores = ", ".join(f"{r['before']['total']:.1f}" for r in rounds)
                afters = ", ".join(f"{r['after']['total']:.1f}" for r in rounds)
                notes.append(
                    f"- {technique}, {count} images, round by round: after job minus start-up and auto layer over "
                    f"compute alone {listed}; compute alone {seconds} s; before job {befores} s; after job "
                    f"{afters} s."
                )
            for chosen_split in filter(None, args.splits.split(";") if count == counts[0] else []):
                job = child("--_job", REPO, technique, chosen, args.threads, _fresh(work / "split"), split=chosen_split)
                check_outputs(work / "split" / "out", technique, count)
                torch_threads, workers = chosen_split.split(",")
                notes.append(
                    f"- {technique}, {count} images, after with {torch_threads} torch thread(s) and {workers} I/O "
                    f"worker(s): job {job['total']:.1f} s, start-up {job['before first batch']:.1f} s."
                )
                print(notes[-1], flush=True)
            if count == counts[0]:
                compared = _fresh(work / "level6")
                child("--_job", REPO, technique, chosen, args.threads, compared, png_level=6)
                files, differ = same_files(work / "job-before" / "out", compared / "out")
                identical.append(
                    f"- {technique}, {count} images: the after job at `--png-level 6` and the before job wrote "
                    f"{files} PNGs; {differ} differ in any byte."
                )
            report()
    if not args.quick:
        pictures = _pictures(paths[:6])
        info["pictures"] = len(pictures)
        levels = png_levels(pictures, args.repeats)
        info["pool pictures"], info["workers pool"] = len(pictures) * 4, args.threads
        pool_rows = pools(pictures, args.threads, args.repeats)
        report()
    if args.tmp is None:
        subprocess.run(["git", "worktree", "remove", "--force", str(before)], cwd=REPO, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {args.out}")


GPU_SECTION = "## Chunk job on the GPU: images per second"


def device_run(args: argparse.Namespace) -> None:
    """Each job on ``args.device`` against its compute alone there: images per second from
    the first batch to the end (start-up apart), and the device's busy fraction (the
    compute alone over that time: the share of the job the device spent computing)."""
    from dataset import machine_info
    from results_file import display_command, write_section

    work = Path(args.tmp or tempfile.mkdtemp(prefix="cnnvis-job-split-"))
    work.mkdir(parents=True, exist_ok=True)
    counts = [int(c) for c in args.counts.split(",")]
    paths = make_images(work / "images", max(counts))
    info = machine_info()
    rows = []
    for count in counts:
        for technique in args.techniques.split(","):
            chosen = paths[:count]
            alone = child(
                "--_compute", REPO, technique, chosen, args.threads, _fresh(work / "alone"), device=args.device
            )["compute"]
            folder = _fresh(work / "job")
            job = child("--_job", REPO, technique, chosen, args.threads, folder, device=args.device)
            check_outputs(folder / "out", technique, count)
            s = split(job, count)
            running = s["total"] - s["startup"] - s["auto layer"]
            rows.append(
                f"| {technique} | {count} | {s['total']:.1f} | {s['startup']:.1f} | {count / running:.0f} | "
                f"{count / alone:.0f} | {alone / running:.0%} | {s['decode busy']:.1f} / {s['render busy']:.1f} / "
                f"{s['encode busy']:.1f} |"
            )
            print(rows[-1], flush=True)
    lines = [
        GPU_SECTION,
        "",
        f"Run {datetime.date.today().isoformat()} on {info['cpu']} ({info['cores']}), device {args.device}, "
        f"Python {info['python']}, torch {info['torch']}. Command:",
        "",
        f"    {display_command()}",
        "",
        f"One job = one `cnnvis-tasks` process, EfficientNet-Lite0, `--device {args.device} --threads "
        f"{args.threads}` (on a GPU every thread but torch's decodes, renders and writes), batch 16, 224 px, over "
        "synthetic 500 x 375 JPEGs, writing every picture (Grad-CAM 3 per image, saliency 2). *job images/s*: "
        "images over the job's time from its first batch to its end (the start-up and the automatic layer "
        "apart); *compute alone*: the same images' compute and read-back in another process, decoded "
        "beforehand; *device busy*: compute alone over the job's time, the share of the job the device "
        "computed. Per image, busy wall time on all threads: decode / render / encode ms.",
        "",
        "| job | images | total s | start-up s | job images/s | compute alone images/s | device busy | "
        "decode / render / encode ms |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
        *rows,
        "",
    ]
    write_section(args.out, "\n".join(lines))
    if args.tmp is None:
        shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {args.out}")


def _fresh(folder: Path) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


if __name__ == "__main__":
    main()
