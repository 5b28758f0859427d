"""The HTML gallery: layout from records, the gallery command, and the page in a real browser."""

from __future__ import annotations

import importlib.util
import json
import os
import re
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from click.testing import CliRunner

from cnnvis_tasks.cli import cli
from cnnvis_tasks.gallery import SECTIONS, build_gallery, caption
from cnnvis_tasks.io.outputs import save_png
from cnnvis_tasks.techniques import all_techniques

REPO = Path(__file__).resolve().parent.parent
ODD_NAME = "odd #1 %20 \u00fc.png"  # '#', '%' and a space would break a link that is only HTML-escaped
ARTIFACTS = Path(os.environ.get("CNNVIS_TEST_ARTIFACTS", REPO / "results" / "test-artifacts"))


def load_checker():
    """scripts/check_gallery.py, the headless-Chromium page check."""
    spec = importlib.util.spec_from_file_location("check_gallery", REPO / "scripts" / "check_gallery.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def record(section, table="m", row="r", column="c", **extra):
    base = {
        "section": section,
        "table": table,
        "row": row,
        "row_label": row,
        "column": column,
        "column_label": [table, column],
        "src": f"{table}/{section}/{row}/{column}.png",
        "status": "ok",
        "metadata": {},
    }
    return base | extra


def test_sections_follow_the_seed_order_whatever_the_record_order():
    keys = [key for key, _, _ in SECTIONS]
    assert keys[:8] == [  # the seed gallery's sections come first, in its order; then the others
        "feature-maps",
        "kernels",
        "saliency",
        "class-viz",
        "filter-viz",
        "deep-dream",
        "deep-dream-octaves",
        "grad-cam",
    ]
    page = build_gallery([record(key) for key in reversed(keys)])["index.html"]
    positions = [page.index(f'<h2 id="{key}">') for key in keys]
    assert positions == sorted(positions)


def test_sections_are_the_techniques_with_their_text_and_reference():
    assert tuple((t.name, t.title, t.description) for t in all_techniques()) == SECTIONS
    grad_cam = next(t for t in all_techniques() if t.name == "grad-cam")
    page = build_gallery([record("grad-cam"), record("kernels")])["index.html"]
    assert f"after {grad_cam.reference}".replace("'", "&#39;") in page
    assert grad_cam.description.replace("'", "&#39;") in page
    assert '<a href="#grad-cam">Grad-CAM</a>' in page


def test_captions_show_the_recorded_figures():
    saliency = record("saliency", metadata={"target": {"index": 285, "name": "Egyptian cat"}, "probability": 0.9876})
    assert caption(saliency) == ["Egyptian cat (285)", "p = 0.988"]
    cam = record(
        "grad-cam", metadata={"layer": "features.35", "target": {"index": 1, "name": "goldfish"}, "probability": 0.5}
    )
    assert caption(cam)[0] == "layer features.35"
    dream = record("deep-dream", metadata={"objective_start": 1.5, "objective_end": 12.25})
    assert caption(dream) == ["objective 1.5 \u2192 12.2"]
    page = build_gallery([saliency, cam, dream])["index.html"]
    for text in ("Egyptian cat (285)", "p = 0.988", "layer features.35", "objective 1.5"):
        assert text in page


def test_technique_caption_lines_go_before_or_after_the_standard_ones():
    target = {"target": {"index": 1, "name": "goldfish"}, "probability": 0.5}
    cam = record("grad-cam", metadata={"layer": "features.35"} | target)
    assert caption(cam) == ["layer features.35", "goldfish (1)", "p = 0.500"]  # caption_first
    kernels = record("kernels", metadata={"parameter": "conv.weight", "shape": [64, 3, 7, 7]} | target)
    assert caption(kernels) == ["goldfish (1)", "p = 0.500", "conv.weight (64 x 3 x 7 x 7)"]
    eigen = record("eigen-cam", metadata={"layer": "features.35"})
    assert caption(eigen) == ["layer features.35", "class-agnostic: no target class"]  # not a silent gap
    maps = record("feature-maps", metadata={"shape": [32, 8, 8], "channels_shown": 16})
    assert caption(maps) == ["16 of 32 channels"]
    classes = record(
        "class-viz",
        metadata={
            "target": {"index": 52, "name": "thunder snake"},
            "probability": 0.25,
            "objective_start": 1.0,
            "objective_end": 9.0,
        },
    )
    assert caption(classes) == ["p = 0.250", "objective 1 \u2192 9"]  # its rows name the class
    assert caption(record("saliency", metadata={"layer": "x", "parameter": "y", "shape": [3]})) == []


def test_a_failed_image_is_a_row_with_its_reason():
    records = [
        record("saliency", row="cat", row_image="../images/cat.png"),
        {
            "section": "saliency",
            "table": "m",
            "row": "broken",
            "row_label": "broken",
            "status": "failed",
            "reason": "cannot read image images/broken.png: not a recognised image file",
        },
    ]
    images = [
        {"name": "cat", "status": "ok"},
        {
            "name": "broken",
            "status": "failed",
            "reason": "cannot read image images/broken.png: not a recognised image file",
            "log": "logs/check-images/broken.log",
        },
    ]
    page = build_gallery(records, images=images)["index.html"]
    assert "failed: cannot read image images/broken.png: not a recognised image file" in page
    assert 'href="logs/check-images/broken.log"' in page
    assert "2 input images, 1 usable, 1 failed" in page


def test_long_tables_are_paginated_and_the_index_stays_light():
    records = [
        record("saliency", row=f"image{i:04d}", row_image=f"../images/image{i:04d}.png", column=column)
        for i in range(2500)
        for column in ("vanilla-color", "vanilla-gray")
    ]
    files = build_gallery(records, preview_rows=10, rows_per_page=100)
    index = files["index.html"]
    assert index.count("<img ") == 10 * 3  # 10 rows: the original and two variants
    pages = sorted(name for name in files if name.startswith("gallery/"))
    assert len(pages) == 25
    assert 'href="gallery/saliency--m--25.html"' in index
    last = files["gallery/saliency--m--25.html"]
    assert "image2499" in last and 'src="../m/saliency/image2499/vanilla-gray.png"' in last
    assert 'href="../index.html#saliency--m"' in last
    assert len(index) < 50_000


def test_links_are_relative_and_text_is_escaped():
    evil = record("kernels", table="<script>alert(1)</script>", row="r", column='"c"')
    page = build_gallery([evil], title="a & b")["index.html"]
    assert "<script>alert" not in page
    assert "a &amp; b" in page
    for link in re.findall(r'(?:src|href)="([^"]*)"', page):
        assert not re.match(r"^[a-z]+://", link) and not link.startswith("/"), link
    assert "<script" not in page.lower()


def test_links_are_url_encoded_and_load_any_file_name():
    files = build_gallery(
        [
            record("saliency", row="r 1", row_image="../images/caf\u00e9 1.png", src=f"m/{ODD_NAME}"),
            record("saliency", row="r2", src='m/a"b<c>.png'),
        ],
        images=[{"name": "x y", "status": "failed", "reason": "bad", "log": "logs/x y#1.log"}],
        preview_rows=1,
        rows_per_page=1,
    )
    index, page = files["index.html"], files["gallery/saliency--m--1.html"]
    assert 'src="m/odd%20%231%20%2520%20%C3%BC.png"' in index
    assert 'src="../images/caf%C3%A9%201.png"' in index and 'href="logs/x%20y%231.log"' in index
    assert 'src="../m/odd%20%231%20%2520%20%C3%BC.png"' in page
    assert 'src="../m/a%22b%3Cc%3E.png"' in files["gallery/saliency--m--2.html"]
    links = [unquote(link) for text in files.values() for link in re.findall(r'(?:src|href)="([^"]*)"', text)]
    assert f"m/{ODD_NAME}" in links and f"../m/{ODD_NAME}" in links and "logs/x y#1.log" in links
    assert '../m/a"b<c>.png' in links


def test_unknown_section_is_refused():
    with pytest.raises(ValueError, match="unknown gallery section"):
        build_gallery([record("heatmaps")])


def make_results(root: Path) -> tuple[Path, Path, dict]:
    """A small results folder: pictures with metadata, an image list with one failure."""
    images = root / "images"
    images.mkdir(parents=True)
    cat = np.zeros((40, 60, 3), np.uint8)
    cat[..., 0] = 200
    save_png(images / "cat.png", cat)
    (images / "broken.png").write_text("not an image")
    results = root / "results"
    picture = (np.random.default_rng(0).random((32, 48, 3)) * 255).astype(np.uint8)
    save_png(
        results / "m/saliency/cat/vanilla-color.png",
        picture,
        {"technique": "saliency", "target": {"index": 281, "name": "tabby"}, "probability": 0.75},
    )
    save_png(
        results / "m/grad-cam/cat/auto-overlay.png",
        picture,
        {"technique": "grad-cam", "layer": "_swish", "target": {"index": 281, "name": "tabby"}, "probability": 0.75},
    )
    save_png(
        results / "m/class-viz/class52-none.png",
        picture,
        {
            "technique": "class-viz",
            "target": {"index": 52, "name": "thunder snake"},
            "objective_start": 1.0,
            "objective_end": 9.0,
        },
    )
    save_png(results / "m/kernels" / ODD_NAME, picture, {"technique": "kernels", "parameter": "conv.weight"})
    status = results / "images.json"
    status.write_text(
        json.dumps(
            {
                "images": [
                    {
                        "name": "broken",
                        "path": str(images / "broken.png"),
                        "status": "failed",
                        "reason": f"cannot read image {images / 'broken.png'}: not a recognised image file",
                    },
                    {"name": "cat", "path": str(images / "cat.png"), "status": "ok", "reason": None},
                ]
            }
        )
    )
    spec = {
        "tables": [
            {
                "section": "kernels",
                "table": "m",
                "per_image": False,
                "rows": [
                    {
                        "key": "stem",
                        "label": "conv.weight",
                        "cells": [{"key": "odd", "label": ["m", "odd name"], "path": f"m/kernels/{ODD_NAME}"}],
                    }
                ],
            },
            {
                "section": "grad-cam",
                "table": "m",
                "per_image": True,
                "columns": [
                    {
                        "key": "auto-overlay",
                        "label": ["m", "layer auto", "overlay"],
                        "path": "m/grad-cam/{image}/auto-overlay.png",
                    }
                ],
            },
            {
                "section": "saliency",
                "table": "m",
                "per_image": True,
                "columns": [
                    {
                        "key": "vanilla-color",
                        "label": ["m", "vanilla", "color"],
                        "path": "m/saliency/{image}/vanilla-color.png",
                    },
                    {
                        "key": "guided-color",
                        "label": ["m", "guided", "color"],
                        "path": "m/saliency/{image}/guided-color.png",
                    },
                ],
            },
            {
                "section": "class-viz",
                "table": "m",
                "per_image": False,
                "rows": [
                    {
                        "key": "52",
                        "label": "class 52",
                        "cells": [
                            {"key": "none", "label": ["m", "no regularization"], "path": "m/class-viz/class52-none.png"}
                        ],
                    }
                ],
            },
        ]
    }
    return results, status, spec


def run_gallery(results: Path, status: Path, spec: dict, *extra: str) -> Path:
    out = results / "index.html"
    result = CliRunner().invoke(
        cli,
        [
            "gallery",
            "--spec",
            json.dumps(spec),
            "--images",
            str(status),
            "--out",
            str(out),
            "--log-template",
            "logs/check-images/{image}.log",
            *extra,
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    return out


def test_gallery_command_reads_metadata_and_marks_missing_and_failed(tmp_path):
    results, status, spec = make_results(tmp_path)
    page = run_gallery(results, status, spec).read_text()
    assert page.index('id="saliency"') < page.index('id="class-viz"') < page.index('id="grad-cam"')
    assert "tabby (281)" in page and "p = 0.750" in page and "layer _swish" in page
    assert "thunder snake (52)" in page  # the row label of class-viz comes from the picture's metadata
    assert "not built" in page  # guided-color was never written
    assert "failed: cannot read image" in page
    assert 'src="../images/cat.png"' in page
    assert 'src="m/kernels/odd%20%231%20%2520%20%C3%BC.png"' in page
    for link in re.findall(r'<img src="([^"]*)"', page):
        assert (results / unquote(link)).is_file(), link
    assert (results / "gallery").is_dir()
    # each image's row leads to its page under the table's model (ids: the images in name order),
    # the failed image's too, where its page says why
    assert '<a href="gallery/image.html?model=m&amp;id=1"><img src="../images/cat.png"' in page
    assert '<th><a href="gallery/image.html?model=m&amp;id=0">broken</a></th>' in page
    assert (results / "images.html").is_file() and (results / "views.html").is_file()
    assert (results / "gallery" / "data" / "m" / "rows" / "0" / "1.js").is_file()


@pytest.fixture(scope="module")
def checker():
    module = load_checker()
    if module.find_browser() is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium); the page check needs a real browser")
    return module


def test_gallery_opens_in_headless_chromium(tmp_path, checker):
    results, status, spec = make_results(tmp_path)
    # a paginated table too: 30 more images, 25 rows per page
    images = json.loads(status.read_text())["images"]
    picture = np.full((20, 20, 3), 128, np.uint8)
    for i in range(30):
        name = f"extra{i:02d}"
        save_png(tmp_path / "images" / f"{name}.png", picture)
        save_png(results / f"m/saliency/{name}/vanilla-color.png", picture, {"technique": "saliency"})
        save_png(results / f"m/saliency/{name}/guided-color.png", picture, {"technique": "saliency"})
        save_png(results / f"m/grad-cam/{name}/auto-overlay.png", picture, {"technique": "grad-cam"})
        images.append({"name": name, "path": str(tmp_path / "images" / f"{name}.png"), "status": "ok", "reason": None})
    save_png(results / "m/saliency/cat/guided-color.png", picture, {"technique": "saliency"})
    status.write_text(json.dumps({"images": images}))
    page = run_gallery(results, status, spec, "--preview-rows", "25", "--rows-per-page", "25")
    screenshot = ARTIFACTS / "gallery-chromium.png"
    result = checker.check_page(page, screenshot=screenshot)
    assert result["title"] == "cnnvis gallery"
    assert len(result["images"]) > 50
    assert [image["src"] for image in result["images"] if not image["naturalWidth"]] == []
    assert result["errors"] == []
    assert screenshot.stat().st_size > 10_000
    subpage = results / "gallery" / "saliency--m--2.html"
    assert '<a href="../gallery/image.html?model=m&amp;id=' in subpage.read_text()  # from gallery/: one folder up
    sub = checker.check_page(subpage, screenshot=ARTIFACTS / "gallery-chromium-page2.png")
    assert sub["images"] and all(image["naturalWidth"] > 0 for image in sub["images"]), sub["images"]
    assert sub["errors"] == []


def test_the_page_check_sees_a_broken_image(tmp_path, checker):
    page = tmp_path / "broken.html"
    page.write_text(
        '<!DOCTYPE html><html><head><title>t</title><link rel="icon" href="data:,"></head>'
        '<body><img src="missing.png"></body></html>'
    )
    result = checker.check_page(page)
    assert result["images"][0]["naturalWidth"] == 0
    assert any("missing.png" in error or "ERR_FILE_NOT_FOUND" in error for error in result["errors"]), result["errors"]


def test_a_large_data_set_shows_an_even_sample_and_opens_only_its_pictures(tmp_path, monkeypatch):
    """--max-images: the per-image tables hold that many images spread over every class,
    the page says so, every failure is still listed, and only the shown images'
    pictures are read."""
    from cnnvis_tasks.cli import gallery as gallery_cli
    from cnnvis_tasks.gallery import sample_images

    names = [f"class{k // 10}/img{k % 10}.png" for k in range(40)]
    statuses = [{"name": name, "path": str(tmp_path / name), "status": "ok", "reason": None} for name in names]
    statuses[3] = statuses[3] | {"status": "failed", "reason": "cannot read image: truncated"}
    statuses.append({"name": "notes.txt", "path": str(tmp_path / "notes.txt"), "status": "skipped", "reason": "x"})
    picked = sample_images(statuses, 8)
    assert [image["name"] for image in picked] == [names[k] for k in range(0, 40, 5)]
    assert sample_images(statuses, 0) == statuses[:40] and sample_images(statuses, 100) == statuses[:40]
    status = tmp_path / "images.json"
    status.write_text(json.dumps({"images": statuses}))
    spec = {
        "tables": [
            {
                "section": "grad-cam",
                "table": "m",
                "per_image": True,
                "columns": [{"key": "overlay", "label": ["m", "overlay"], "path": "m/grad-cam/{image}/overlay.png"}],
            }
        ]
    }
    opened = []
    real = gallery_cli._metadata
    monkeypatch.setattr(gallery_cli, "_metadata", lambda root, src: opened.append(src) or real(root, src))
    results = tmp_path / "results"
    page = run_gallery(results, status, spec, "--max-images", "8", "--preview-rows", "50").read_text()
    assert len(opened) == 8 and {src.split("/")[2] for src in opened} == {"class0", "class1", "class2", "class3"}
    rows = re.findall(r"<figcaption>(?:<a [^>]*>)?([^<]+)(?:</a>)?</figcaption></figure></th>", page)
    assert rows == [names[k] for k in range(0, 40, 5)]
    assert "show 8 of the 40 images" in page
    assert "class0/img3.png" in page and "truncated" in page  # a failure not in the sample is still listed
    opened.clear()
    run_gallery(results, status, spec, "--preview-rows", "50")  # the command's default: every image
    assert len(opened) == 39  # the failed image has no picture to open


def test_the_index_and_an_image_page_written_by_the_command_open_without_errors(tmp_path, checker):
    # the real writer with the real scripts (the browser tests of tests/test_gallery_browser.py use
    # hand-made data files): nothing the pages expect is missing from what the command writes
    results, status, spec = make_results(tmp_path)
    save_png(results / "m/saliency/cat/guided-color.png", np.full((20, 20, 3), 128, np.uint8), {})
    run_gallery(results, status, spec)
    index = checker.check_page(results / "images.html")
    assert index["errors"] == [] and [image["naturalWidth"] > 0 for image in index["images"]] == [True]  # cat
    with checker.ChromiumSession() as browser:
        browser.open((results / "gallery" / "image.html").as_uri() + "?model=m&id=1")
        browser.wait("document.body.dataset.ready === '1'")
        pictures = browser.images()
        # the input and every picture of the spec's per-image tables
        assert len(pictures) == 4 and all(picture["naturalWidth"] > 0 for picture in pictures), pictures
        assert browser.evaluate("document.getElementById('title').textContent").startswith(str(tmp_path / "images"))
        assert browser.errors() == []
