"""The workflow on a classifier a user fine-tuned: its classes from the class folders,
its labels resolved against them at the start, and everything that does not fit found
before any job."""

from __future__ import annotations

import json
import os

import pytest
import torch
import torchvision
from PIL import Image

from cnnvis_tasks.workflow import ConfigError, load_plan

FLOWERS = ["daisy", "dandelion", "rose", "sunflower", "tulip"]


@pytest.fixture
def flowers(tmp_path, monkeypatch):
    """A class-folder data set (two images a class, plus an 'orchid' folder that is no
    class of the model) and a resnet18 fine-tuned to its five classes, in the working directory."""
    monkeypatch.chdir(tmp_path)
    for name in [*FLOWERS, "orchid"]:
        os.makedirs(f"data/{name}")
        for index in range(2):
            Image.new("RGB", (40, 32), (40 * index, 90, 200)).save(f"data/{name}/photo {index}.png")
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(num_classes=5).state_dict(), "best.pt")
    with open("classes.txt", "w") as handle:
        handle.write("\n".join(FLOWERS) + "\n")
    return tmp_path


def _config(**model):
    return {
        "images": {"folder": "data"},
        "models": {"flowers": {"arch": "resnet18", "weights": "best.pt", "classes": "classes.txt", **model}},
        "techniques": {
            "grad_cam": {"target": "label", "models": {"flowers": {}}},
            "feature_maps": {"models": {"flowers": {"layers": ["layer1"]}}},
        },
    }


def test_labels_are_resolved_against_the_model_s_own_classes_at_the_start(flowers):
    plan = load_plan(_config())
    model_file = json.loads(open("results/models/flowers.json").read())
    assert model_file["classes"] == FLOWERS and model_file["arch"] == "resnet18" and model_file["weights"] == "best.pt"
    assert model_file["mean"] == [0.485, 0.456, 0.406] and model_file["input_size"] is None
    # 'orchid' names no class of flowers: its images are unusable for the labelled technique, with why
    assert sorted(plan.label_problems) == ["orchid/photo 0.png", "orchid/photo 1.png"]
    assert "label 'orchid' names no class of flowers" in plan.label_problems["orchid/photo 0.png"]
    table = next(t for t in plan.gallery_tables if t["section"] == "grad-cam")
    assert sorted(table["failures"]) == ["orchid/photo 0.png", "orchid/photo 1.png"]
    grad_cam = next(job for job in plan.jobs if job.technique in ("grad-cam", "shared-pass"))
    assert grad_cam.arguments[1:3] == ("--model-file", "results/models/flowers.json")
    assert "results/models/flowers.json" in grad_cam.weights and "best.pt" in grad_cam.weights
    targets = [grad_cam.arguments[i + 1] for i, word in enumerate(grad_cam.arguments) if word == "--target"]
    assert "orchid" not in " ".join(targets)
    # the feature maps need no label: orchids are drawn there
    features = next(t for t in plan.gallery_tables if t["section"] == "feature-maps")
    assert not features["failures"]
    assert json.loads(plan.gallery_spec)["label_problems"] == plan.label_problems


def test_a_model_file_is_rewritten_only_when_the_model_changes(flowers):
    load_plan(_config())
    before = os.stat("results/models/flowers.json").st_mtime_ns
    load_plan(_config())
    assert os.stat("results/models/flowers.json").st_mtime_ns == before  # its jobs are not re-run
    load_plan(_config(mean=[0.5, 0.5, 0.5]))
    assert json.loads(open("results/models/flowers.json").read())["mean"] == [0.5, 0.5, 0.5]


def test_classes_from_the_folders_follow_imagefolder_s_order(flowers):
    config = _config(classes={"from": "folders"})
    with pytest.raises(ConfigError, match=r"models.flowers: 6 class names .* but its head has 5 outputs"):
        load_plan(config)  # six folders (orchid too) for a five-class head: found before any job
    os.rename("data/orchid", "orchid")
    load_plan(config)
    assert json.loads(open("results/models/flowers.json").read())["classes"] == FLOWERS


def test_what_does_not_fit_stops_the_start_naming_the_key(flowers):
    with open("three.txt", "w") as handle:
        handle.write("a\nb\nc\n")
    with pytest.raises(ConfigError, match=r"models.flowers: 3 class names \(three.txt\) but its head has 5 outputs"):
        load_plan(_config(classes="three.txt"))
    torch.save(torchvision.models.alexnet(num_classes=5).state_dict(), "alex.pt")
    with pytest.raises(ConfigError, match=r"models.flowers: weights file alex.pt does not fit resnet18: missing"):
        load_plan(_config(weights="alex.pt"))
    with pytest.raises(ConfigError, match=r"models.flowers.classes: 'nope.txt': no such file"):
        load_plan(_config(classes="nope.txt"))
    with pytest.raises(ConfigError, match="models.flowers.arch: unknown model 'resnet1'"):
        load_plan(_config(arch="resnet1"))


def test_a_torchscript_model_is_refused_by_name_for_what_needs_layers(flowers):
    model = torchvision.models.resnet18(num_classes=5).eval()
    torch.jit.save(torch.jit.trace(model, torch.zeros(1, 3, 32, 32)), "model.ts")
    with pytest.raises(
        ConfigError, match=r"techniques.feature_maps.models.flowers: feature-maps cannot run on a TorchScript"
    ):
        load_plan(_config(arch="torchscript", weights="model.ts"))
    config = _config(arch="torchscript", weights="model.ts")
    config["techniques"] = {"saliency": {"target": "label", "methods": ["vanilla"], "models": {"flowers": {}}}}
    plan = load_plan(config)
    assert json.loads(open("results/models/flowers.json").read())["classes"] == FLOWERS
    assert sorted(plan.label_problems) == ["orchid/photo 0.png", "orchid/photo 1.png"]
