"""The channel atlases in the gallery (docs/gallery.md, "Channel atlases"): a hand-made
atlas.json with its strips, the gallery command run over it, its data files, index.html's
section, and gallery/atlas.html and gallery/channel.html in headless Chromium."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

import pytest
from click.testing import CliRunner
from PIL import Image

from cnnvis_tasks.cli import cli
from cnnvis_tasks.gallery.atlas import filter_pictures

MODEL, LAYER = "m", "_blocks.4"
FOLDER = f"{MODEL}/channel-examples/{LAYER}"
CHANNELS = 120  # three pages of 50
PATCH = 16
TOP = 3
# the data set, in name order (their ids), with labels; the atlas lists them in another order
NAMES = ["a cat 1.png", "b cat 2.png", "c dog #3.png", "d dog 4.png", "e fish 5.png", "f unlabelled.png"]
LABELS = ["cat", "cat", "dog", "dog", "fish", None]
OUTSIDE = "not in the run.png"  # an image the atlas names but the gallery's index does not have
FILTER_VIZ = {5: True, 7: False}  # channel -> its filter visualisation's file exists
# channels whose top images (places in atlas_images) have no label, and all one label
SPECIAL = {9: [0, 6, 0], 11: [4, 5, 4]}


def read_script(path: Path):
    """The key and value a data file hands to cnnvis.receive."""
    match = re.fullmatch(r'cnnvis\.receive\(("[^"]*"),(.*)\);\n', path.read_text(encoding="utf-8"), re.S)
    assert match, path
    return json.loads(match.group(1)), json.loads(match.group(2))


def atlas_images(root: Path) -> list[dict]:
    """The atlas's images: the data set's, reversed, and one the run does not have."""
    listed = [
        {"path": str(root / "images" / name), "name": name, "label": label}
        for name, label in reversed(list(zip(NAMES, LABELS)))
    ]
    return listed + [{"path": str(root / "images" / OUTSIDE), "name": None, "label": None}]


def channel_entry(channel: int, images: list[dict]) -> dict:
    """Channel N's top images: three of the atlas's images, by N; every third without a label
    among them; every fourth has a bottom list too."""
    top = [(channel + k) % len(images) for k in range(TOP)]
    if channel in SPECIAL:
        top = SPECIAL[channel]
    labels = [images[i]["label"] for i in top]
    counted = {label: labels.count(label) for label in labels if label is not None}
    selectivity = None
    if counted:
        label = max(counted, key=lambda name: (counted[name], name))
        share = round(counted[label] / TOP, 4)
        selectivity = {"label": label, "share": share, "count": counted[label], "labelled": sum(map(bool, labels))}
    bottom = [(channel * 2 + k) % len(images) for k in range(2)] if channel % 4 == 0 else []
    return {
        "channel": channel,
        "top": [
            {"image": i, "score": round(10.0 - k - channel / 100, 3), "box": [0, 0, 20, 20], "size": [40, 30]}
            for k, i in enumerate(top)
        ],
        "bottom": [
            {"image": i, "score": -1.0 - k, "box": [4, 4, 24, 24], "size": [40, 30]} for k, i in enumerate(bottom)
        ],
        "strips": {"top": f"top/{channel:05d}.png", "bottom": f"bottom/{channel:05d}.png" if bottom else None},
        "selectivity": selectivity,
        "classes": {
            "up": [{"index": 281, "name": "tabby", "value": 0.12}, {"index": 282, "name": "tiger cat", "value": 0.1}],
            "down": [{"index": 1, "name": "goldfish", "value": -0.2}],
        }
        if channel % 2 == 0
        else None,
    }


def make_run(root: Path, atlas: bool = True) -> tuple[Path, Path, dict]:
    """A results folder with the data set's images.json, a filter visualisation table and two
    reductions: the atlas of LAYER, and one of another layer whose job wrote nothing."""
    results = root / "results"
    for number, name in enumerate(NAMES + [OUTSIDE]):
        (root / "images").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (40, 30), (30 * number, 100, 200)).save(root / "images" / name)
    statuses = [
        {"name": name, "path": str(root / "images" / name), "status": "ok", "reason": None, "label": label}
        for name, label in zip(NAMES, LABELS)
    ]
    status = results / "images.json"
    status.parent.mkdir(parents=True, exist_ok=True)
    status.write_text(json.dumps({"images": statuses}))
    images = atlas_images(root)
    if atlas:
        folder = results / FOLDER
        for channel in range(CHANNELS):
            entry = channel_entry(channel, images)
            for way in ("top", "bottom"):
                if entry["strips"][way]:
                    strip = Image.new("RGB", (PATCH * len(entry[way]), PATCH), (channel * 2, 50, 50))
                    (folder / way).mkdir(parents=True, exist_ok=True)
                    strip.save(folder / entry["strips"][way])
        document = {
            "format": "cnnvis-channel-atlas/1",
            "technique": "channel-examples",
            "model": MODEL,
            "layer": LAYER,
            "setting": LAYER,
            "statistic": "max",
            "receptive_field": 35,
            "patch_size": PATCH,
            "scanned": len(NAMES) + 1,
            "counts": {"top": TOP, "bottom": 2},
            "classes_from": "gradient",
            "images": images,
            # not in channel order: the gallery puts them in order
            "channels": [channel_entry(c, images) for c in reversed(range(CHANNELS))],
        }
        (folder / "atlas.json").write_text(json.dumps(document))
    cells = []
    for channel, exists in FILTER_VIZ.items():
        path = f"{MODEL}/filter-viz/{LAYER}-filter{channel}.png"
        cells.append({"key": f"{LAYER}-filter{channel}", "label": [MODEL, f"layer {LAYER}"], "path": path})
        if exists:
            (results / path).parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (24, 24), (250, 120, 0)).save(results / path)
    spec = {
        "models": [MODEL],
        "chunk_count": 1,
        "tables": [
            {
                "section": "filter-viz",
                "table": MODEL,
                "per_image": False,
                "rows": [{"key": "filter-viz", "label": MODEL, "cells": cells}],
            }
        ],
        "reductions": [
            {
                "technique": "channel-examples",
                "title": "channel atlas",
                "model": MODEL,
                "setting": setting,
                "labels": [f"layer {setting}"],
                "folder": f"{MODEL}/channel-examples/{setting}",
            }
            for setting in (LAYER, "_blocks.9")
        ],
    }
    return results, status, spec


def run_gallery(results: Path, status: Path, spec: dict, *extra: str) -> str:
    out = results / "index.html"
    result = CliRunner().invoke(
        cli,
        ["gallery", "--spec", json.dumps(spec), "--images", str(status), "--out", str(out), *extra],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    return out.read_text(encoding="utf-8")


def atlas_folder(results: Path) -> Path:
    _, index = read_script(results / "gallery/data/atlas/index.js")
    (entry,) = index["atlases"]
    assert (entry["model"], entry["setting"], entry["channels"]) == (MODEL, LAYER, CHANNELS)
    return results / "gallery/data/atlas" / entry["dir"]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("atlas")
    results, status, spec = make_run(root)
    page = run_gallery(results, status, spec)
    return {"root": root, "results": results, "index": page, "images": atlas_images(root)}


def test_the_data_files_hold_pages_of_fifty_with_the_images_resolved(site):
    results = site["results"]
    folder = atlas_folder(results)
    key, meta = read_script(folder / "meta.js")
    assert key == f"atlas/{folder.parent.name}/{folder.name}/meta"
    assert meta["channels"] == CHANNELS and meta["pages"] == 3 and meta["page_size"] == 50
    assert meta["page_starts"] == [0, 50, 100]
    assert meta["folder"] == FOLDER and meta["layer"] == LAYER and meta["patch_size"] == PATCH
    assert meta["statistic"] == "max" and meta["scanned"] == len(NAMES) + 1 and meta["image_pages"] is True
    assert [sort["key"] for sort in meta["sorts"]] == ["channel", "selectivity"]
    assert meta["filter_viz"] == {"section": "filter-viz", "title": "Filter visualisation", "count": 1}
    pages = [read_script(folder / f"channel.{n}.js")[1] for n in range(3)]
    assert [len(page["channels"]) for page in pages] == [50, 50, 20]
    assert [c["channel"] for page in pages for c in page["channels"]] == list(range(CHANNELS))
    assert not (folder / "channel.3.js").exists()
    for page in pages:
        for channel in page["channels"]:
            expected = channel_entry(channel["channel"], site["images"])
            for way in ("top", "bottom"):
                shown = [page["images"][item["image"]] for item in channel[way]]
                wanted = [site["images"][item["image"]] for item in expected[way]]
                assert [image["name"] for image in shown] == [image["name"] for image in wanted]
                assert [item["score"] for item in channel[way]] == [item["score"] for item in expected[way]]
                for image in shown:  # the id in the image index (name order), or none and the file
                    assert image["id"] == (NAMES.index(image["name"]) if image["name"] else None)
                    assert (results / unquote(image["file"])).resolve().is_file()
            strip = channel["strips"]["top"]
            assert strip == f"{FOLDER}/top/{channel['channel']:05d}.png" and (results / strip).is_file()
            assert channel["prev"] == (channel["channel"] - 1 if channel["channel"] else None)
            assert channel["next"] == (channel["channel"] + 1 if channel["channel"] + 1 < CHANNELS else None)
            picture = f"{MODEL}/filter-viz/{LAYER}-filter5.png" if channel["channel"] == 5 else None
            assert channel["filter_viz"] == picture  # channel 7's file was never written
    # the selectivity order: the highest share first, then the count, then the channel
    by_share = [read_script(folder / f"selectivity.{n}.js")[1] for n in range(3)]
    order = [c for page in by_share for c in page["channels"]]
    assert len(order) == CHANNELS
    keys = [(-(c["selectivity"] or {}).get("share", -1), -(c["selectivity"] or {}).get("count", 0)) for c in order]
    assert keys == sorted(keys)
    assert order[0]["channel"] == 11 and order[0]["selectivity"] == {
        "label": "cat",
        "share": 1.0,
        "count": 3,
        "labelled": 3,
    }
    assert order[-1]["channel"] == 9 and order[-1]["selectivity"] is None


def test_the_index_lists_each_atlas_and_says_which_is_missing(site):
    page = site["index"]
    href = "gallery/atlas.html?" + urlencode({"model": MODEL, "setting": LAYER}, quote_via=quote)
    assert f'<a href="{href.replace("&", "&amp;")}">' in page
    assert f"{CHANNELS} channels, {len(NAMES) + 1} images scanned" in page
    assert '<h2 id="reduction--channel_atlas">Channel atlas</h2>' in page
    assert '<a href="#reduction--channel_atlas">Channel atlas</a>' in page
    missing = re.findall(r'<li class="missing">([^<]*)</li>', page)
    assert len(missing) == 1 and "_blocks.9" in missing[0] and "no atlas.json" in missing[0]
    assert (site["results"] / "gallery" / "atlas.html").is_file()
    assert (site["results"] / "gallery" / "channel.html").is_file()
    assert (site["results"] / "gallery" / "browse" / "atlas.js").is_file()


def test_an_unreadable_atlas_is_a_note_and_no_image_index_links_the_files(tmp_path):
    results, status, spec = make_run(tmp_path)
    (results / FOLDER / "atlas.json").write_text('{"format": "something else"}')
    page = run_gallery(results, status, spec)
    missing = re.findall(r'<li class="missing">([^<]*)</li>', page)
    assert len(missing) == 2 and "&#39;something else&#39;" in missing[0]
    _, index = read_script(results / "gallery/data/atlas/index.js")
    assert index == {"atlases": []}
    # whole again, without the image index: the tiles lead to the image files
    results, status, spec = make_run(tmp_path / "again")
    run_gallery(results, status, spec, "--no-data-set-pages")
    folder = atlas_folder(results)
    assert read_script(folder / "meta.js")[1]["image_pages"] is False
    images = read_script(folder / "channel.0.js")[1]["images"]
    assert {image["id"] for image in images} == {None}
    # a spec without reductions writes no atlas
    results, status, spec = make_run(tmp_path / "none", atlas=False)
    page = run_gallery(results, status, {k: v for k, v in spec.items() if k != "reductions"})
    assert "atlas" not in page and not (results / "gallery/data/atlas").exists()


def test_filter_pictures_are_found_by_layer_and_filter_of_the_same_model(tmp_path):
    for path in (
        "m/a/L-filter3.png",
        "m/a/L-filter4.png",
        "m/a/L-filter04.png",
        "m/a/L2-filter5.png",
        "n/a/L-filter6.png",
    ):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes(b"")

    def cell(key: str, path: str) -> dict:
        return {"key": key, "path": path}

    spec = {
        "tables": [
            {"section": "per-image", "table": "m", "per_image": True, "columns": [cell("L-filter9", "x")]},
            {"section": "other", "table": "n", "rows": [{"cells": [cell("L-filter6", "n/a/L-filter6.png")]}]},
            {
                "section": "pictures",
                "table": "m",
                "per_image": False,
                "rows": [
                    {"cells": [cell("L-filter3", "m/a/L-filter3.png"), cell("L-filter04", "m/a/L-filter04.png")]},
                    {"cells": [cell("L2-filter5", "m/a/L2-filter5.png"), cell("L-filter8", "m/a/L-filter8.png")]},
                    {"cells": [cell("L-filter4-gray", "m/a/L-filter4.png"), cell("L-all", "m/a/L-all.png")]},
                ],
            },
        ]
    }
    assert filter_pictures(spec, "m", "L", tmp_path) == ("pictures", {3: "m/a/L-filter3.png"})
    assert filter_pictures(spec, "m", "L2", tmp_path) == ("pictures", {5: "m/a/L2-filter5.png"})
    assert filter_pictures(spec, "n", "L", tmp_path) == ("other", {6: "n/a/L-filter6.png"})
    assert filter_pictures(spec, "m", "K", tmp_path) == (None, {})


# ---------------------------------------------------------------------------------------
# The pages in a real browser.


def page_url(site, name: str, **query) -> str:
    return (site["results"] / "gallery" / name).as_uri() + "?" + urlencode(query, quote_via=quote)


def shown(browser) -> list[int]:
    return [int(channel) for channel in browser.attributes("#channels tbody tr", "data-channel")]


def clean(browser) -> bool:
    errors = browser.errors(warnings=True)
    assert errors == [], errors
    return True


def strips_loaded(browser) -> bool:
    """Whether every strip the page shows loads (a background image reports no failure itself)."""
    return browser.evaluate(
        """(async () => {
          const urls = new Set(Array.from(document.querySelectorAll('.tile'),
            tile => tile.style.backgroundImage.slice(5, -2)).filter(Boolean));
          const loads = Array.from(urls, url => new Promise(resolve => {
            const image = new Image();
            image.onload = () => resolve(image.naturalWidth > 0);
            image.onerror = () => resolve(false);
            image.src = url;
          }));
          return urls.size > 0 && (await Promise.all(loads)).every(Boolean);
        })()""",
        await_promise=True,
    )


def test_the_atlas_page_shows_fifty_channels_a_page(site, browser):
    browser.open(page_url(site, "atlas.html", model=MODEL, setting=LAYER))
    assert shown(browser) == list(range(50))
    assert browser.texts("#range") == [f"channels 1\u201350 of {CHANNELS} (page 1 of 3)"]
    headers = ["channel", "Filter visualisation", "top examples", "selectivity", "classes"]
    assert browser.texts("#channels thead th") == headers
    row = "#channels tbody tr[data-channel='5']"
    assert len(browser.texts(f"{row} .tile")) == TOP
    images = browser.images()  # once loaded: the filter visualisation of channel 5 alone
    assert [(unquote(i["src"]), i["naturalWidth"]) for i in images] == [
        (f"../{MODEL}/filter-viz/{LAYER}-filter5.png", 24)
    ]
    assert browser.evaluate(f'document.querySelectorAll("{row} img.filter-viz").length') == 1
    expected = channel_entry(5, site["images"])
    assert browser.texts(f"{row} td.selectivity") == [
        f"{expected['selectivity']['count']} of {TOP} labelled \u2018{expected['selectivity']['label']}\u2019"
        + (
            f" ({TOP - expected['selectivity']['labelled']} unlabelled)"
            if expected["selectivity"]["labelled"] < TOP
            else ""
        )
    ]
    assert browser.texts("#channels tbody tr[data-channel='4'] td.classes div") == [
        "\u2191 tabby (281), tiger cat (282)",
        "\u2193 goldfish (1)",
    ]
    # a tile leads to its image's page (an image the run lacks: to its file)
    hrefs = browser.attributes(f"{row} a.tile-link", "href")
    names = [site["images"][item["image"]]["name"] for item in expected["top"]]
    for href, name in zip(hrefs, names):
        if name is None:
            assert unquote(href) == f"../../images/{OUTSIDE}"
        else:
            assert parse_qs(urlsplit(href).query) == {"model": [MODEL], "id": [str(NAMES.index(name))]}
            assert href.startswith("image.html?")
    assert strips_loaded(browser)
    assert clean(browser)
    # paging: next and last
    browser.follow("#next-page")
    assert shown(browser) == list(range(50, 100))
    assert parse_qs(urlsplit(browser.evaluate("location.href")).query)["page"] == ["2"]
    browser.follow("#last-page")
    assert shown(browser) == list(range(100, CHANNELS))
    assert browser.evaluate("document.getElementById('next-page').hasAttribute('href')") is False
    browser.follow("#first-page")
    assert shown(browser) == list(range(50))
    # sorted by selectivity: the page's order is the data file's
    browser.choose_and_load("#sort", "selectivity")  # a new address: sort and page are its query
    folder = atlas_folder(site["results"])
    order = [c["channel"] for c in read_script(folder / "selectivity.0.js")[1]["channels"]]
    assert shown(browser) == order
    assert parse_qs(urlsplit(browser.evaluate("location.href")).query)["sort"] == ["selectivity"]
    assert clean(browser)
    # a tile's link opens that image's page in the image index
    href = browser.follow("#channels tbody tr:first-child a.tile-link[data-image]")
    assert browser.evaluate("document.body.dataset.id") == parse_qs(urlsplit(href).query)["id"][0]
    assert clean(browser)


def test_a_channel_page(site, browser):
    browser.open(page_url(site, "atlas.html", model=MODEL, setting=LAYER, page=2))
    browser.follow("#channels tbody tr[data-channel='52'] td.channel a")
    assert browser.evaluate("document.body.dataset.channel") == "52"
    expected = channel_entry(52, site["images"])
    assert len(browser.texts("#top figure.example")) == TOP
    assert len(browser.texts("#bottom figure.example")) == len(expected["bottom"]) == 2
    scores = browser.texts("#top figure.example .score")
    assert scores == [f"score {item['score']:.3f}" for item in expected["top"]]
    names = [site["images"][item["image"]]["name"] or OUTSIDE for item in expected["top"]]
    assert browser.texts("#top figure.example figcaption a") == names
    assert browser.texts("#classes tbody td.number") == ["0.120", "0.100", "-0.200"]
    assert "labelled" in browser.texts("#selectivity")[0]
    assert browser.texts("#filter-viz") == ["None in this gallery."]
    assert strips_loaded(browser)
    back = urlsplit(browser.evaluate("document.getElementById('back').href"))
    assert back.path.endswith("/atlas.html") and parse_qs(back.query)["page"] == ["2"]
    assert clean(browser)
    browser.follow("#next")
    assert browser.evaluate("document.body.dataset.channel") == "53"
    assert browser.texts("#bottom") == ["No examples."]
    assert browser.texts("#classes") == ["Not computed."]
    # channel 5: its filter visualisation, and previous across the first page
    browser.open(page_url(site, "channel.html", model=MODEL, setting=LAYER, channel=5))
    assert [image["naturalWidth"] for image in browser.images()] == [24]
    assert browser.texts("#filter-viz-title") == ["Filter visualisation"]
    browser.follow("#prev")
    assert browser.evaluate("document.body.dataset.channel") == "4"
    browser.open(page_url(site, "channel.html", model=MODEL, setting=LAYER, channel=0))
    assert browser.evaluate("document.getElementById('prev').hasAttribute('href')") is False
    browser.open(page_url(site, "channel.html", model=MODEL, setting=LAYER, channel=50))
    assert browser.evaluate("document.body.dataset.channel") == "50"
    assert parse_qs(urlsplit(browser.evaluate("document.getElementById('prev').href")).query)["channel"] == ["49"]
    assert clean(browser)
    # an unknown channel or atlas: a message, not an error
    browser.open(page_url(site, "channel.html", model=MODEL, setting=LAYER, channel=CHANNELS))
    assert f"no channel {CHANNELS}" in browser.texts("#status")[0]
    browser.open(page_url(site, "atlas.html", model=MODEL, setting="_blocks.9"))
    assert "no atlas" in browser.texts("#status")[0]
    assert clean(browser)
