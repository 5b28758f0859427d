#!/usr/bin/env python
"""Channel examples (issue 28): the map job's throughput against a plain forward, and the
reduce's merge over the lists of a million images.

    .venv/bin/python bench/channel_examples.py                                  # all of it
    .venv/bin/python bench/channel_examples.py --count 32 --images 20000 --channels 112 --out /tmp/r.md

1. Map. Over ``--count`` synthetic 320 x 240 JPEGs in a temporary folder, on
   EfficientNet-Lite0 (the embedded weights, loaded once with ``open_session``; loading
   is outside every timing), one process times, interleaved, ``--repeats`` times after
   one warm-up each:

   - a plain forward: ``load_batches`` at size 224 (with the session's I/O workers, as
     the job decodes) and ``model.module(model.normalize(batch))`` under
     ``torch.inference_mode()``;
   - the map job of each ``--layers`` layer as the workflow runs it: the
     ``channel-examples`` command line (``--top 9 --keep-going --placeholders --record``)
     parsed by its click command and prepared by ``prepare_call``, then
     ``cnnvis_tasks.run.runner.run`` with the same session: decode, forward to the
     layer, peaks and boxes, ``TopExamples.add`` per row, the ``.npz`` written.

   Images/s of each (median and best of the repeats) and map / plain (the goal:
   at least 0.8).  Also the first (cold) call of each, the receptive-field probe a
   job pays once per input shape, and ``TopExamples.add`` per row.
2. Reduce. The lists ``--images`` images' map jobs would leave: one file per chunk of
   ``--chunk-size`` images (3,907 for 1,000,000), ``--channels`` channels, top
   ``--top`` (bottom 0), random scores; each file is made by ``TopExamples.save``
   from lists built with NumPy (the first chunk is also built with ``add`` per image
   and compared, array by array).  Then ``merge_files`` over them, in a fresh
   subprocess per size (each smaller ``--images`` merges the first files of the
   largest set): seconds and peak resident memory (``VmHWM``, and ``VmRSS`` before the
   merge: the process after its imports).
3. The rest of ``cnnvis-tasks channel-atlas``: ``build_atlas`` (merge, decode every
   listed image again, cut the patches, PNG strips, atlas.json) on the map files of
   part 1, with ``sample=0`` (no classes) and with the default ``sample=16`` (the class
   gradients over 16 images: one forward-mode pass per channel); its cost follows
   channels x top (the images listed) and channels x sample, not the images scanned.

Writes (replaces) the section ``## Channel examples (issue 28)`` of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_file import REPO, display_command, status_mib, write_section  # noqa: E402

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SECTION = "## Channel examples (issue 28)"
MODEL = "efficientnet_lite0"
WIDTH, HEIGHT = 320, 240
WIDE = 1280  # channels of the model's last layers (_conv_head, _bn1): TopExamples.add timed there too


# --- inputs -----------------------------------------------------------------------------------


def make_images(folder: Path, count: int) -> list[Path]:
    """Deterministic 320 x 240 JPEGs: colour gradients, a few discs and noise."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    paths = []
    for k in range(count):
        rng = np.random.default_rng(k)
        picture = np.stack(
            [x / WIDTH * rng.uniform(50, 255), y / HEIGHT * rng.uniform(50, 255), (x + y) / (WIDTH + HEIGHT) * 200], -1
        )
        for _ in range(3):
            cy, cx, radius = rng.uniform(0, HEIGHT), rng.uniform(0, WIDTH), rng.uniform(20, 80)
            picture[(y - cy) ** 2 + (x - cx) ** 2 < radius**2] = rng.uniform(0, 255, 3)
        picture += rng.normal(0, 12, picture.shape)
        path = folder / f"img{k:05d}.jpg"
        Image.fromarray(np.clip(picture, 0, 255).astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


# --- 1. the map -------------------------------------------------------------------------------


def plain_forward(session, paths: list[Path], batch_size: int) -> None:
    import torch

    from cnnvis_tasks.io.images import load_batches

    model = session.model
    batches = load_batches(paths, 224, batch_size, workers=session.io_workers, crop=model.input_size)
    with torch.inference_mode():
        for _indices, batch in batches:
            model.module(model.normalize(batch.to(session.device)))


def map_job(session, folder: Path, layer: str, arguments: list[str], out: Path):
    """The call the command ``channel-examples`` makes (its run_call), on an open session; returns a function."""
    import click

    from cnnvis_tasks.cli import cli
    from cnnvis_tasks.cli.techniques import prepare_call, run_call, unset_sizes
    from cnnvis_tasks.techniques.channel_examples import TECHNIQUE

    command = cli.get_command(click.Context(cli), TECHNIQUE.name)
    words = [*arguments, "--image", str(folder), "--layer", layer, "--out", str(out)]
    words += ["--record", str(out.with_suffix(".json"))]
    context = command.make_context(TECHNIQUE.name, list(words))  # click consumes the list it parses
    call = prepare_call(TECHNIQUE, unset_sizes(context, context.params))

    def job() -> None:
        failed = run_call(call, session, warn=lambda text: print(text, file=sys.stderr), note=lambda text: None)
        if failed:
            raise SystemExit(f"{layer}: {len(failed)} rows failed: {next(iter(failed.values()))}")

    return job, words


def timed(function) -> float:
    import gc

    gc.collect()
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def probe_seconds(session, layer: str, batch_size: int) -> float:
    """The receptive-field probe of ``layer`` on a batch of 298 x 224 inputs, measured afresh."""
    import torch

    from cnnvis_tasks.techniques import channel_examples

    inputs = session.model.normalize(torch.rand(batch_size, 3, 224, 298, device=session.device))
    channel_examples._FIELDS.clear()
    return timed(lambda: channel_examples.field_of(session.model.module, layer, inputs))


def add_seconds(channels: int, top: int, rows: int = 256) -> float:
    """Seconds per ``TopExamples.add`` of a chunk's rows (random scores)."""
    import numpy as np

    from cnnvis_tasks.mechanisms.top_examples import TopExamples

    rng = np.random.default_rng(1)
    scores = rng.standard_normal((rows, channels)).astype(np.float32)
    boxes = rng.uniform(0, 200, (rows, channels, 4)).astype(np.float32)
    examples = TopExamples(channels, {"top": top, "bottom": 0})
    seconds = timed(lambda: [examples.add(f"/d/{k:06d}.jpg", (298, 224), scores[k], boxes[k]) for k in range(rows)])
    return seconds / rows


def measure_map(args, work: Path) -> dict:
    import torch

    from cnnvis_tasks.run.runner import open_session

    paths = make_images(work / "images", args.count)
    session = open_session(model=MODEL, device=args.device, threads=args.threads, quiet=True)
    common = ["--model", MODEL, "--device", args.device, "--threads", str(args.threads), "--quiet"]
    common += ["--top", str(args.top), "--batch-size", str(args.batch_size), "--keep-going", "--placeholders"]
    jobs, commands = {}, {}
    for layer in args.layers:
        jobs[layer], commands[layer] = map_job(session, work / "images", layer, common, work / f"map-{layer}.npz")
    runs = {"plain": lambda: plain_forward(session, paths, args.batch_size), **jobs}
    cold = {name: timed(run) for name, run in runs.items()}  # the warm-up: each one's first call
    print(f"[map] first calls: { {k: round(v, 2) for k, v in cold.items()} }", file=sys.stderr, flush=True)
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for repeat in range(args.repeats):
        names = list(runs) if repeat % 2 == 0 else list(runs)[::-1]  # A B C, C B A, ...
        for name in names:
            seconds[name].append(timed(runs[name]))
        print(f"[map] repeat {repeat + 1}: { {k: round(v[-1], 2) for k, v in seconds.items()} }", file=sys.stderr)
    if args.profile:
        profile_map(jobs[args.layers[0]], work / "map.prof")
    channels = {}
    for layer in args.layers:
        import numpy as np

        with np.load(work / f"map-{layer}.npz") as data:
            channels[layer] = int(data["top_score"].shape[0])
    return {
        "count": len(paths),
        "threads": torch.get_num_threads(),
        "io_workers": session.io_workers,
        "seconds": seconds,
        "cold": cold,
        "probe": {layer: probe_seconds(session, layer, args.batch_size) for layer in args.layers},
        "add": {channels[layer]: add_seconds(channels[layer], args.top) for layer in args.layers}
        | {WIDE: add_seconds(WIDE, args.top)},
        "channels": channels,
        "commands": commands,
        "session": session,
    }


def profile_map(job, where: Path) -> None:
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.runcall(job)
    profiler.dump_stats(where)
    pstats.Stats(str(where), stream=sys.stderr).sort_stats("cumulative").print_stats(30)


# --- 2. the reduce ----------------------------------------------------------------------------


def image_path(index: int) -> str:
    """An ImageNet-like path (about 50 characters), sorting in index order."""
    return f"/data/imagenet/train/n{index // 1300:08d}/img_{index:08d}.JPEG"


def chunk_lists(chunk: int, first: int, count: int, channels: int, top: int, header: dict):
    """A map job's lists over images ``first`` .. ``first + count``, built with NumPy."""
    import numpy as np

    from cnnvis_tasks.mechanisms.top_examples import TopExamples

    rng = np.random.default_rng(chunk)
    scores = rng.standard_normal((count, channels)).astype(np.float32)
    boxes = np.sort(rng.uniform(0, 224, (count, channels, 2, 2)), axis=2).reshape(count, channels, 4)
    boxes = boxes.astype(np.float32)[..., [0, 2, 1, 3]]  # x0 y0 x1 y1
    paths = [image_path(first + k) for k in range(count)]
    return paths, scores, boxes, TopExamples(channels, {"top": top, "bottom": 0}, header)


def by_numpy(paths, scores, boxes, examples):
    """The top lists of ``scores`` written straight into ``examples`` (paths sort in index
    order, so a stable sort breaks ties by path, as ``TopExamples`` does)."""
    import numpy as np

    k = examples.counts["top"]
    order = np.argsort(-scores, axis=0, kind="stable")[:k].T  # (C, k) image positions
    channel = np.arange(scores.shape[1])[:, None]
    examples.images = list(paths)
    examples.sizes = [(298, 224)] * len(paths)
    examples._index = {path: i for i, path in enumerate(paths)}
    examples.scanned = len(paths)
    examples.lists["top"] = {
        "score": scores[order, channel],
        "image": order.astype(np.int64),
        "box": boxes[order, channel],
    }
    return examples


def make_chunks(folder: Path, images: int, chunk_size: int, channels: int, top: int) -> dict:
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    header = {"layer": "_blocks.10", "statistic": "max", "grid": [14, 19], "receptive_field": 155, "size": None}
    chunks = -(-images // chunk_size)
    started = time.perf_counter()
    files = []
    for chunk in range(chunks):
        first = chunk * chunk_size
        paths, scores, boxes, examples = chunk_lists(
            chunk, first, min(chunk_size, images - first), channels, top, header
        )
        files.append(folder / f"chunk{chunk:05d}.npz")
        by_numpy(paths, scores, boxes, examples).save(files[-1])
    seconds = time.perf_counter() - started
    # the first chunk again, with add per image as a map job builds it: the same file?
    paths, scores, boxes, examples = chunk_lists(0, 0, min(chunk_size, images), channels, top, header)
    added = timed(lambda: [examples.add(p, (298, 224), s, b) for p, s, b in zip(paths, scores, boxes)])
    examples.save(folder / "check.npz")
    with np.load(files[0]) as made, np.load(folder / "check.npz") as real:
        same = sorted(made.files) == sorted(real.files) and all(np.array_equal(made[n], real[n]) for n in made.files)
    (folder / "check.npz").unlink()
    if not same:
        raise SystemExit("the files built with NumPy differ from those TopExamples.add builds")
    return {
        "files": files,
        "seconds": seconds,
        "add_seconds_per_chunk": added,
        "bytes": sum(f.stat().st_size for f in files),
    }


def merge_child(listing: Path) -> None:
    """(In a fresh process) merge the files listed in ``listing``; print what it took as JSON."""
    from cnnvis_tasks.mechanisms.top_examples import merge_files

    files = listing.read_text().split("\n")
    before = status_mib("VmRSS")
    started = time.perf_counter()
    merged = merge_files(files)
    seconds = time.perf_counter() - started
    peak = status_mib("VmHWM")  # not ru_maxrss: a child's starts at its parent's size at the fork
    print(json.dumps({"seconds": seconds, "before_mib": before, "peak_mib": peak, "scanned": merged.scanned}))


def measure_merge(files: list[Path], images: int, chunk_size: int, total: int, work: Path) -> dict:
    """``merge_files`` over the first files, those of ``images`` of the ``total`` images, in a fresh process."""
    used = files[: -(-images // chunk_size)]
    listing = work / f"merge-{images}.txt"
    listing.write_text("\n".join(str(f) for f in used))
    done = subprocess.run(
        [sys.executable, __file__, "--merge-child", str(listing)], capture_output=True, text=True, cwd=REPO
    )
    if done.returncode:
        raise SystemExit(f"merge of {images} images failed:\n{done.stderr[-3000:]}")
    found = json.loads(done.stdout.strip().splitlines()[-1])
    if found["scanned"] != min(total, len(used) * chunk_size):
        raise SystemExit(f"merged {found['scanned']} images, not {images}")
    return found | {"files": len(used), "bytes": sum(f.stat().st_size for f in used), "images": found["scanned"]}


# --- 3. the rest of the atlas -----------------------------------------------------------------


def measure_atlas(session, files: dict[str, Path], work: Path, repeats: int) -> dict:
    """``build_atlas`` of each map file, without classes (sample 0) and with (sample 16)."""
    from cnnvis_tasks.mechanisms.top_examples import merge_files
    from cnnvis_tasks.techniques.channel_atlas import build_atlas

    found = {}
    for layer, path in files.items():
        found[layer] = {"merge": timed(lambda path=path: merge_files([path]))}
        for sample in (0, 16):
            out = work / f"atlas-{layer}-{sample}"  # a new folder under work
            runs = []
            for _ in range(repeats):
                started = time.perf_counter()
                atlas = build_atlas([path], session, out, patch_size=64, sample=sample, warn=print)
                runs.append(time.perf_counter() - started)
            found[layer][sample] = runs
            found[layer] |= {"channels": len(atlas["channels"]), "listed": len(atlas["images"])}
            found[layer]["class_sample"] = max(found[layer].get("class_sample", 0), atlas["class_sample"])
            print(f"[atlas] {layer} sample {sample}: {[round(v, 1) for v in runs]} s", file=sys.stderr, flush=True)
    return found


# --- the report -------------------------------------------------------------------------------


def render(args, command, mapped, reduced, atlas, started) -> str:
    import platform

    import torch
    from dataset import _cpu_model

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    lines = [
        SECTION,
        "",
        f"Date: {started:%Y-%m-%d %H:%M} UTC. Command: `{command}`",
        "",
        f"Machine: {_cpu_model()}, {usable} usable of {os.cpu_count()} cores; device {args.device}; "
        f"Python {platform.python_version()}, torch {torch.__version__}. Load average (1 min) at start "
        f"{args.load_start:.1f}, at end {os.getloadavg()[0]:.1f}.",
        "",
    ]
    if mapped:
        plain = mapped["seconds"]["plain"]
        count = mapped["count"]
        lines += [
            f"**Map job vs plain forward.** {count} JPEGs of {WIDTH}x{HEIGHT} (decoded to 298x224), {MODEL}, batch "
            f"{args.batch_size}, {mapped['threads']} torch threads and {mapped['io_workers']} decoding worker(s) in "
            f"both, model loaded once outside the timings. Median (best) of {args.repeats} interleaved repeats after "
            "one warm-up call each; ratio = map images/s / plain images/s (goal >= 0.8).",
            "",
            "| run | layer | channels | s (median) | images/s (median) | images/s (best) | ratio (median) "
            "| ratio (best) | first call s |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|",
            f"| plain forward (`load_batches` + `model.module`) | whole model | - | {statistics.median(plain):.2f} | "
            f"{count / statistics.median(plain):.1f} | {count / min(plain):.1f} | 1.00 | 1.00 | "
            f"{mapped['cold']['plain']:.2f} |",
        ]
        for layer in args.layers:
            runs = mapped["seconds"][layer]
            lines.append(
                f"| map job (`channel-examples --top {args.top}`, `runner.run`) | `{layer}` | "
                f"{mapped['channels'][layer]} | {statistics.median(runs):.2f} | "
                f"{count / statistics.median(runs):.1f} | "
                f"{count / min(runs):.1f} | {statistics.median(plain) / statistics.median(runs):.2f} | "
                f"{min(plain) / min(runs):.2f} | {mapped['cold'][layer]:.2f} |"
            )
        lines += ["", "Parts of the map job, measured apart:", ""]
        lines += ["| part | layer | cost |", "|---|---|---:|"]
        for layer in args.layers:
            lines.append(
                f"| receptive-field probe (once per process and input shape) | `{layer}` | "
                f"{mapped['probe'][layer] * 1000:.0f} ms |"
            )
        for channels, seconds in sorted(mapped["add"].items()):
            layers = [f"`{layer}`" for layer in args.layers if mapped["channels"][layer] == channels]
            lines.append(
                f"| `TopExamples.add` ({channels} channels, top {args.top}; random scores) | "
                f"{', '.join(layers) or '(`_bn1`)'} | {seconds * 1e6:.0f} us per image |"
            )
        lines.append("")
        lines.append(
            "The map job's command line (as parsed in-process): `cnnvis-tasks channel-examples "
            + " ".join(mapped["commands"][args.layers[0]]).replace(str(args.work), "$TMP")
            + "`"
        )
        lines.append("")
    if reduced:
        lines += [
            f"**Reduce: `merge_files` over the map jobs' lists.** Chunks of {args.chunk_size} images, top "
            f"{args.top} (bottom 0), random scores, files written by `TopExamples.save`; each merge in a fresh "
            "process (peak = its `VmHWM`; before = its `VmRSS` after imports, before merging). The files are made "
            "once per channel count, for the most images; fewer images merge its first files.",
            "",
            "| channels | images | files | MB of files | files made in s | merge s | merge ms / file "
            "| peak RSS MiB (before) |",
            "|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for channels, made in reduced.items():
            for merge in made["merges"]:
                generated = f"{made['seconds']:.0f}" if merge is made["merges"][-1] else "-"
                lines.append(
                    f"| {channels} | {merge['images']:,} | {merge['files']:,} | {merge['bytes'] / 1e6:,.0f} | "
                    f"{generated} | {merge['seconds']:.1f} | "
                    f"{merge['seconds'] / merge['files'] * 1000:.1f} | "
                    f"{merge['peak_mib']:.0f} ({merge['before_mib']:.0f}) |"
                )
        lines.append("")
        lines.append(
            "Generating with `TopExamples.add` per image (as a map job does) instead of NumPy: "
            + ", ".join(
                f"{channels} channels {made['add_seconds_per_chunk']:.2f} s per chunk "
                f"({made['add_seconds_per_chunk'] * len(made['files']) / 60:.0f} min for all {len(made['files']):,})"
                for channels, made in reduced.items()
            )
            + "; its first chunk's file equals the NumPy one array for array."
        )
        lines.append("")
    if atlas:
        lines += [
            f"**The rest of `channel-atlas`: `build_atlas`** on the map files above ({mapped['count']} images "
            f"scanned), patch 64, best of {args.atlas_repeats} run(s): without classes (`sample=0`: merge, decode "
            "the listed images again, cut patches, PNG strips, atlas.json) and with the default `sample=16` (plus "
            "the class gradients over 16 images: one forward-mode pass of the images per channel). Neither "
            "depends on the images scanned: the first follows the images listed (at most channels x top), the "
            "class gradients channels x sample.",
            "",
            "| layer | channels | images listed | merge_files s | build_atlas sample=0 s | build_atlas sample=16 s "
            "| class gradients s (difference) |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for layer, found in atlas.items():
            without, with_classes = min(found[0]), min(found[16])
            lines.append(
                f"| `{layer}` | {found['channels']} | {found['listed']} | {found['merge']:.3f} | {without:.1f} | "
                f"{with_classes:.1f} | {with_classes - without:.1f} ({found['class_sample']} images) |"
            )
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=256, help="images of the map runs")
    parser.add_argument("--layers", default="_blocks.4,_blocks.10", help="comma-separated layers of the map runs")
    parser.add_argument("--batch-size", type=int, default=16, help="images per forward (default 16)")
    parser.add_argument("--top", type=int, default=9, help="images kept per channel (default 9)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--device", default="cpu", help="cpu | cuda (default cpu)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each map and forward (median)")
    parser.add_argument("--atlas-repeats", type=int, default=1, help="runs of each build_atlas (the best counts)")
    parser.add_argument("--images", default="100000,1000000", help="comma-separated image counts of the reduce")
    parser.add_argument("--chunk-size", type=int, default=256, help="images per generated list file")
    parser.add_argument("--channels", default="112,1280", help="comma-separated channel counts of the reduce")
    parser.add_argument("--no-map", action="store_true", help="skip parts 1 and 3")
    parser.add_argument("--no-reduce", action="store_true", help="skip part 2")
    parser.add_argument("--profile", action="store_true", help="cProfile one map run of the first layer")
    parser.add_argument("--tmp", type=Path, default=None, help="work folder, kept (default: a temporary one, removed)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "RESULTS.md", help="markdown file to update")
    parser.add_argument("--merge-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.merge_child:
        merge_child(args.merge_child)
        return
    args.layers = [layer for layer in args.layers.split(",") if layer]
    counts = sorted(int(value) for value in args.images.split(","))
    command = display_command()
    started = datetime.datetime.now(datetime.timezone.utc)
    args.load_start = os.getloadavg()[0]
    work = args.tmp or Path(tempfile.mkdtemp(prefix="cnnvis-channel-examples-"))
    args.work = work
    mapped = reduced = atlas = None
    try:
        if not args.no_map:
            mapped = measure_map(args, work)
            atlas = measure_atlas(
                mapped["session"], {layer: work / f"map-{layer}.npz" for layer in args.layers}, work, args.atlas_repeats
            )
        if not args.no_reduce:
            reduced = {}
            for channels in (int(value) for value in args.channels.split(",")):
                folder = work / f"lists-{channels}"
                made = make_chunks(folder, counts[-1], args.chunk_size, channels, args.top)
                print(
                    f"[reduce] {channels} channels: {len(made['files']):,} files made in {made['seconds']:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )
                made["merges"] = [measure_merge(made["files"], n, args.chunk_size, counts[-1], work) for n in counts]
                print(f"[reduce] merges: {[round(m['seconds'], 1) for m in made['merges']]} s", file=sys.stderr)
                reduced[channels] = made
                shutil.rmtree(folder, ignore_errors=True)  # inside work, which this run made or was given
        text = render(args, command, mapped, reduced, atlas, started)
        write_section(args.out, text)
        print(text, flush=True)
    finally:
        if args.tmp is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
