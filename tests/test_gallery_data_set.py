"""The gallery of a labelled data set, end to end: a real run over class folders with a
label manifest, object boxes, an odd file name and a broken file, then its pages in
headless Chromium: the index's filters and sorts against summary.csv and metrics.csv,
an image's page opened from a thumbnail, and the views against the tables."""

from __future__ import annotations

import csv
import html
import io
import re
from collections import Counter
from pathlib import Path

import pytest
from browser import Browser, find_browser
from PIL import Image
from test_workflow import REPO, make_copy, snakemake

pytestmark = pytest.mark.slow

MODEL = "efficientnet_lite0"
# class folder: (sample picture, label, its box in the picture: xmin, ymin, xmax, ymax)
CLASSES = {
    "n02123045": ("chelsea.png", "tabby", (0, 0, 400, 300)),
    "espresso": ("coffee.png", "espresso", (90, 14, 480, 382)),
    "missile": ("rocket.jpg", "missile", (298, 125, 345, 410)),
}
ODD = "missile/rocket {2} #ü.png"
BROKEN = "espresso/broken.png"
ODD_PATH, BROKEN_PATH = f"ds/{ODD}", f"ds/{BROKEN}"  # as the manifest gives them (the index shows these)


def make_data_set(root: Path) -> None:
    """Three crops per class (the box moved with the crop), an odd name, a truncated PNG, and labels.csv."""
    rows = [("path", "label", "xmin", "ymin", "xmax", "ymax")]
    for folder, (source, label, box) in CLASSES.items():
        picture = Image.open(REPO / "images" / source).convert("RGB")
        width, height = picture.size
        for number in range(3):
            left, top = 10 * number, 5 * number
            crop = picture.crop((left, top, width - 20 + left - 10 * number, height - 10))
            name = f"{folder}/{number:02d}.png"
            (root / "ds" / folder).mkdir(parents=True, exist_ok=True)
            crop.save(root / "ds" / name)
            moved = (
                max(0, box[0] - left),
                max(0, box[1] - top),
                min(crop.width, box[2] - left),
                min(crop.height, box[3] - top),
            )
            rows.append((f"ds/{name}", label, *moved))
    rocket = Image.open(REPO / "images" / "rocket.jpg").convert("RGB")
    rocket.save(root / "ds" / ODD)
    rows.append((f"ds/{ODD}", "missile", *CLASSES["missile"][2]))
    (root / "ds" / BROKEN).write_bytes((root / "ds" / "espresso" / "00.png").read_bytes()[:300])
    rows.append((f"ds/{BROKEN}", "espresso", "", "", "", ""))
    with open(root / "labels.csv", "w", newline="") as handle:
        csv.writer(handle).writerows(rows)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = make_copy(tmp_path_factory.mktemp("gallery-data-set") / "wf", images=())
    make_data_set(root)
    config = {
        "images": {"manifest": "labels.csv"},
        "layout": "chunks",
        "chunk_size": 4,
        "threads": 1,
        "device": "cpu",
        "models": {MODEL: {}},
        "techniques": {
            "grad_cam": {"size": 64, "renderings": ["overlay"], "target": "label", "models": {MODEL: {}}},
            "metrics": {
                "methods": ["grad-cam", "saliency"],
                "size": 64,
                "steps": 4,
                "road": False,
                "randomisation_stages": 0,
                "target": "label",
                "models": {MODEL: {}},
            },
        },
    }
    import yaml

    (root / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    snakemake(root)
    results = root / "results"
    # by the image's path, as the index shows it; in the order of the run's names (metrics.csv's "image")
    rows = sorted(csv.DictReader(io.StringIO((results / "summary.csv").read_text())), key=lambda row: row["name"])
    summary = {row["image"]: row for row in rows}
    metrics = list(csv.DictReader(io.StringIO((results / "metrics.csv").read_text())))
    path_of = {row["name"]: row["image"] for row in rows}
    for row in metrics:
        row["path"] = path_of[row["image"]]
    return results, summary, metrics


@pytest.fixture(scope="module")
def browser():
    if find_browser() is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium)")
    with Browser() as session:
        yield session


def shown(browser: Browser) -> list[str]:
    return browser.texts("#images tbody tr td.name")


def cells(browser: Browser) -> list[list[str]]:
    return browser.evaluate(
        "Array.from(document.querySelectorAll('#images tbody tr'),"
        " row => Array.from(row.cells, cell => cell.textContent.trim()))"
    )


def number(text: str) -> float | None:
    return None if text in ("", "\u2013", "-") else float(text)


def test_the_index_filters_and_sorts_as_the_tables_say(run, browser):
    results, summary, metrics = run
    browser.open(results / "images.html", fresh=True)
    names = list(summary)
    assert shown(browser) == names  # every image, the broken one too, in name order
    for row in cells(browser):
        expected = summary[row[1]]
        if expected["status"] != "ok":
            assert row[5] == "failed" and "truncated" in row[6]
            continue
        assert row[3].endswith(f"({expected[f'{MODEL} top-1']})")
        assert abs(number(row[4]) - float(expected[f"{MODEL} probability"])) < 5e-4
        assert row[5] == {"yes": "right", "no": "wrong"}[expected[f"{MODEL} correct"]]
    # a class, then its mistakes only, then the failed images
    browser.choose("#class", "c967")
    espresso = [n for n in names if summary[n][f"{MODEL} label class"] == "967"]
    assert shown(browser) == espresso and BROKEN_PATH in espresso  # the broken file keeps its label
    browser.choose("#outcome", "wrong")
    assert shown(browser) == [n for n in espresso if summary[n][f"{MODEL} correct"] == "no"]
    browser.choose("#class", "all")
    browser.choose("#outcome", "failed")
    assert shown(browser) == [n for n in names if summary[n]["status"] != "ok"] == [BROKEN_PATH]
    browser.choose("#outcome", "all")
    # the most confident first: summary.csv's probabilities, descending
    browser.choose("#sort", "confidence")
    browser.choose("#dir", "desc")
    probabilities = [number(row[4]) for row in cells(browser)]
    usable = sorted((float(r[f"{MODEL} probability"]) for r in summary.values() if r["status"] == "ok"), reverse=True)
    assert probabilities[: len(usable)] == pytest.approx(usable, abs=5e-4) and shown(browser)[-1] == BROKEN_PATH
    # Grad-CAM's share inside the box, least first: metrics.csv's order (ties by name), the method's columns beside
    sort = next(value for value in browser.attributes("#sort option", "value") if "localisation" in value)
    assert sort.startswith("m-Grad-CAM-")
    browser.choose("#sort", sort)
    browser.choose("#dir", "asc")
    scored = sorted((float(r["localisation"]), r["image"], r["path"]) for r in metrics if r["method"] == "Grad-CAM")
    assert shown(browser)[: len(scored)] == [path for _, _, path in scored]
    header = browser.texts("#images thead th")
    column = next(k for k, text in enumerate(header) if "Attribution in box" in text)
    values = [number(row[column]) for row in cells(browser)[: len(scored)]]
    assert values == pytest.approx([value for value, _, _ in scored], abs=5e-4)
    assert browser.errors() == []


def test_an_image_page_opens_from_its_thumbnail_with_every_picture(run, browser):
    results, summary, metrics = run
    browser.open(results / "images.html", fresh=True)
    browser.choose("#class", "c657")
    odd_row = shown(browser).index(ODD_PATH)
    browser.follow(f"#images tbody tr:nth-child({odd_row + 1}) td.thumb a")
    assert browser.texts("#title")[0].startswith(ODD_PATH)
    pictures = browser.images()
    assert len(pictures) == 1 + 1 + 2  # the input, Grad-CAM's overlay, the metrics' pictures of two methods
    assert [picture["src"] for picture in pictures if not picture["naturalWidth"]] == []
    top5 = browser.texts("#top5 tbody tr")
    assert len(top5) == 5 and f"({summary[ODD_PATH][f'{MODEL} top-1']})" in top5[0]
    methods = browser.texts("#metrics tbody th")
    assert methods == ["Grad-CAM", "Saliency maps"]
    deletion = {r["method"]: float(r["deletion_auc"]) for r in metrics if r["path"] == ODD_PATH}
    header = browser.texts("#metrics thead th")
    column = next(k for k, text in enumerate(header) if text.startswith("Deletion")) - 1
    for method in methods:
        text = browser.evaluate(
            "Array.from(document.querySelectorAll('#metrics tbody tr'))"
            f".find(row => row.cells[0].textContent.trim() === {method!r}).cells[{column + 1}].textContent.trim()"
        )
        assert float(text) == pytest.approx(deletion[method], abs=5e-4)
    # the object's box over the input, where labels.csv put it (in the picture's pixels)
    assert browser.attributes("#input .box", "title") == ["box " + ", ".join(map(str, CLASSES["missile"][2]))]
    assert browser.errors() == []
    # previous leads back in the list it came from (the class's images by name; the odd one is its last)
    missiles = [path for path, row in summary.items() if row[f"{MODEL} label class"] == "657"]
    assert missiles[-1] == ODD_PATH and browser.attributes("#next", "aria-disabled") == ["true"]
    browser.follow("#prev")
    assert browser.texts("#title")[0].startswith(missiles[-2])
    assert browser.errors() == []


def test_the_views_follow_metrics_csv_and_the_confusion_counts_summary_csv(run, browser):
    results, summary, metrics = run
    page = (results / "views.html").read_text(encoding="utf-8")
    table = page[page.index('class="views outside" data-method="Grad-CAM"') :]
    table = table[: table.index("</table>")]
    rows = re.findall(r'<tr data-class="([^"]*)">(.*?)</tr>', table, re.S)
    assert {label for label, _ in rows} == {"281", "967", "657"}
    for label, row in rows:
        listed = [html.unescape(name) for name in re.findall(r'<figure data-name="([^"]*)"', row)]
        mine = sorted(
            (float(r["localisation"]), r["image"])
            for r in metrics
            if r["method"] == "Grad-CAM" and summary[r["path"]][f"{MODEL} label class"] == label
        )
        assert listed == [name for _, name in mine][: len(listed)] and listed
    counted = Counter(
        (row[f"{MODEL} label class"], row[f"{MODEL} top-1"])
        for row in summary.values()
        if row["status"] == "ok" and row[f"{MODEL} correct"] in ("yes", "no")
    )
    confusion = list(csv.DictReader(io.StringIO((results / "confusion.csv").read_text())))
    assert {(r["label class"], r["predicted class"]): int(r["count"]) for r in confusion} == dict(counted)
    with Image.open(results / "confusion" / f"{MODEL}.png") as picture:
        assert picture.width > 200 and picture.height > 200
    browser.open(results / "views.html", ready=False)
    assert [image["src"] for image in browser.images() if not image["naturalWidth"]] == []
    assert browser.errors() == []
