#!/usr/bin/env python
"""The gallery of a million-image run: how long it takes to write, how large its index's
files are, and how soon the index's first screen appears in Chromium.

    .venv/bin/python bench/gallery_scale.py                      # 1,000,000 images
    .venv/bin/python bench/gallery_scale.py --images 10000 --no-browser

Makes the tables a finished run would leave (no model runs and no picture is opened,
as in the workflow's gallery job): the image check's ``images.json`` (every image
labelled, one of 1,000 classes, with a box; one in 1,000 broken), ``summary.csv`` (top-1
right for about 70 %), the predictions' top-5, ``metrics.csv`` for three methods and a
spec of five per-image techniques in the chunk layout.  Then it times ``cnnvis-tasks
class-summary`` and ``cnnvis-tasks gallery`` as the workflow runs them, reports the
index's files (count, bytes, the largest), and opens ``images.html`` in headless Chromium:
the time from navigation until the first page of rows is shown, and the files it read.
Every image points at one small PNG (the thumbnails load).  Writes its section of
bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dataset import machine_info  # noqa: E402
from results_file import REPO, display_command, write_section  # noqa: E402

SECTION = "## Gallery of a million images: writing it and opening its index"
CLASSES = 1000
METHODS = (("Grad-CAM", "grad-cam"), ("Saliency maps", "saliency"), ("Integrated Gradients", "integrated-gradients"))
TECHNIQUES = ("feature-maps", "saliency", "grad-cam", "deep-dream", "deep-dream-octaves")
MODEL = "efficientnet_lite0"
CHUNK_SIZE = 256


def make_run(work: Path, count: int) -> dict:
    """The tables a finished run of ``count`` images leaves in ``work/results``."""
    from PIL import Image

    from cnnvis_tasks.workflow.plan import chunk_count, chunk_name, chunk_of

    rng = random.Random(0)
    results = work / "results"
    results.mkdir(parents=True)
    picture = work / "picture.png"
    Image.new("RGB", (64, 48), (120, 160, 200)).save(picture)
    chunks = chunk_count(count, CHUNK_SIZE)
    statuses, summary, predictions, metrics = [], [], {}, []
    for index in range(count):
        label = rng.randrange(CLASSES)
        name = f"class{label:04d}/image{index:07d}.jpg"
        broken = index % 1000 == 999
        statuses.append(
            {
                "name": name,
                "path": str(picture),
                "label": str(label),
                "status": "failed" if broken else "ok",
                "reason": "truncated file" if broken else None,
                "size": [64, 48],
                "box": [8, 6, 40, 30],
            }
        )
        chunk = chunk_name(chunk_of(name, chunks), chunks)
        if broken:
            summary.append(
                [
                    str(picture),
                    name,
                    "failed",
                    "truncated file",
                    str(label),
                    str(label),
                    f"c{label}",
                    "",
                    "",
                    "",
                    "",
                    *["failed", "truncated file"] * len(TECHNIQUES),
                ]
            )
            continue
        top1 = label if rng.random() < 0.7 else rng.randrange(CLASSES)
        probability = round(rng.uniform(0.2, 1.0), 6)
        summary.append(
            [
                str(picture),
                name,
                "ok",
                "",
                str(label),
                str(label),
                f"c{label}",
                str(top1),
                f"c{top1}",
                str(probability),
                "yes" if top1 == label else "no",
                *["ok", ""] * len(TECHNIQUES),
            ]
        )
        top = [[top1, f"c{top1}", probability]] + [
            [(top1 + k) % CLASSES, f"c{(top1 + k) % CLASSES}", 0.01] for k in (1, 2, 3, 4)
        ]
        predictions.setdefault(chunk, []).append([str(picture), json.dumps(top)])
        for method, explain in METHODS:
            metrics.append(
                [
                    MODEL,
                    method,
                    explain,
                    name,
                    str(top1),
                    f"{rng.random():.6g}",
                    f"{rng.random():.6g}",
                    f"{rng.random():.6g}",
                    f"{rng.random():.6g}",
                    f"{rng.random():.6g}",
                ]
            )
    (results / "images.json").write_text(json.dumps({"images": statuses}))
    header = ["image", "name", "status", "reason", "label"]
    header += [f"{MODEL} {c}" for c in ("label class", "label name", "top-1", "top-1 name", "probability", "correct")]
    header += [f"{MODEL} {t} auto {part}" for t in TECHNIQUES for part in ("status", "reason")]
    write_csv(results / "summary.csv", header, summary)
    for chunk, rows in predictions.items():
        write_csv(results / "records" / MODEL / "predictions" / f"{chunk}.csv", ["image", "top5"], rows)
    write_csv(
        results / "metrics.csv",
        [
            "model",
            "method",
            "explain",
            "image",
            "target",
            "deletion_auc",
            "insertion_auc",
            "road",
            "randomisation",
            "localisation",
        ],
        metrics,
    )
    write_csv(
        results / "metrics-summary.csv",
        ["model", "method", "metric", "mean", "low", "high", "count", "better"],
        [[MODEL, method, "deletion_auc", "0.5", "0.4", "0.6", str(count), "lower"] for method, _ in METHODS],
    )
    spec = {
        "layout": "chunks",
        "chunk_count": chunks,
        "models": [MODEL],
        "chunks": sorted(predictions),
        "predictions": "records/{model}/predictions/{chunk}.csv",
        "records": "records/{model}/{technique}/{setting}/{chunk}.json",
        "settings": [{"model": MODEL, "technique": t, "setting": "auto"} for t in TECHNIQUES],
        "tables": [
            {
                "section": t,
                "table": MODEL,
                "per_image": True,
                "failures": {},
                "columns": [
                    {
                        "key": "auto",
                        "label": [MODEL, "auto"],
                        "setting": "auto",
                        "path": f"{MODEL}/{t}/auto/{{chunk}}/{{image}}.png",
                    }
                ],
            }
            for t in TECHNIQUES
        ],
    }
    (results / "spec.json").write_text(json.dumps(spec))
    return {"chunks": chunks}


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def timed(command: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    print(done.stderr.strip(), flush=True)
    return time.perf_counter() - started


def index_files(data: Path) -> dict:
    sizes = [(path.stat().st_size, path) for path in data.rglob("*.js")]
    largest = max(sizes)
    by_kind = {
        "row": [s for s, p in sizes if "/rows/" in str(p)],
        "order": [s for s, p in sizes if "/order/" in str(p)],
    }
    return {
        "files": len(sizes),
        "bytes": sum(s for s, _ in sizes),
        "largest": largest[0],
        "largest_name": str(largest[1].relative_to(data)),
        "rows": len(by_kind["row"]),
        "orders": len(by_kind["order"]),
        "index_js": (data / "index.js").stat().st_size,
    }


def first_screen(results: Path) -> dict:
    """Milliseconds from navigation until images.html shows its first page, and the scripts it read."""
    sys.path.insert(0, str(REPO / "tests"))
    from browser import ChromiumSession  # the tests' Chromium driver

    with ChromiumSession() as browser:
        timings = []
        for _ in range(3):
            started = time.perf_counter()
            browser.open(results / "images.html")
            browser.wait(
                "document.body.dataset.ready === '1' && document.querySelectorAll('#images tbody tr').length > 0", 60
            )
            timings.append((time.perf_counter() - started) * 1000)
        scripts = browser.evaluate("window.cnnvis.requested.length")  # the data files the page loaded
        rows = browser.evaluate("document.querySelectorAll('#images tbody tr').length")
        errors = browser.errors()
    return {"ms": timings, "scripts": scripts, "rows": rows, "errors": errors}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1_000_000)
    parser.add_argument("--no-browser", action="store_true", help="skip the Chromium measurement")
    parser.add_argument("--tmp", type=Path, default=None, help="work folder, kept (default: a temporary one, removed)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "RESULTS.md")
    args = parser.parse_args(argv)
    command = display_command()
    info = machine_info()
    work = args.tmp or Path(tempfile.mkdtemp(prefix="cnnvis-gallery-scale-"))
    cli = str(Path(sys.executable).with_name("cnnvis-tasks"))
    try:
        started = time.perf_counter()
        make_run(work, args.images)
        made = time.perf_counter() - started
        print(f"[gallery] {args.images:,} images' tables made in {made:.0f} s", flush=True)
        results = work / "results"
        classes = timed([cli, "class-summary", "--summary", "summary.csv", "--out", "per-class.csv"], results)
        gallery = timed(
            [
                cli,
                "gallery",
                "--spec",
                "@spec.json",
                "--images",
                "images.json",
                "--summary",
                "summary.csv",
                "--table-summary",
                "metrics-summary.csv",
                "--class-summary",
                "per-class.csv",
                "--out",
                "index.html",
                "--max-images",
                "200",
            ],
            results,
        )
        files = index_files(results / "gallery" / "data")
        screen = None if args.no_browser else first_screen(results)
        text = render(args, info, command, classes, gallery, files, screen)
        write_section(args.out, text)
        print(text, flush=True)
    finally:
        if args.tmp is None:
            shutil.rmtree(work, ignore_errors=True)


def render(args, info, command, classes, gallery, files, screen) -> str:
    lines = [
        SECTION,
        "",
        f"{info['cpu']} ({info['cores']} cores). Command: `{command}`",
        "",
        f"{args.images:,} images (1,000 classes, boxes, one in 1,000 broken), one model, five per-image techniques, "
        f"trust metrics of {len(METHODS)} methods; no picture opened.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| `cnnvis-tasks class-summary` | {classes:.1f} s |",
        f"| `cnnvis-tasks gallery` (index.html, images.html, views.html, index data) | {gallery:.1f} s |",
        f"| index data files | {files['files']:,} ({files['rows']:,} image rows, {files['orders']:,} order files), "
        f"{files['bytes'] / 1e6:,.0f} MB |",
        f"| largest index file | {files['largest']:,} bytes (`{files['largest_name']}`); "
        f"index.js {files['index_js']:,} bytes |",
    ]
    if screen:
        ms = ", ".join(f"{value:.0f}" for value in screen["ms"])
        lines += [
            f"| images.html first screen in Chromium (3 loads) | {ms} ms; {screen['rows']} rows shown, "
            f"{screen['scripts']} data files read; {len(screen['errors'])} console errors |",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
