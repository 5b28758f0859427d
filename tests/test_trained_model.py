"""Proof on a model trained here: the workflow explains the class a user's own model was
trained on.  A small timm classifier is trained on the shapes data set (the one red shape
of each image decides its class; its box is in the manifest), saved as a state dict, a
timm training checkpoint and TorchScript, and the workflow runs on the held-out images
with ``target: label`` and ``classes: {from: folders}``: every model form predicts, image
by image, what the training script predicted, and Grad-CAM puts at least twice the box's
share of the image inside the box, for every class.  About two minutes on 2 cores."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from cnnvis_tasks.io import synthetic, synthetic_model

RATIO = 2.0


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_the_workflow_explains_the_class_the_user_s_model_was_trained_on(tmp_path):
    import torch

    torch.set_num_threads(1)  # two threads on two busy cores train four times slower
    train = synthetic.make_dataset(tmp_path / "data" / "train", per_class=150, split="train")
    held_out = synthetic.make_dataset(tmp_path / "data" / "held-out", per_class=25, split="held-out")
    classes = synthetic.folder_classes(tmp_path / "data" / "train")
    model, _history = synthetic_model.train_classifier(train, classes)
    predictions = synthetic_model.evaluate(model, held_out, classes)
    assert synthetic_model.accuracy(predictions, held_out, classes) >= 0.9
    files = synthetic_model.save_checkpoints(model, tmp_path / "weights", classes)

    normalisation = {
        "mean": list(synthetic_model.MEAN),
        "std": list(synthetic_model.STD),
        "classes": {"from": "folders"},
    }
    config = {
        "images": {"manifest": "data/held-out/manifest.csv"},
        "device": "cpu",
        "models": {
            "state_dict": {
                "arch": f"timm:{synthetic_model.ARCH}",
                "weights": str(files["state_dict"]),
                **normalisation,
            },
            "timm_checkpoint": {"arch": f"timm:{synthetic_model.ARCH}", "weights": str(files["timm"]), **normalisation},
            "torchscript": {"arch": "torchscript", "weights": str(files["torchscript"]), **normalisation},
        },
        "techniques": {
            "grad_cam": {"target": "label", "size": synthetic.SIZE, "models": {"state_dict": {}}},
            "saliency": {
                "target": "label",
                "methods": ["vanilla"],
                "size": synthetic.SIZE,
                "models": {"timm_checkpoint": {}, "torchscript": {}},
            },
            "metrics": {
                "target": "label",
                "methods": ["grad-cam"],
                "deletion_insertion": False,
                "road": False,
                "randomisation_stages": 0,
                "size": synthetic.SIZE,
                "models": {"state_dict": {}},
            },
        },
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    environment = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-s",
            str(REPO / "Snakefile"),
            "--cores",
            "2",
            "--configfile",
            "config.yaml",
        ],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "run finished" in done.stderr

    summary = {row["name"]: row for row in _rows(tmp_path / "results" / "summary.csv")}
    assert len(summary) == len(held_out)
    for record in held_out:
        name = record.path.relative_to(tmp_path / "data" / "held-out").as_posix()
        row = summary[name]
        assert row["state_dict label class"] == str(classes.index(record.label))  # the folder's name, its class
        for model in config["models"]:
            assert row[f"{model} top-1"] == str(predictions[str(record.path)]), (model, name)
        assert row["state_dict grad-cam auto status"] == "ok"
    # Grad-CAM of the label's class, inside the box the manifest gives, against the box's share
    shares: dict[str, list[float]] = {name: [] for name in classes}
    boxes: dict[str, list[float]] = {name: [] for name in classes}
    records = {record.path.relative_to(tmp_path / "data" / "held-out").as_posix(): record for record in held_out}
    for row in _rows(tmp_path / "results" / "metrics.csv"):
        record = records[row["image"]]
        shares[record.label].append(float(row["localisation"]))
        boxes[record.label].append(record.box_share)
    for name in classes:
        assert len(shares[name]) == 25
        inside, box = sum(shares[name]) / 25, sum(boxes[name]) / 25
        assert inside >= RATIO * box, (name, inside, box)
