#!/usr/bin/env python
"""Proof on a model trained here: your model, your classes, the right class explained.

Makes the shapes data set (cnnvis_tasks.io.synthetic: the one red shape of each image
decides its class, its box in a manifest; distractor shapes of every kind in other
colours), trains a small timm classifier on it from scratch
(cnnvis_tasks.io.synthetic_model), reports the held-out accuracy and the training
time, checks in-process that Grad-CAM for each image's label puts at least twice the
box's share of its attribution inside the box, saves the weights (state dict,
TorchScript, timm checkpoint, safetensors) and writes a workflow config for the
held-out images:

    models: {shapes: {arch: timm:ARCH, weights: weights/model.pt, classes: {from: folders}, mean, std}}

With ``--run`` it then runs the workflow on them (``snakemake -s REPO/Snakefile
--directory FOLDER --cores C --configfile FOLDER/config.yaml``) and checks
results/summary.csv and results/metrics.csv: each image's top-1 class equals the
training script's prediction, and per class the mean Grad-CAM share inside the box
is at least twice the box's mean share of the image.  Exits 1 when a check fails.

    .venv/bin/python bench/trained_model.py                     # data, training, checks, config in a temp folder
    .venv/bin/python bench/trained_model.py --folder /tmp/shapes --run
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dataset import env_for_jobs, machine_info, run_timed, snakemake_cmd  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from cnnvis_tasks.io import synthetic, synthetic_model  # noqa: E402

MODEL = "shapes"
METHOD = "grad-cam"
RATIO = 2.0  # Grad-CAM's share inside the box, at least this times the box's share of the image


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", type=Path, help="for the data, weights, config and results (default: a temp dir)")
    parser.add_argument("--arch", default=synthetic_model.ARCH, help="timm architecture (default %(default)s)")
    parser.add_argument("--size", type=int, default=synthetic.SIZE, help="image side in pixels (default %(default)s)")
    parser.add_argument("--per-class", type=int, default=150, help="training images per class (default %(default)s)")
    parser.add_argument("--held-out", type=int, default=50, help="held-out images per class (default %(default)s)")
    parser.add_argument(
        "--epochs", type=int, default=synthetic_model.EPOCHS, help="training epochs (default %(default)s)"
    )
    parser.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    # torch's threads wait for each other spinning: on a machine whose cores are busy, two trained
    # four times slower than one (219 s against 50 s), on an idle one they are faster
    parser.add_argument("--threads", type=int, default=1, help="torch threads for training (default %(default)s)")
    parser.add_argument(
        "--input-size",
        action="store_true",
        help="also give the model input_size: SIZE (summary.csv's predictions are then made at SIZE, not at 224)",
    )
    parser.add_argument("--run", action="store_true", help="also run the workflow on the held-out images and check it")
    parser.add_argument("--cores", type=int, default=2, help="snakemake --cores with --run (default %(default)s)")
    parser.add_argument(
        "--timeout", type=float, default=1800, help="seconds the workflow may run (default %(default)s)"
    )
    return parser.parse_args(argv)


def workflow_config(args, manifest: str, weights: str) -> dict:
    """The workflow's config for the trained model on the held-out images (paths relative to the folder)."""
    model = {
        "arch": f"timm:{args.arch}",
        "weights": weights,
        "classes": {"from": "folders"},
        "mean": list(synthetic_model.MEAN),
        "std": list(synthetic_model.STD),
    }
    if args.input_size:
        model["input_size"] = args.size
    return {
        "images": {"manifest": manifest},
        "device": "cpu",
        "models": {MODEL: model},
        "techniques": {
            "grad_cam": {"target": "label", "size": args.size, "models": {MODEL: {}}},
            "metrics": {
                "target": "label",
                "methods": [METHOD],
                "deletion_insertion": False,
                "road": False,
                "randomisation_stages": 0,
                "size": args.size,
                "models": {MODEL: {}},
            },
        },
    }


def _key(folder: Path, path: str | Path) -> str:
    """A path from a results file or a record, as one comparable text (relative ones are the folder's)."""
    path = Path(path)
    return os.path.realpath(path if path.is_absolute() else folder / path)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def check_workflow(folder: Path, held_out, classes, predictions: dict[str, int]) -> dict:
    """Compare results/summary.csv and results/metrics.csv with the training script's predictions and boxes."""
    rows = read_csv(folder / "results" / "summary.csv")
    summary = {_key(folder, row["image"]): row for row in rows}
    # metrics.csv names each image by its result name (its path below the manifest's folder)
    by_name = {row["name"]: _key(folder, row["image"]) for row in rows}
    shares = {
        by_name.get(row["image"], row["image"]): float(row["localisation"])
        for row in read_csv(folder / "results" / "metrics.csv")
        if row.get("model") == MODEL and row.get("explain") == METHOD and row.get("localisation")
    }
    found = {"missing": [], "disagree": [], "top1": {}, "share": {}}
    for record in held_out:
        key = _key(folder, record.path)
        row = summary.get(key)
        if row is None or row.get("status") != "ok" or not row.get(f"{MODEL} top-1"):
            found["missing"].append(str(record.path))
            continue
        top1 = int(row[f"{MODEL} top-1"])
        found["top1"][key] = top1
        if top1 != predictions[str(record.path)]:
            found["disagree"].append((str(record.path), predictions[str(record.path)], top1))
        if key in shares:
            found["share"][key] = shares[key]
    return found


def mean(values) -> float:
    values = [value for value in values if value is not None and math.isfinite(value)]
    return sum(values) / len(values) if values else float("nan")


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    folder = (args.folder or Path(tempfile.mkdtemp(prefix="cnnvis-trained-"))).resolve()
    data = folder / "data"
    info = machine_info()
    print(f"{info['cpu']} ({info['cores']} cores), torch {info['torch']}, {args.threads} torch threads; in {folder}")

    started = time.perf_counter()
    train = synthetic.make_dataset(data / "train", per_class=args.per_class, size=args.size, seed=args.seed)
    held_out = synthetic.make_dataset(
        data / "held-out", per_class=args.held_out, size=args.size, seed=args.seed, split="held-out"
    )
    made = time.perf_counter() - started
    classes = synthetic.folder_classes(data / "train")
    assert classes == synthetic.folder_classes(data / "held-out")
    print(
        f"data: {len(train)} training and {len(held_out)} held-out images of "
        f"{args.size} x {args.size} px in {made:.1f} s; classes in folder order: {', '.join(classes)}"
    )

    model, history = synthetic_model.train_classifier(
        train,
        classes,
        arch=args.arch,
        size=args.size,
        epochs=args.epochs,
        lr=args.lr,
        seed=args.seed,
        log=lambda line: print("  " + line, flush=True),
    )
    predictions = synthetic_model.evaluate(model, held_out, classes, size=args.size)
    correct = synthetic_model.accuracy(predictions, held_out, classes)
    print(
        f"trained {args.arch} in {history['seconds']:.1f} s (+ {history['load_seconds']:.1f} s reading images): "
        f"held-out accuracy {correct:.3f} ({round(correct * len(held_out))}/{len(held_out)})"
    )
    shares = synthetic_model.grad_cam_shares(model, held_out, classes, size=args.size)

    paths = synthetic_model.save_checkpoints(model, folder / "weights", classes, arch=args.arch, size=args.size)
    with (folder / "predictions.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["path", "label", "predicted", "predicted name", "grad-cam in box", "box share"])
        for record, share in zip(held_out, shares):
            index = predictions[str(record.path)]
            writer.writerow([record.path, record.label, index, classes[index], f"{share:.6f}", record.box_share])
    (folder / "history.json").write_text(json.dumps({**history, "held_out_accuracy": correct}, indent=1))
    import yaml

    config = workflow_config(
        args,
        (data / "held-out" / synthetic.MANIFEST).relative_to(folder).as_posix(),
        paths["state_dict"].relative_to(folder).as_posix(),
    )
    config_path = folder / "config.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    print(f"weights: {', '.join(str(path.relative_to(folder)) for path in paths.values())}; config: {config_path}")

    run = found = None
    if args.run:
        command = [
            *snakemake_cmd(),
            "-s",
            str(REPO / "Snakefile"),
            "--directory",
            str(folder),
            "--cores",
            str(args.cores),
            "--configfile",
            str(config_path),
        ]
        print("running:", " ".join(command), flush=True)
        run = run_timed(command, folder, args.timeout, log=folder / "snakemake.log", env=env_for_jobs())
        print(f"workflow: exit {run['rc']}{' (timed out)' if run['timed_out'] else ''} in {run['wall']:.0f} s")
        if run["rc"] == 0:
            found = check_workflow(folder, held_out, classes, predictions)
        else:
            print(run["tail"])

    failures = []
    if correct < 0.9:
        failures.append(f"held-out accuracy {correct:.3f} < 0.9")
    header = ["class", "images", "accuracy", "box share", "Grad-CAM in box (here)", "ratio"]
    if found is not None:
        header += ["top-1 agrees (workflow)", "Grad-CAM in box (metrics.csv)", "ratio (workflow)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label in classes:
        index = classes.index(label)
        mine = [(record, share) for record, share in zip(held_out, shares) if record.label == label]
        box = mean(record.box_share for record, _ in mine)
        here = mean(share for _, share in mine)
        right = sum(predictions[str(record.path)] == index for record, _ in mine)
        cells = [label, str(len(mine)), f"{right / len(mine):.3f}", f"{box:.3f}", f"{here:.3f}", f"{here / box:.2f}"]
        if here < RATIO * box:
            failures.append(f"{label}: Grad-CAM in box {here:.3f} < {RATIO} x box share {box:.3f} (in-process)")
        if found is not None:
            keys = [_key(folder, record.path) for record, _ in mine]
            agree = sum(key in found["top1"] for key in keys) - sum(
                _key(folder, path) in keys for path, _, _ in found["disagree"]
            )
            there = mean(found["share"].get(key) for key in keys)
            cells += [f"{agree}/{len(mine)}", f"{there:.3f}", f"{there / box:.2f}"]
            if not there >= RATIO * box:
                failures.append(f"{label}: Grad-CAM in box {there:.3f} < {RATIO} x box share {box:.3f} (metrics.csv)")
        lines.append("| " + " | ".join(cells) + " |")
    print("\n".join(lines))
    if found is not None:
        if found["missing"]:
            failures.append(
                f"{len(found['missing'])} images without a top-1 in summary.csv, e.g. {found['missing'][0]}"
            )
        if found["disagree"]:
            path, ours, theirs = found["disagree"][0]
            failures.append(
                f"{len(found['disagree'])} images whose summary.csv top-1 differs from the training script's, "
                f"e.g. {path}: {theirs} vs {ours}"
            )
        workflow_right = sum(
            found["top1"].get(_key(folder, record.path)) == classes.index(record.label) for record in held_out
        )
        print(f"workflow accuracy {workflow_right / len(held_out):.3f}, training script's {correct:.3f}")
    elif args.run:
        failures.append("the workflow did not finish")
    report = {
        "machine": info,
        "folder": str(folder),
        "arch": args.arch,
        "size": args.size,
        "train_images": len(train),
        "held_out_images": len(held_out),
        "epochs": args.epochs,
        "threads": args.threads,
        "train_seconds": history["seconds"],
        "held_out_accuracy": correct,
        "workflow_seconds": run["wall"] if run else None,
        "failures": failures,
    }
    (folder / "report.json").write_text(json.dumps(report, indent=1))
    for failure in failures:
        print("FAILED:", failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
