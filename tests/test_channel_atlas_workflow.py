"""The channel atlas end to end, in both layouts: a real run over class folders with a
planted pattern (odd names, a broken file) and a hand-built model whose channel detects
it; the reduce against one scan of everything; new images re-scan only their chunks; the
atlas pages in headless Chromium."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote, urlencode

import planted
import pytest
import yaml
from browser import Browser, find_browser
from click.testing import CliRunner
from test_workflow import make_copy, planned, snakemake

from cnnvis_tasks.cli import cli
from cnnvis_tasks.mechanisms.top_examples import merge_files

pytestmark = pytest.mark.slow

TOP = 4


def config(root: Path, layout: str) -> dict:
    return {
        "images": {"folder": "data"},
        "results": "results",
        "chunk_size": 5,  # 16 images, then 18: four chunks both times
        "layout": layout,
        "models": {"planted": planted.model_config(root)},
        "techniques": {
            "channel_examples": {
                "size": planted.SIDE,
                "top": TOP,
                "bottom": 1,
                "models": {"planted": {"layers": [planted.LAYER]}},
            },
        },
    }


def atlas_of(results: Path) -> dict:
    return json.loads((results / "planted" / "channel-examples" / planted.LAYER / "atlas.json").read_text())


def one_scan(root: Path, images: list[str], out: Path, monkeypatch) -> None:
    """``channel-examples`` over every image in one process, as a user would run it."""
    monkeypatch.chdir(root)
    monkeypatch.syspath_prepend(str(root))
    model = planted.model_config(root)
    (root / "classes.txt").write_text("\n".join(model["classes"]) + "\n")
    args = ["channel-examples", "--model", model["arch"], "--weights", model["weights"]]
    args += ["--classes", "classes.txt", "--mean", "0,0,0", "--std", "1,1,1", "--quiet", "--keep-going"]
    args += ["--layer", planted.LAYER, "--top", str(TOP), "--bottom", "1", "--size", str(planted.SIDE)]
    args += [word for image in images for word in ("--image", image)] + ["--out", str(out)]
    outcome = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert outcome.exit_code == 0, outcome.output


@pytest.mark.parametrize("layout", ["pictures", "chunks"])
def test_the_atlas_of_a_planted_pattern_in_both_layouts(tmp_path, layout, monkeypatch):
    root = make_copy(tmp_path / "run", images=())
    squares = planted.make_images(root / "data", per_class=8)
    (root / "data" / "plain" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    (root / "config.yaml").write_text(yaml.safe_dump(config(root, layout), sort_keys=False))
    snakemake(root)
    results = root / "results"
    atlas = atlas_of(results)
    assert atlas["scanned"] == 16 and atlas["receptive_field"] == planted.RECEPTIVE_FIELD
    names = [image["name"] for image in atlas["images"]]
    detector = atlas["channels"][planted.DETECTOR]
    for entry in detector["top"]:
        name = names[entry["image"]]
        x0, y0, x1, y1 = entry["box"]
        sx0, sy0, sx1, sy1 = squares[name]
        assert x0 <= sx0 and y0 <= sy0 and x1 >= sx1 and y1 >= sy1, (name, entry["box"])
    assert detector["selectivity"] == {"label": "red", "share": 1.0, "count": TOP, "labelled": TOP}
    assert [c["name"] for c in detector["classes"]["up"]] == ["red"]

    # the reduce of the chunks equals one scan of every image
    everything = sorted(str(p) for p in (root / "data").rglob("*.png"))
    one_scan(root, everything, tmp_path / "whole.npz", monkeypatch)
    whole = merge_files([tmp_path / "whole.npz"])
    paths = [Path(image["path"]).resolve() for image in atlas["images"]]
    for channel, listed in enumerate(atlas["channels"]):
        for direction in ("top", "bottom"):
            ours = [(str(paths[e["image"]]), e["box"]) for e in listed[direction]]
            theirs = [(str(Path(e["image"]).resolve()), e["box"]) for e in whole.entries(direction, channel)]
            assert ours == theirs, (channel, direction)

    # two new images: their chunks' scans and the reduce run again, no other scan
    added = planted.make_images(root / "data", per_class=1, seed=7, start=100)
    jobs = planned(root, by_rule=True)
    scans = sum(count for rule, count in jobs.items() if rule.startswith("channel_examples_"))
    assert 1 <= scans <= len(added) < 4, jobs  # of four chunks
    assert jobs.get(f"channel_atlas_planted_{planted.LAYER}") == 1
    snakemake(root)
    assert atlas_of(results)["scanned"] == 18
    assert planned(root) == {}

    # the pages
    if find_browser() is None:
        pytest.skip("chromium is not installed; the pages are checked in a real browser")
    query = {"model": "planted", "setting": planted.LAYER}
    with Browser(timeout=30, width=1280, height=1000) as browser:
        browser.open((results / "gallery" / "atlas.html").as_uri() + "?" + urlencode(query, quote_via=quote))
        rows = browser.attributes("#channels tbody tr", "data-channel")
        assert rows == ["0", "1", "2"]
        assert len(browser.texts("#channels tbody tr[data-channel='0'] .tile")) == TOP
        assert browser.errors(warnings=True) == []
        browser.follow("#channels tbody tr[data-channel='0'] td.channel a")
        assert browser.evaluate("document.body.dataset.channel") == "0"
        assert len(browser.texts("#top figure.example")) == TOP
        captions = browser.texts("#top figure.example figcaption a")
        assert all(name.startswith("red/") for name in captions), captions
        browser.follow("#top figure.example figcaption a")
        assert browser.evaluate("document.body.dataset.id")  # the image's own page
        assert browser.errors(warnings=True) == []
    index = (results / "index.html").read_text()
    assert "gallery/atlas.html?model=planted&amp;setting=3" in index
