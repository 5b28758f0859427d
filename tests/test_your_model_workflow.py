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
    job_file = grad_cam.arguments[2]
    assert grad_cam.arguments[1] == "--model-file" and job_file.startswith("results/models/flowers-")
    assert json.loads(open(job_file).read()) == model_file  # what the job loads is what the start found
    assert job_file in grad_cam.weights and "best.pt" in grad_cam.weights
    targets = [grad_cam.arguments[i + 1] for i, word in enumerate(grad_cam.arguments) if word == "--target"]
    assert "orchid" not in " ".join(targets)
    # the feature maps need no label: orchids are drawn there
    features = next(t for t in plan.gallery_tables if t["section"] == "feature-maps")
    assert not features["failures"]
    assert json.loads(plan.gallery_spec)["label_problems"] == plan.label_problems


def _job_file(plan):
    return next(job.arguments[2] for job in plan.jobs if job.arguments[1] == "--model-file")


def test_a_job_s_model_file_never_changes_under_it(flowers):
    first = _job_file(load_plan(_config()))
    before = os.stat(first).st_mtime_ns
    assert _job_file(load_plan(_config())) == first and os.stat(first).st_mtime_ns == before  # nothing re-runs
    # another config (a dry run with other settings while a run goes on) writes a file of its own
    changed = _job_file(load_plan(_config(mean=[0.5, 0.5, 0.5])))
    assert changed != first and json.loads(open(changed).read())["mean"] == [0.5, 0.5, 0.5]
    assert json.loads(open(first).read())["mean"] == [0.485, 0.456, 0.406] and os.stat(first).st_mtime_ns == before
    assert json.loads(open("results/models/flowers.json").read())["mean"] == [0.5, 0.5, 0.5]  # the latest, to read
    # a retrained checkpoint in the same file is loaded again at the start
    torch.save(torchvision.models.resnet18(num_classes=4).state_dict(), "best.pt")
    with pytest.raises(ConfigError, match="5 class names .* but its head has 4 outputs"):
        load_plan(_config())


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


def test_an_image_is_unusable_only_when_no_labelled_model_knows_its_label(flowers):
    with open("six.txt", "w") as handle:
        handle.write("\n".join(sorted([*FLOWERS, "orchid"])) + "\n")
    torch.save(torchvision.models.resnet18(num_classes=6).state_dict(), "six.pt")
    config = _config()
    config["models"]["six"] = {"arch": "resnet18", "weights": "six.pt", "classes": "six.txt"}
    config["techniques"]["grad_cam"]["models"]["six"] = {}
    plan = load_plan(config)
    assert plan.label_problems == {}  # 'six' knows orchids: only flowers' tables leave them out
    tables = {t["table"]: t for t in plan.gallery_tables if t["section"] == "grad-cam"}
    assert sorted(tables["flowers"]["failures"]) == ["orchid/photo 0.png", "orchid/photo 1.png"]
    assert tables["six"]["failures"] == {}


def test_numeric_and_wordnet_class_names_are_their_own_classes(flowers):
    from cnnvis_tasks.models.labels import resolve_label

    folders = ["0", "1", "10", "11", "2"]  # ImageFolder's order of folders named by number
    assert [resolve_label(name, folders) for name in ("10", "2", "11")] == [2, 4, 3]
    assert resolve_label("n01440764", ["n02102040", "n01440764"]) == 1  # Imagenette's folders
    assert resolve_label("4", folders) == 4  # a number no class is named: an index


def test_a_spec_too_long_for_one_argument_goes_to_the_commands_as_a_file(flowers):
    from cnnvis_tasks.cli.gallery import load_json

    plan = load_plan(_config())
    assert json.loads(plan.gallery_spec_argument) == plan.spec  # short: the argument itself
    plan = load_plan(_config())
    plan.label_problems = {
        f"orchid/{index:05}.png": "label 'orchid' names no class of flowers" for index in range(3000)
    }
    argument = plan.gallery_spec_argument
    assert argument.startswith("@results/.cache/gallery-spec-") and len(argument) < 100
    assert load_json(argument, "--spec") == json.loads(json.dumps(plan.spec))
