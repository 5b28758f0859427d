"""The generated shapes data set (cnnvis_tasks.io.synthetic): its files, manifest and boxes, the
classifier trained on it (cnnvis_tasks.io.synthetic_model), and its checkpoints in four forms,
each loading back to the same logits."""

from __future__ import annotations

import argparse
import csv
import json
import time

import numpy as np
import pytest
import torch
from PIL import Image

from cnnvis_tasks.io import synthetic, synthetic_model
from cnnvis_tasks.io.image_list import list_images

SIZE = 64


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    return root, synthetic.make_dataset(root, per_class=5, size=SIZE, split="train")


def test_the_data_set_is_an_image_folder_with_a_manifest(dataset):
    root, records = dataset
    assert synthetic.folder_classes(root) == sorted(synthetic.CLASSES) == ["circle", "cross", "square", "triangle"]
    assert len(records) == 20 and all(record.path.is_file() for record in records)
    assert all(record.path.parent == root / record.label and record.split == "train" for record in records)
    odd = [record.path.name for record in records if " " in record.path.name and not record.path.name.isascii()]
    assert len(odd) == len(synthetic.CLASSES)  # the first image of each class
    with (root / synthetic.MANIFEST).open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == list(synthetic.MANIFEST_COLUMNS)
    assert synthetic.read_manifest(root, "train") == records
    # cnnvis reads the manifest's labels and boxes, and the folders' labels, as written
    listed = {entry.location: entry for entry in list_images(manifest=root / synthetic.MANIFEST).images}
    assert {path: (entry.label, entry.columns.get("box")) for path, entry in listed.items()} == {
        str(record.path): (record.label, tuple(float(v) for v in record.box)) for record in records
    }
    by_folder = list_images(folder=root).images
    assert sorted((entry.location, entry.label) for entry in by_folder) == sorted(
        (str(record.path), record.label) for record in records
    )


def test_each_box_is_exactly_where_the_red_object_was_drawn(dataset):
    _root, records = dataset
    for record in records:
        pixels = np.asarray(Image.open(record.path).convert("RGB"))
        assert pixels.shape == (SIZE, SIZE, 3)
        red = synthetic.is_object_pixel(pixels)
        rows, columns = np.nonzero(red)
        xmin, ymin, xmax, ymax = record.box
        # every red pixel lies in the box, and the box is the tightest around them
        assert (columns.min(), rows.min(), columns.max() + 1, rows.max() + 1) == (xmin, ymin, xmax, ymax)
        assert 0.07 <= record.box_share <= 0.24
        inside = red[ymin:ymax, xmin:xmax]
        fill = inside.mean()
        if record.label == "square":
            assert fill == 1.0
        elif record.label == "circle":
            assert 0.7 < fill < 0.86
        elif record.label == "triangle":
            assert 0.4 < fill < 0.62
            assert inside[0].sum() != inside[-1].sum()  # an apex and a base
        else:  # a cross: its centre filled, its corners empty
            height, width = inside.shape
            assert inside[height // 2, width // 2]
            assert not inside[0, 0] and not inside[0, -1] and not inside[-1, 0] and not inside[-1, -1]
        # outside the box nothing is red: the distractors and the background never are
        outside = red.copy()
        outside[ymin:ymax, xmin:xmax] = False
        assert not outside.any()


def test_images_depend_on_the_seed_and_split_only(tmp_path, dataset):
    _root, records = dataset
    again = synthetic.make_dataset(tmp_path / "again", classes=("square", "circle"), per_class=2, size=SIZE)
    first = {(r.label, r.path.name): r for r in records}
    for record in again:
        assert record.path.read_bytes() == first[(record.label, record.path.name)].path.read_bytes()
    other = synthetic.make_dataset(tmp_path / "test", classes=("square",), per_class=2, size=SIZE, split="test")
    assert [r.path.name for r in other] == ["test ünï 0000.png", "test-0001.png"]
    assert other[1].path.read_bytes() != first[("square", "train-0001.png")].path.read_bytes()
    with pytest.raises(ValueError, match="unknown classes"):
        synthetic.make_dataset(tmp_path / "bad", classes=("dog",), per_class=1, size=SIZE)


def test_training_is_seeded_and_keeps_imagefolder_order(dataset):
    _root, records = dataset
    classes = synthetic.folder_classes(_root)
    with pytest.raises(ValueError, match="sorted order"):
        synthetic_model.train_classifier(records, list(synthetic.CLASSES), size=SIZE, epochs=1)
    first, history = synthetic_model.train_classifier(records, classes, size=SIZE, epochs=1, batch_size=8)
    second, _ = synthetic_model.train_classifier(records, classes, size=SIZE, epochs=1, batch_size=8)
    for key, value in first.state_dict().items():
        assert torch.equal(value, second.state_dict()[key]), key
    assert history["classes"] == classes and history["mean"] == list(synthetic_model.MEAN)
    assert len(history["loss"]) == 1 and history["seconds"] > 0
    predictions = synthetic_model.evaluate(first, records, classes, size=SIZE)
    assert set(predictions) == {str(record.path) for record in records}
    assert all(0 <= index < len(classes) for index in predictions.values())
    assert 0 <= synthetic_model.accuracy(predictions, records, classes) <= 1
    shares = synthetic_model.grad_cam_shares(first, records, classes, size=SIZE)
    assert len(shares) == len(records) and all(np.isnan(share) or 0 <= share <= 1 for share in shares)
    assert all(parameter.requires_grad and parameter.grad is None for parameter in first.parameters())


def _trained_looking_model():
    """A random timm model whose batch-norm statistics are not the defaults (as a trained one's)."""
    import timm

    torch.manual_seed(0)
    model = timm.create_model(synthetic_model.ARCH, pretrained=False, num_classes=len(synthetic.CLASSES))
    with torch.no_grad():
        for parameter in model.parameters():  # timm starts each residual branch at zero
            parameter.add_(torch.randn_like(parameter) * 0.1)
        model.train()(torch.rand(8, 3, SIZE, SIZE) * 2)
    return model.eval()


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")
def test_every_checkpoint_form_loads_back_to_the_same_logits(tmp_path):
    import timm
    from safetensors import safe_open
    from safetensors.torch import load_file
    from timm.models import load_checkpoint

    model = _trained_looking_model()
    classes = sorted(synthetic.CLASSES)
    x = torch.rand(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        expected = model(x)
    paths = synthetic_model.save_checkpoints(
        model, tmp_path, classes, arch=synthetic_model.ARCH, size=SIZE, epoch=7, metric=0.5
    )
    assert {name: path.name for name, path in paths.items()} == {
        "state_dict": "model.pt",
        "torchscript": "model.torchscript.pt",
        "timm": "checkpoint-timm.pth.tar",
        "safetensors": "model.safetensors",
    }

    def fresh():
        return timm.create_model(synthetic_model.ARCH, pretrained=False, num_classes=len(classes)).eval()

    def logits(module):
        with torch.inference_mode():
            return module(x)

    state = fresh()
    state.load_state_dict(torch.load(paths["state_dict"], weights_only=True))
    assert torch.equal(logits(state), expected)

    scripted = torch.jit.load(str(paths["torchscript"]))
    assert torch.allclose(logits(scripted), expected, rtol=1e-4, atol=1e-5)

    # timm's train.py form: the weights under 'state_dict', its args an argparse.Namespace
    with torch.serialization.safe_globals([argparse.Namespace]):
        checkpoint = torch.load(paths["timm"], weights_only=True)
    assert checkpoint["arch"] == synthetic_model.ARCH and checkpoint["epoch"] == 7 and checkpoint["metric"] == 0.5
    assert checkpoint["args"].model == synthetic_model.ARCH and checkpoint["args"].num_classes == len(classes)
    assert {"optimizer", "version", "saver"} <= set(checkpoint)
    from_entry = fresh()
    from_entry.load_state_dict(checkpoint["state_dict"])
    assert torch.equal(logits(from_entry), expected)
    by_timm = fresh()
    load_checkpoint(by_timm, str(paths["timm"]))  # timm's own loader
    assert torch.equal(logits(by_timm), expected)

    from_safetensors = fresh()
    from_safetensors.load_state_dict(load_file(paths["safetensors"]))
    assert torch.equal(logits(from_safetensors), expected)
    with safe_open(paths["safetensors"], framework="pt") as handle:
        metadata = handle.metadata()
    assert json.loads(metadata["classes"]) == classes and metadata["arch"] == synthetic_model.ARCH
    assert json.loads(metadata["mean"]) == list(synthetic_model.MEAN)
    assert json.loads(metadata["std"]) == list(synthetic_model.STD)


@pytest.fixture
def one_thread():
    """One torch thread: on a machine whose cores are busy, two train several times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_a_classifier_trained_here_is_right_and_its_grad_cam_looks_in_the_box(tmp_path, one_thread):
    train = synthetic.make_dataset(tmp_path / "train", split="train")
    held_out = synthetic.make_dataset(tmp_path / "test", per_class=50, split="test", seed=1)
    classes = synthetic.folder_classes(tmp_path / "train")
    started = time.perf_counter()
    model, history = synthetic_model.train_classifier(train, classes)
    predictions = synthetic_model.evaluate(model, held_out, classes)
    correct = synthetic_model.accuracy(predictions, held_out, classes)
    print(
        f"\n{history['arch']} at {history['size']} px, {history['images']} images x {history['epochs']} epochs: "
        f"trained in {history['seconds']:.1f} s ({time.perf_counter() - started:.1f} s with loading and "
        f"evaluation), held-out accuracy {correct:.3f} ({len(held_out)} images)"
    )
    assert correct >= 0.9
    shares = synthetic_model.grad_cam_shares(model, held_out, classes)
    for label in classes:
        mine = [index for index, record in enumerate(held_out) if record.label == label]
        share = float(np.nanmean([shares[index] for index in mine]))
        box = float(np.mean([held_out[index].box_share for index in mine]))
        print(f"{label}: Grad-CAM in box {share:.3f}, box {box:.3f} of the image")
        assert share >= 2 * box, label
