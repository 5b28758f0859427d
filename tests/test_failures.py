"""One bad image loses one image: failures inside a call, their reasons, placeholders and records."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import CAT, REPO
from PIL import Image

from cnnvis_tasks.cli import cli
from cnnvis_tasks.io.outputs import read_metadata


def run(*args, expect=0):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == expect, result.output
    return result


@pytest.fixture
def chunk(tmp_path):
    """Two good photos, a 3 x 3000 picture (too large once resized) and a float TIFF with a NaN."""
    folder = tmp_path / "chunk"
    folder.mkdir()
    Image.open(CAT).save(folder / "a-cat.png")
    Image.open(REPO / "images" / "coffee.png").save(folder / "b-coffee.png")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (3000, 3, 3), dtype=np.uint8)).save(folder / "c-tall.png")
    Image.fromarray(np.array([[0.5, np.nan], [0.1, 0.2]], dtype=np.float32), mode="F").save(folder / "d-nan.tif")
    return folder


def test_a_chunk_with_bad_images_writes_every_good_one_and_succeeds(chunk, tmp_path):
    out, record = tmp_path / "out", tmp_path / "record.json"
    result = run(
        "grad-cam",
        "--image",
        chunk,
        "--out-dir",
        out,
        "--keep-going",
        "--placeholders",
        "--record",
        record,
        "--device",
        "cpu",
        "-q",
    )
    assert "c-tall.png is too large: 3 x 3000, 224 x 224000 after resizing" in result.output
    assert "d-nan.tif: it holds NaN or infinite values" in result.output
    for good in ("a-cat", "b-coffee"):
        picture = out / f"{good}-auto-overlay.png"
        assert Image.open(picture).size[1] == 224 and "status" not in read_metadata(picture)
    placeholder = out / "c-tall-auto-gray.png"
    assert Image.open(placeholder).size == (1, 1)
    facts = read_metadata(placeholder)
    assert (
        facts["status"] == "failed"
        and "max_pixels 4,000,000" in facts["reason"]
        and facts["image"].endswith("c-tall.png")
    )
    rows = {row["image"].rsplit("/", 1)[-1]: row for row in json.loads(record.read_text())["rows"]}
    assert [rows[name]["status"] for name in sorted(rows)] == ["ok", "ok", "failed", "failed"]
    assert "NaN" in rows["d-nan.tif"]["reason"] and rows["a-cat.png"]["reason"] is None


def test_without_keep_going_the_first_bad_image_stops_the_call_in_one_line(chunk, tmp_path):
    result = run("saliency", "--image", chunk, "--out-dir", tmp_path / "out", "--device", "cpu", "-q", expect=1)
    lines = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(lines) == 1 and "c-tall.png is too large" in lines[0] and "Traceback" not in result.output
    result = run("saliency", "--image", chunk, "--out-dir", tmp_path / "out", "--placeholders", expect=2)
    assert "--placeholders goes with --keep-going" in result.output


def test_a_batch_that_fails_is_computed_again_image_by_image(chunk, tmp_path, monkeypatch):
    """The model 'runs out of memory' on the coffee photo only: it alone fails, the batch's other
    image is written, and the failure names the image."""
    from cnnvis_tasks.mechanisms import relu_rules

    real = relu_rules.saliency
    calls = []

    def picky(model, images, targets=None, method="vanilla"):
        calls.append(len(images))
        if any(float(image[:, :4, :4].min()) > 0.99 for image in images):  # the marked photo's white corner
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return real(model, images, targets, method)

    monkeypatch.setattr(relu_rules, "saliency", picky)
    out = tmp_path / "out"
    marked = Image.open(chunk / "b-coffee.png").convert("RGB")
    marked.paste((255, 255, 255), (0, 0, 40, 40))
    marked.save(chunk / "b-coffee.png")
    images = [chunk / "a-cat.png", chunk / "b-coffee.png"]
    result = run(
        "saliency",
        "--image",
        images[0],
        "--image",
        images[1],
        "--out-dir",
        out,
        "--keep-going",
        "--size",
        "64",
        "--device",
        "cpu",
        "-q",
    )
    assert calls == [2, 1, 1]  # the batch, then each image alone
    assert "b-coffee.png (96 x 64 as input): the model failed on it: OutOfMemoryError: CUDA out of memory" in (
        result.output
    )
    assert sorted(p.name for p in out.iterdir()) == ["a-cat-vanilla-color.png", "a-cat-vanilla-gray.png"]


def test_labels_as_targets_and_a_label_that_names_no_class(chunk, tmp_path):
    out = tmp_path / "out"
    result = run(
        "saliency",
        "--image",
        chunk / "a-cat.png",
        "--image",
        chunk / "b-coffee.png",
        "--target",
        "n02123045",
        "--target",
        "no such class",
        "--out-dir",
        out,
        "--keep-going",
        "--size",
        "64",
        "--device",
        "cpu",
        "-q",
    )
    assert "label 'no such class' names no class of" in result.output
    assert read_metadata(out / "a-cat-vanilla-gray.png")["target"] == {"index": 281, "name": "tabby"}
    assert not (out / "b-coffee-vanilla-gray.png").exists()


def test_sizes_and_output_paths_are_checked_before_any_work(chunk, tmp_path):
    result = run(
        "saliency", "--image", chunk / "a-cat.png", "--size", "20000", "--out-gray", tmp_path / "x.png", expect=2
    )
    assert "20000 is not in the range 0<=x<=4096" in result.output
    (tmp_path / "afile").write_text("x")
    result = run("saliency", "--image", chunk / "a-cat.png", "--out-gray", tmp_path / "afile" / "x.png", expect=1)
    assert f"cannot write {tmp_path / 'afile' / 'x.png'}: {tmp_path / 'afile'} is a file, not a folder" in result.output
    result = run(
        "saliency", "--image", chunk / "a-cat.png", "--max-pixels", "1000", "--out-gray", tmp_path / "y.png", expect=1
    )
    assert "a-cat.png is too large: 451 x 300, 337 x 224 after resizing = 75,488 pixels > max_pixels 1,000" in (
        result.output
    )
    assert not (tmp_path / "y.png").exists()
