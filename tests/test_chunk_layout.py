"""The chunk layout (``layout: chunks``): a DAG that grows with chunks, not pictures.

Plan, image lists and stale folders are checked in-process; a small data set of
class folders with odd names and a broken file runs through Snakemake (slow).
"""

from __future__ import annotations

import copy
import csv
import io
import os
import re
import shlex
import shutil
import time
import urllib.parse
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from test_workflow import REPO, make_copy, planned, snakemake

from cnnvis_tasks.errors import CnnvisError
from cnnvis_tasks.io.image_list import ImageEntry, check_images, listed_images
from cnnvis_tasks.io.list_file import IMAGE_LIST_FILE_NAME, image_list_text, read_image_list, write_image_list
from cnnvis_tasks.io.outputs import save_npy, save_png
from cnnvis_tasks.workflow import ConfigError, check_config, make_plan
from cnnvis_tasks.workflow.chunks import (
    PNG_END,
    SNAKEMAKE_TIMESTAMP,
    damaged_picture,
    folder_changed,
    stale_records,
    write_image_lists,
)

CONFIG = {
    "images": {"folder": "ds"},
    "layout": "chunks",
    "share_passes": False,
    "chunk_size": 2,
    "device": "cpu",
    "models": {"efficientnet_lite0": {}},
    "techniques": {
        "saliency": {
            "size": 64,
            "methods": ["vanilla", "guided"],
            "renderings": ["gray"],
            "target": "label",
            "models": {"efficientnet_lite0": {}},
        },
        "grad_cam": {"size": 64, "renderings": ["overlay"], "raw": True, "models": {"efficientnet_lite0": {}}},
        "class_viz": {"classes": [1], "steps": 2, "width": 32, "height": 32, "models": {"efficientnet_lite0": {}}},
    },
}


def statuses(count: int) -> list[dict]:
    return [
        {
            "name": f"class{i % 3}/img {i}.png",
            "path": f"ds/class{i % 3}/img {i}.png",
            "label": f"class{i % 3}",
            "status": "ok",
            "reason": None,
            "size": [64, 64],
            "fingerprint": [100 + i, 10**18 + i],
        }
        for i in range(count)
    ]


def chunk_plan(config=CONFIG, count=40, chunks=4):
    config = copy.deepcopy(config) | {"chunk_count": chunks}
    check_config(config, check_model_names=False)
    return make_plan(config, statuses(count), exists=None)


def test_the_chunk_layout_has_one_rule_per_technique_model_and_setting_not_per_job():
    plan = chunk_plan()
    assert len(plan.chunks) == 4 and plan.chunk_count == 4
    per_image = [rule for rule in plan.chunk_rules if rule.technique != "predictions"]
    assert sorted(rule.rule for rule in per_image) == [
        "grad_cam_efficientnet_lite0_auto",
        "saliency_efficientnet_lite0_guided",
        "saliency_efficientnet_lite0_vanilla",
    ]
    assert [rule.rule for rule in plan.chunk_rules if rule.technique == "predictions"] == [
        "predictions_efficientnet_lite0"
    ]
    # no per-image job; class-viz (no images) keeps its one job
    assert {job.technique for job in plan.jobs} == {"class-viz"} and len(plan.jobs) == 3  # one per regularization
    vanilla = next(rule for rule in per_image if rule.setting == "vanilla")
    assert vanilla.chunks == tuple(plan.chunks)
    list_file, model_file = vanilla.inputs
    assert list_file == "results/chunk-lists/{chunk}.csv"
    assert re.fullmatch(r"results/models/efficientnet_lite0-[0-9a-f]{12}\.json", model_file)
    assert vanilla.record == "results/records/efficientnet_lite0/saliency/vanilla/{chunk}.json"
    assert vanilla.folder == "results/chunks/efficientnet_lite0/saliency/vanilla/{chunk}"
    command = shlex.split(vanilla.command)
    assert command[0] == "saliency" and "--image" not in command
    for flag, value in (
        ("--image-list", "results/chunk-lists/{chunk}.csv"),
        ("--out-dir", "results/chunks/efficientnet_lite0/saliency/vanilla/{chunk}"),
        ("--target", "label"),
        ("--rendering", "gray"),
        ("--method", "vanilla"),
    ):
        assert command[command.index(flag) + 1] == value
    assert "{" not in vanilla.command.replace("{chunk}", "")  # Snakemake formats it with the wildcard alone
    grad_cam = shlex.split(next(rule for rule in per_image if rule.technique == "grad-cam").command)
    assert [grad_cam[i + 1] for i, a in enumerate(grad_cam) if a == "--rendering"] == ["overlay", "raw"]
    # summary and gallery: every chunk's record, pictures found through {chunk}
    assert len(plan.records) == 4 * 4 + 3  # 3 rules and the predictions over 4 chunks; class-viz's records
    table = next(t for t in plan.gallery_tables if t["section"] == "grad-cam")
    assert table["columns"][0]["path"] == "chunks/efficientnet_lite0/grad-cam/auto/{chunk}/{image}.overlay.png"
    assert plan.spec["layout"] == "chunks" and plan.spec["chunk_count"] == 4
    assert plan.image_check_inputs == list(plan.image_lists.values())
    assert plan.image_check_mode == "--header-only"


def test_settings_that_can_share_a_pass_become_one_shared_pass_rule_per_model():
    config = copy.deepcopy(CONFIG) | {"share_passes": True}
    config["techniques"]["feature_maps"] = {"size": 64, "models": {"efficientnet_lite0": {"layers": ["_blocks.4"]}}}
    plan = chunk_plan(config)
    rules = {rule.rule: rule for rule in plan.chunk_rules}
    # guided saliency changes the backward: it keeps its rule; the rest share one
    assert sorted(rules) == [
        "predictions_efficientnet_lite0",
        "saliency_efficientnet_lite0_guided",
        "shared_pass_efficientnet_lite0",
    ]
    shared = rules["shared_pass_efficientnet_lite0"]
    assert [(p.technique, p.setting) for p in shared.members] == [
        ("feature-maps", "_blocks.4"),
        ("saliency", "vanilla"),
        ("grad-cam", "auto"),
    ]
    command = shlex.split(shared.command)
    model_file = shared.members[0].arguments[2]  # the shared job loads the model as its members would
    assert command[:7] == [
        "shared-pass",
        "--model-file",
        model_file,
        "--seed",
        "0",
        "--image-list",
        "results/chunk-lists/{chunk}.csv",
    ]
    jobs = [shlex.split(command[i + 1]) for i, word in enumerate(command) if word == "--job"]
    assert [job[0] for job in jobs] == ["feature-maps", "saliency", "grad-cam"]
    saliency = jobs[1]
    assert saliency[saliency.index("--out-dir") + 1] == "results/chunks/efficientnet_lite0/saliency/vanilla/{chunk}"
    assert saliency[saliency.index("--batch-size") + 1] == "16" and "--image-list" not in saliency
    assert shared.output_paths == [p.record for p in shared.members]
    assert shared.folders == [p.folder for p in shared.members]
    assert shared.log == "results/logs/efficientnet_lite0/shared-pass/{chunk}.log"
    # the summary and the gallery still see each technique's records
    assert len(plan.records) == 4 * (3 + 1 + 1) + 3
    assert {(s["technique"], s["setting"]) for s in plan.spec["settings"]} == {
        ("feature-maps", "_blocks.4"),
        ("saliency", "vanilla"),
        ("saliency", "guided"),
        ("grad-cam", "auto"),
        ("class-viz", "none"),
        ("class-viz", "l1"),
        ("class-viz", "l2"),
    } - {("class-viz", "none"), ("class-viz", "l1"), ("class-viz", "l2")}
    # a different size decodes other batches: no sharing across it
    config["techniques"]["grad_cam"]["size"] = 96
    names = sorted(rule.rule for rule in chunk_plan(config).chunk_rules)
    assert "grad_cam_efficientnet_lite0_auto" in names and "shared_pass_efficientnet_lite0" in names


def test_the_chunk_layouts_rules_do_not_grow_with_images():
    small, large = chunk_plan(count=8, chunks=None), chunk_plan(count=4000, chunks=None)
    assert len(small.chunk_rules) == len(large.chunk_rules) == 4
    assert large.chunk_count == 2048 and 1500 < len(large.chunks) <= 2048  # only chunks with images have jobs
    assert len(large.records) == 4 * len(large.chunks) + 3


def test_a_brace_in_a_chunk_layout_command_is_refused_by_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("w{1}.pth").write_bytes(b"")
    config = copy.deepcopy(CONFIG)
    config["models"]["efficientnet_lite0"]["weights"] = "w{1}.pth"
    with pytest.raises(ConfigError, match=r"'w\{1\}.pth' holds a brace"):
        chunk_plan(config)


def test_image_lists_round_trip_odd_names_and_are_written_only_when_they_change(tmp_path):
    records = [
        {"name": 'a,b/"q" \u00fc.png', "path": 'ds/a,b/"q" \u00fc.png', "label": "a,b", "fingerprint": [3, 4]},
        {"name": "x.png", "path": "ds/new\nline.png", "label": None, "fingerprint": [5, 6]},
    ]
    path = tmp_path / "lists" / "chunk000of001.csv"
    assert write_image_list(path, records) is True
    entries = read_image_list(path)
    assert [(e.name, str(e.path), e.label) for e in entries] == [
        ('a,b/"q" \u00fc.png', 'ds/a,b/"q" \u00fc.png', "a,b"),
        ("x.png", "ds/new\nline.png", None),
    ]
    before = path.stat().st_mtime_ns
    os.utime(path, ns=(before - 10**9, before - 10**9))
    assert write_image_list(path, records) is False and path.stat().st_mtime_ns == before - 10**9
    records[1] = records[1] | {"fingerprint": [5, 7]}  # the image changed: its time
    assert write_image_list(path, records) is True and path.read_text() == image_list_text(records)


def test_write_image_lists_rewrites_only_the_chunk_of_a_changed_image(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    plan = chunk_plan()
    assert len(write_image_lists(plan)) == 4
    assert write_image_lists(plan) == []
    name = plan.chunks["chunk001of004"][0]
    plan.fingerprints[name] = [1, 2]
    assert write_image_lists(plan) == ["results/chunk-lists/chunk001of004.csv"]


def finished_chunk(folder: Path, record: Path, past: int) -> None:
    """A job's folder of pictures and raw arrays and its record, as Snakemake leaves them, ``past`` ns ago."""
    for name in ("cat/1.png.gray.png", "cat/2.png.gray.png", "top.png.gray.png"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        save_png(folder / name, np.full((2, 3, 3), 7, dtype=np.uint8), {"image": name}, 1)
        save_npy(folder / name.replace(".gray.png", ".raw.npy"), np.ones((4, 5), dtype=np.float32))
    (folder / SNAKEMAKE_TIMESTAMP).write_bytes(b"")
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text("{}")
    when = time.time_ns() - past
    for path in [folder / "cat", folder, *folder.rglob("*"), record]:
        os.utime(path, ns=(when, when))


@pytest.mark.parametrize("change", ["none", "delete", "delete_nested", "add", "replace", "remove_folder"])
def test_a_deleted_added_or_replaced_picture_makes_its_chunk_stale(tmp_path, change):
    folder, record = tmp_path / "chunk000of001", tmp_path / "records" / "chunk000of001.json"
    finished_chunk(folder, record, past=10**10)
    if change == "delete":
        (folder / "top.png.gray.png").unlink()
    elif change == "delete_nested":
        (folder / "cat" / "1.png.gray.png").unlink()
    elif change == "add":
        (folder / "cat" / "3.png.gray.png").write_bytes(b"png")
    elif change == "replace":  # as an editor or a copy tool saves: a new file renamed over the old one
        (folder / "cat" / "tmp").write_bytes(b"other")
        os.replace(folder / "cat" / "tmp", folder / "cat" / "2.png.gray.png")
    elif change == "remove_folder":
        shutil.rmtree(folder / "cat")
    assert folder_changed(str(folder), str(record)) is (change != "none")


def test_stale_records_are_those_of_changed_chunks_only(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    plan = chunk_plan()
    vanilla = next(rule for rule in plan.chunk_rules if rule.setting == "vanilla")
    for chunk in plan.chunks:
        (paths,) = vanilla.paths(chunk)
        finished_chunk(Path(paths["folder"]), Path(paths["record"]), past=10**10)
    assert stale_records(plan) == [] and stale_records(plan, verify=True) == []
    (changed,) = vanilla.paths("chunk002of004")
    (Path(changed["folder"]) / "top.png.gray.png").unlink()
    assert stale_records(plan) == [(changed["record"], "pictures of this chunk were deleted or replaced")]
    # overwritten in place: the folder keeps its time; only verify sees it
    (other,) = vanilla.paths("chunk003of004")
    picture = Path(other["folder"]) / "cat" / "1.png.gray.png"
    picture.write_bytes(picture.read_bytes())
    assert stale_records(plan) == [(changed["record"], "pictures of this chunk were deleted or replaced")]
    assert stale_records(plan, verify=True) == [
        (changed["record"], "pictures of this chunk were deleted or replaced"),
        (other["record"], f"{picture} was written after its job finished"),
    ]


@pytest.mark.parametrize(
    "damage", ["none", "cut", "empty", "rewritten", "rewritten_nested", "old_times_cut", "old_times_empty", "npy_cut"]
)
def test_verify_finds_a_picture_overwritten_in_place_or_cut_short(tmp_path, damage):
    folder, record = tmp_path / "chunk000of001", tmp_path / "records" / "chunk000of001.json"
    finished_chunk(folder, record, past=10**10)
    assert damaged_picture(str(folder), str(record)) is None
    picture = folder / ("cat/2.png.gray.png" if damage.endswith("nested") else "top.png.gray.png")
    if damage == "npy_cut":
        picture = folder / "cat" / "1.png.raw.npy"
    whole = picture.read_bytes()
    stat = picture.stat()
    if damage in ("cut", "old_times_cut", "npy_cut"):
        picture.write_bytes(whole[:-5])
    elif damage in ("empty", "old_times_empty"):
        picture.write_bytes(b"")
    elif damage.startswith("rewritten"):
        picture.write_bytes(whole)
    if damage.startswith("old_times") or damage == "npy_cut":  # a copy that kept the times but not the bytes
        os.utime(picture, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert folder_changed(str(folder), str(record)) is False  # the folder itself did not change
    found = damaged_picture(str(folder), str(record))
    if damage == "none":
        assert found is None
    elif damage.startswith("old_times"):
        assert found == f"{picture} is cut short (not a whole PNG)"
    elif damage == "npy_cut":
        assert found == f"{picture} is cut short (not the bytes its array header says)"
    else:
        assert found == f"{picture} was written after its job finished"
    assert whole[-12:] == PNG_END or picture.suffix == ".npy"  # what a whole PNG of our writer ends with


def test_the_header_check_reads_sizes_without_decoding_and_a_decoded_check_is_not_skipped(tmp_path):
    good = tmp_path / "good.png"
    shutil.copy2(REPO / "images" / "chelsea.png", good)
    truncated = tmp_path / "truncated.jpg"
    data = (REPO / "images" / "rocket.jpg").read_bytes()
    truncated.write_bytes(data[: len(data) // 3])
    (tmp_path / "broken.png").write_text("not an image")
    cache = tmp_path / "cache.json"
    header = {r["name"]: r for r in check_images([good, truncated, tmp_path / "broken.png"], cache, decode=False)}
    assert header["good.png"]["size"] == [451, 300] and header["good.png"]["status"] == "ok"
    assert header["truncated.jpg"]["status"] == "ok"  # its header is fine: its job finds the rest
    assert header["broken.png"]["status"] == "failed"
    assert header["good.png"]["fingerprint"] == [good.stat().st_size, good.stat().st_mtime_ns]
    decoded = {r["name"]: r for r in check_images([good, truncated], cache, decode=True)}
    assert decoded["truncated.jpg"]["status"] == "failed"  # a header-only entry does not stand in for decoding


def test_listing_images_opens_none_of_them(tmp_path, monkeypatch):
    good = tmp_path / "cat" / "good.png"
    good.parent.mkdir()
    shutil.copy2(REPO / "images" / "chelsea.png", good)
    (tmp_path / "cat" / "broken.png").write_text("not an image")
    boxed = ImageEntry(good, name="boxed.png", label="cat", columns={"box": (1, 2, 3, 4)})

    def refuse(*args, **kwargs):
        raise AssertionError("an image was opened")

    monkeypatch.setattr("PIL.Image.open", refuse)
    monkeypatch.setattr("builtins.open", refuse)
    records = {r["name"]: r for r in listed_images([good, tmp_path / "cat" / "broken.png", boxed])}
    assert records["good.png"] == {
        "name": "good.png",
        "path": str(good),
        "label": None,
        "status": "ok",
        "reason": None,
        "size": None,
        "fingerprint": [good.stat().st_size, good.stat().st_mtime_ns],
    }
    assert records["broken.png"]["status"] == "ok" and records["broken.png"]["fingerprint"][0] == 12
    assert records["boxed.png"]["box"] == [1, 2, 3, 4] and records["boxed.png"]["label"] == "cat"
    with pytest.raises(CnnvisError, match="share the result name 'good.png'"):
        listed_images([good, ImageEntry(tmp_path / "other.png", name="good.png")])


def test_a_technique_command_reads_an_image_list_with_labels(tmp_path):
    from click.testing import CliRunner

    from cnnvis_tasks.cli import cli

    for name in ("cat/a b.png", "dog/c.png"):
        (tmp_path / "ds" / name).parent.mkdir(parents=True, exist_ok=True)
        Image.open(REPO / "images" / "chelsea.png").convert("RGB").resize((40, 30)).save(tmp_path / "ds" / name)
    records = [
        {"name": "cat/a b.png", "path": str(tmp_path / "ds/cat/a b.png"), "label": "281", "fingerprint": [1, 2]},
        {"name": "dog/c.png", "path": str(tmp_path / "ds/dog/c.png"), "label": None, "fingerprint": [1, 2]},
    ]
    write_image_list(tmp_path / "list.csv", records)
    out = tmp_path / "out"
    arguments = ["saliency", "--model", "efficientnet_lite0", "--weights", "random", "--size", "32"]
    arguments += ["--image-list", str(tmp_path / "list.csv"), "--target", "label", "--out-dir", str(out)]
    arguments += ["--rendering", "gray", "--keep-going", "--placeholders", "--record", str(tmp_path / "r.json")]
    result = CliRunner().invoke(cli, [*arguments, "--device", "cpu", "--threads", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    assert IMAGE_LIST_FILE_NAME == "{name}.{rendering}.{ext}"
    from cnnvis_tasks.io.outputs import read_metadata

    assert read_metadata(out / "cat" / "a b.png.gray.png")["target"] == {"index": 281, "name": "tabby"}
    unlabelled = read_metadata(out / "dog" / "c.png.gray.png")
    assert unlabelled["status"] == "failed" and "no label" in unlabelled["reason"]


# --- through Snakemake ----------------------------------------------------------------


def odd_data_set(root: Path) -> None:
    for name, source in (
        ("n02123045/001.png", "chelsea.png"),
        ("n02123045/brace{x} #1 %20.png", "chelsea.png"),
        ("espresso/001.png", "coffee.png"),
        ("espresso/001.jpg", "coffee.png"),
    ):
        (root / "ds" / name).parent.mkdir(parents=True, exist_ok=True)
        Image.open(REPO / "images" / source).convert("RGB").save(root / "ds" / name)
    (root / "ds" / "espresso" / "broken.png").write_text("not an image")


def test_a_chunk_layout_dry_run_declares_one_wildcard_rule_per_setting(tmp_path):
    workdir = make_copy(tmp_path / "wf", images=(), config=CONFIG)
    odd_data_set(workdir)
    jobs = planned(workdir, by_rule=True)
    lists = sorted((workdir / "results" / "chunk-lists").glob("chunk*.csv"))
    # the start opens no image: the broken file is in a chunk, whose jobs fail it alone
    assert len(lists) >= 2 and sum(len(read_image_list(path)) for path in lists) == 5
    for rule in ("saliency_efficientnet_lite0_vanilla", "grad_cam_efficientnet_lite0_auto"):
        assert jobs[rule] == len(lists)  # one job per chunk of a rule
    assert jobs["predictions_efficientnet_lite0"] == len(lists)
    # strict_images: the start reads the headers, and the broken file stops the run
    config = CONFIG | {"strict_images": True}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    result = snakemake(workdir, "--dry-run", expect=1)
    text = result.stdout + result.stderr
    assert "strict_images: 1 image cannot be used: espresso/broken.png: cannot read image" in text


@pytest.mark.slow
def test_a_chunk_layout_run_builds_the_gallery_and_reruns_exactly_the_changed_chunks(tmp_path):
    config = copy.deepcopy(CONFIG) | {"share_passes": True}
    del config["techniques"]["class_viz"]
    config["techniques"]["saliency"]["methods"] = ["vanilla"]
    workdir = make_copy(tmp_path / "wf", images=(), config=config)
    odd_data_set(workdir)
    snakemake(workdir)
    results = workdir / "results"
    page = (results / "index.html").read_text()
    sources = [urllib.parse.unquote(src) for src in __import__("re").findall(r'src="([^"]+)"', page)]
    pictures = [src for src in sources if src.startswith("chunks/")]
    assert len(pictures) == 8 and all((results / src).is_file() for src in pictures)  # 4 images x 2 techniques
    summary = {row["name"]: row for row in csv.DictReader(io.StringIO((results / "summary.csv").read_text()))}
    assert summary["espresso/001.png"]["efficientnet_lite0 saliency vanilla status"] == "ok"
    assert summary["espresso/broken.png"]["status"] == "failed"
    assert planned(workdir) == {}
    # a deleted picture: its chunk's job of that technique runs again, nothing else
    picture = next(results.glob("chunks/efficientnet_lite0/grad-cam/auto/*/espresso/001.png.overlay.png"))
    chunk = picture.parent.parent.name
    picture.unlink()
    assert planned(workdir, by_rule=True) == {"shared_pass_efficientnet_lite0": 1, **AFTER}
    snakemake(workdir)
    assert picture.is_file() and planned(workdir) == {}
    # a picture cut short in place: seen with verify_pictures only
    picture.write_bytes(picture.read_bytes()[:-20])
    assert planned(workdir) == {}
    result = snakemake(workdir, "--dry-run", "--config", "verify_pictures=True")
    assert f"{picture.relative_to(workdir)} was written after its job finished" in result.stderr
    assert planned(workdir, by_rule=True) == {"shared_pass_efficientnet_lite0": 1, **AFTER}
    snakemake(workdir)
    assert picture.read_bytes().endswith(PNG_END) and planned(workdir) == {}
    # a changed image: every job of its chunk
    image = workdir / "ds" / "espresso" / "001.png"
    os.utime(image, ns=(time.time_ns(), time.time_ns()))
    jobs = planned(workdir, by_rule=True)
    assert jobs == {
        "shared_pass_efficientnet_lite0": 1,
        "predictions_efficientnet_lite0": 1,
        "image_status": 1,
        **AFTER,
    }
    assert chunk in (results / "chunk-lists").joinpath(f"{chunk}.csv").name
    # a changed setting: that technique's jobs alone
    snakemake(workdir)
    config["techniques"]["grad_cam"]["alpha"] = 0.3
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    chunks = len(list((results / "chunk-lists").glob("chunk*.csv")))
    assert chunks == 3 and planned(workdir, by_rule=True) == {"shared_pass_efficientnet_lite0": chunks, **AFTER}

    # the same pictures as one job per technique: byte for byte
    def pictures() -> dict:
        return {p.relative_to(results): p.read_bytes() for p in results.glob("chunks/**/*.*") if p.suffix != ""}

    shared = pictures()
    config["techniques"]["grad_cam"].pop("alpha")
    (workdir / "config.yaml").write_text(yaml.safe_dump(config | {"share_passes": False}, sort_keys=False))
    shutil.rmtree(results / "chunks")
    snakemake(workdir)
    separate = pictures()
    # 5 images x (saliency, grad-cam overlay and raw); the broken file's are placeholders that say why
    assert len(separate) == 15 and separate == shared
    from cnnvis_tasks.io.outputs import read_metadata

    placeholder = next(results.glob("chunks/efficientnet_lite0/grad-cam/auto/*/espresso/broken.png.overlay.png"))
    facts = read_metadata(placeholder)
    assert facts["status"] == "failed" and "not a recognised image file" in facts["reason"]


AFTER = {"summary": 1, "class_summary": 1, "gallery": 1, "all": 1}
