"""Image sources: any layout and file name, labels, files that are not images, the check."""

from __future__ import annotations

import json
import os
import shutil
import time

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import CAT, REPO
from PIL import Image

from cnnvis_tasks.errors import CnnvisError
from cnnvis_tasks.io import image_list
from cnnvis_tasks.io.image_list import check_images, entries_for, image_name, list_images, safe_component
from cnnvis_tasks.models.imagenet import IMAGENET_CATEGORIES
from cnnvis_tasks.models.labels import imagenet_wnids, resolve_label

ODD = ["brace{x}.png", "a#b%20.png", "quote'\"s.png", "space d.png", "ünï cödé.png"]


def write(path, size=(8, 6)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (10, 20, 30)).save(path, format="PNG")
    return path


def test_names_keep_the_path_below_the_source_and_odd_characters_stay_readable():
    assert image_name("cat/001.png") == "cat/001.png" and image_name("chelsea.jpg") == "chelsea.jpg"
    for name in ("a#b%20.png", "quote'\"s.png", "space d.png", "ünï cödé.png"):
        assert safe_component(name) == name  # any character Snakemake and shells can take, quoted
    braces = safe_component("brace{x}.png")
    assert braces.startswith("brace_x_.png-") and len(braces) == len("brace_x_.png-") + 8
    assert safe_component("brace{x}.png") == braces  # stable
    assert safe_component("brace{y}.png") != braces  # and distinct
    assert image_name("../up/a\\b.png").startswith("__-") and "/up/a_b.png-" in image_name("../up/a\\b.png")
    assert "{" not in image_name("x/{a}/b.png") and "\n" not in safe_component("new\nline.png")


def test_a_class_folder_data_set_with_colliding_names(tmp_path):
    ds = tmp_path / "ds"
    for name in (
        "cat/001.png",
        "dog/001.png",
        "cat/001.jpg",
        "n02123045/001.png",
        "top.png",
        ".hidden/x.png",
        "cat/.hidden.png",
        "cat/notes.txt",
        *(f"odd/{n}" for n in ODD),
    ):
        write(ds / name) if name.endswith((".png", ".jpg")) else (ds / name).write_text("x")
    (ds / "cat" / "dangling.png").symlink_to(ds / "nowhere.png")
    os.mkfifo(ds / "cat" / "pipe.png")
    (ds / "folder.png").mkdir()
    listing = list_images(folder=ds)
    names = [entry.name for entry in listing.images]
    assert len(names) == len(set(names)) == 5 + len(ODD)  # no collisions, hidden and non-image files left out
    assert {"cat/001.png", "cat/001.jpg", "dog/001.png", "n02123045/001.png", "top.png"} <= set(names)
    labels = {entry.name: entry.label for entry in listing.images}
    assert labels["cat/001.png"] == "cat" and labels["n02123045/001.png"] == "n02123045" and labels["top.png"] is None
    assert {str(path.relative_to(ds)): reason for path, reason in listing.skipped} == {
        "cat/dangling.png": "a link to nothing (dangling)",
        "cat/pipe.png": "a named pipe (FIFO), not a file",
        "folder.png": "a folder, not a file",
    }
    statuses = {record["name"]: record for record in check_images(listing.images)}
    assert all(record["status"] == "ok" and record["size"] == [8, 6] for record in statuses.values())


def test_a_glob_names_images_below_its_fixed_start(tmp_path):
    ds = tmp_path / "ds"
    for name in ("cat/001.png", "dog/001.png", "dog/deep/002.png"):
        write(ds / name)
    listing = list_images(pattern=str(ds / "**" / "*.png"))
    assert [entry.name for entry in listing.images] == ["cat/001.png", "dog/001.png", "dog/deep/002.png"]
    assert [entry.label for entry in listing.images] == ["cat", "dog", "dog"] and listing.skipped == []


def test_manifests_text_and_csv_with_labels(tmp_path):
    write(tmp_path / "images" / "b.png")
    write(tmp_path / "images" / "sub" / "c.jpg")
    lists = tmp_path / "lists"
    lists.mkdir()
    text = lists / "images.txt"
    text.write_text("# two images\n../images/b.png\n\n" + str(tmp_path / "images" / "sub" / "c.jpg") + "\n")
    listing = list_images(manifest=text)
    assert listing.paths == [tmp_path / "images" / "b.png", tmp_path / "images" / "sub" / "c.jpg"]
    assert [entry.label for entry in listing.images] == [None, None]
    table = tmp_path / "images" / "labels.csv"
    table.write_text('path,label,comment\nb.png,n02123045,"a cat, maybe"\nsub/c.jpg,,\nmissing.png,281,\n')
    listing = list_images(manifest=table)
    assert [(entry.name, entry.label) for entry in listing.images] == [
        ("b.png", "n02123045"),
        ("missing.png", "281"),
        ("sub/c.jpg", None),
    ]
    statuses = {record["name"]: record for record in check_images(listing.images)}
    assert statuses["missing.png"]["status"] == "failed" and "image not found" in statuses["missing.png"]["reason"]
    (tmp_path / "bad.csv").write_text("file,label\nb.png,1\n")
    with pytest.raises(CnnvisError, match="a CSV manifest needs a 'path' column"):
        list_images(manifest=tmp_path / "bad.csv")
    with pytest.raises(CnnvisError, match="exactly one image source"):
        list_images(folder=tmp_path, manifest=text)


def test_labels_name_classes_by_index_wordnet_id_or_name():
    assert len(imagenet_wnids()) == 1000 and imagenet_wnids()[281] == "n02123045"
    assert imagenet_wnids() == tuple(sorted(imagenet_wnids()))  # ImageNet's class order is the IDs' order
    for label in ("281", "n02123045", "tabby", "Tabby", " tabby "):
        assert resolve_label(label, IMAGENET_CATEGORIES) == 281
    assert resolve_label("tiger_cat", IMAGENET_CATEGORIES) == resolve_label("tiger cat", IMAGENET_CATEGORIES) == 282
    with pytest.raises(CnnvisError, match="label 'misc' names no class of"):
        resolve_label("misc", IMAGENET_CATEGORIES, "efficientnet_lite0")
    with pytest.raises(CnnvisError, match="label 1000: class index out of range"):
        resolve_label("1000", IMAGENET_CATEGORIES)
    with pytest.raises(CnnvisError, match="has 10 classes, not ImageNet's"):
        resolve_label("n02123045", [f"class {i}" for i in range(10)])


def test_check_images_gives_one_line_reasons_sizes_and_caches(tmp_path, monkeypatch):
    good = tmp_path / "good.png"
    shutil.copy2(CAT, good)
    broken = tmp_path / "broken.png"
    broken.write_text("not an image")
    truncated = tmp_path / "truncated.jpg"
    data = (REPO / "images" / "rocket.jpg").read_bytes()
    truncated.write_bytes(data[: len(data) // 3])
    nan = tmp_path / "nan.tif"
    Image.fromarray(np.array([[0.5, np.nan]], dtype=np.float32), mode="F").save(nan)
    cache = tmp_path / "cache.json"
    records = {r["name"]: r for r in check_images([good, broken, truncated, nan], cache=cache)}
    assert records["good.png"]["status"] == "ok" and records["good.png"]["size"] == [451, 300]
    assert records["broken.png"]["reason"] == f"cannot read image {broken}: not a recognised image file"
    assert records["truncated.jpg"]["status"] == "failed" and "\n" not in records["truncated.jpg"]["reason"]
    assert records["nan.tif"]["reason"] == f"cannot read image {nan}: it holds NaN or infinite values"
    calls = []
    monkeypatch.setattr(image_list, "check_image", lambda path, decode=True: calls.append(path) or (None, [1, 1]))
    again = check_images([good, broken, truncated, nan], cache=cache)
    assert calls == [] and again == list(records.values())  # unchanged files are not decoded again
    os.utime(good, ns=(time.time_ns(), time.time_ns() + 10**9))
    check_images([good, broken, truncated, nan], cache=cache)
    assert calls == [good]
    assert [entry.name for entry in entries_for([tmp_path / "a" / "x.png", tmp_path / "b" / "x.png"])] == [
        "a/x.png",
        "b/x.png",
    ]


def test_check_images_command_lists_failures_and_skipped_files(tmp_path):
    from cnnvis_tasks.cli import cli

    ds = tmp_path / "ds"
    write(ds / "good.png")
    (ds / "broken.png").write_text("not an image")
    os.mkfifo(ds / "pipe.png")
    result = CliRunner().invoke(cli, ["check-images", "--folder", str(ds), "--out", str(tmp_path / "s.json")])
    assert result.exit_code == 1
    assert f"bad image broken.png: cannot read image {ds / 'broken.png'}: not a recognised image file" in result.output
    assert f"skipped {ds / 'pipe.png'}: a named pipe (FIFO), not a file" in result.output
    status = {entry["name"]: entry for entry in json.loads((tmp_path / "s.json").read_text())["images"]}
    assert status["good.png"]["status"] == "ok" and status["broken.png"]["status"] == "failed"
    assert status[str(ds / "pipe.png")]["status"] == "skipped"
    result = CliRunner().invoke(cli, ["check-images", "--folder", str(REPO / "images"), "--no-fail"])
    assert result.exit_code == 0 and "4 of 4 images ok" in result.output
