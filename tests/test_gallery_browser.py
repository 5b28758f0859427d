"""The image index (images.html) and the image page (gallery/image.html) in a real browser:
a small gallery folder written straight from docs/gallery.md's data files, the two pages
rendered from their templates, and headless Chromium driving them.  The orders shown are
checked against orders computed here from the rows."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

import pytest
from PIL import Image

from cnnvis_tasks.gallery import _templates

STATIC = Path(__file__).resolve().parent.parent / "cnnvis_tasks" / "gallery" / "static"
ARTIFACTS = os.environ.get("CNNVIS_TEST_ARTIFACTS")  # screenshots only when asked for

# ---------------------------------------------------------------------------------------
# The fixture: docs/gallery.md's files for two models and twelve images, written directly.

CLASS_NAMES = {3: "cat", 7: "dog", 11: "gold fish", 20: "bird", 21: "fr\u00f6g"}
IMAGES = [  # (file name, label class); names sort in this order, so the ids are the places
    ("a cat {1}.png", 3),
    ("b dog #2.png", 7),
    ("c fish %20 3.png", 11),
    ("d cat?4.png", 3),  # under the first model one of its results failed
    ("e d\u00f6g 5.png", 7),
    ("f fish [6].png", 11),
    ("g cat & 7.png", 3),
    ("h dog 8.png", 7),  # cannot be read
    ("i fish 9.png", 11),
    ("j cat 10.png", 3),
    ("k unlabelled 11.png", None),
    ("l unlabelled + 12.png", None),
]
UNREADABLE = 7
RESULT_FAILED = 3
MODELS = [  # name, folder, methods (key, label)
    ("tiny-cnn", "tiny-cnn", [("grad-cam", "Grad-CAM"), ("score-cam", "Score-CAM")]),
    ("Other {net} \u00fc", "Other_net", [("grad-cam", "Grad-CAM")]),
]
MEASURES = [
    {"key": "localisation", "label": "localisation", "higher_is_better": True},
    {"key": "deletion", "label": "deletion AUC", "higher_is_better": False},
]
PAGE_SIZE = 5
IDS_PER_FILE = 4


def _script(path: Path, key: str, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"cnnvis.receive({json.dumps(key)},{json.dumps(value, ensure_ascii=False)});\n", "utf-8")


def _png(path: Path, size: tuple[int, int], colour: tuple[int, int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def _buckets(row: dict) -> list[str]:
    outcomes = [row["outcome"]] + (["failed"] if row["failed"] and row["outcome"] != "failed" else [])
    names = ["all", *(f"o-{outcome}" for outcome in outcomes)]
    if row["label_class"] is not None:
        names += [f"c{row['label_class']}", *(f"c{row['label_class']}-o-{outcome}" for outcome in outcomes)]
    return names


def _row(model: int, folder: str, methods: list, number: int, name: str, label: int | None) -> dict:
    unreadable = number == UNREADABLE
    right = label is not None and (number + model) % 4 != 0
    prediction = None if unreadable else label if right else (20 if label != 20 else 21) if label else 21
    probability = None if unreadable else round(0.30 + 0.05 * ((number * 7 + model * 3) % 12), 2)
    top = []
    if not unreadable:
        others = [c for c in CLASS_NAMES if c != prediction]
        top = [[prediction, CLASS_NAMES[prediction], probability]] + [
            [c, CLASS_NAMES[c], round((1 - probability) * share, 4)]
            for c, share in zip(others, (0.5, 0.25, 0.12, 0.06))
        ]
    failures = []
    if unreadable:
        outcome = "failed"
        failures.append({"result": "image", "status": "failed", "reason": "cannot identify image file"})
    else:
        outcome = "unlabelled" if label is None else "right" if right else "wrong"
    if number == RESULT_FAILED and model == 0:
        failures.append({"result": "score-cam", "status": "failed", "reason": "CUDA out of memory"})
    metrics = {}
    for k, (method, _) in enumerate(methods):
        if unreadable or (method == "score-cam" and number in (5, 9)):
            continue
        values = {
            "localisation": round(0.05 + 0.07 * ((number * 5 + 3 * k + model) % 12), 3),
            "deletion": round(0.02 + 0.06 * ((number * 11 + k + 2 * model) % 12), 3),
        }
        if method == "grad-cam" and (number, model) in ((2, 0), (4, 1)):
            del values["deletion" if model == 0 else "localisation"]
        metrics[method] = values
    pictures = []
    for section, title, settings in (
        ("grad-cam", "Grad-CAM", ["layer4", "layer3"]),
        ("saliency", "Saliency", ["vanilla"]),
        *([("score-cam", "Score-CAM", ["auto"])] if model == 0 else []),
    ):
        for setting in settings:
            status, reason = "ok", None
            if unreadable:
                status, reason = "failed", "cannot identify image file"
            elif section == "score-cam" and number == RESULT_FAILED:
                status, reason = "failed", "CUDA out of memory"
            elif section == "saliency" and number == 6:
                status = "not built"
            pictures.append(
                {
                    "section": section,
                    "title": title,
                    "label": [setting],
                    "src": f"{folder}/{section}/{name}/{setting}.png",
                    "status": status,
                    "reason": reason,
                }
            )
    return {
        "id": number,
        "name": name,
        "image": f"../images/{name}",
        "label": CLASS_NAMES[label] if label is not None else None,
        "label_class": label,
        "label_name": CLASS_NAMES[label] if label is not None else None,
        "top": top,
        "prediction": prediction,
        "prediction_name": CLASS_NAMES[prediction] if prediction is not None else None,
        "probability": probability,
        "outcome": outcome,
        "failed": outcome == "failed" or bool(failures),
        "status": "failed" if unreadable else "ok",
        "reason": "cannot identify image file" if unreadable else None,
        "size": None if unreadable else [40 + 2 * number, 30],
        "box": [4, 3, 24 + number, 20] if label is not None and not unreadable and number % 3 != 2 else None,
        "metrics": metrics,
        "pictures": pictures,
        "failures": failures,
        "prev": number - 1 if number else None,
        "next": number + 1 if number + 1 < len(IMAGES) else None,
    }


def written_row(row: dict) -> dict:
    """A row as its data file holds it: the scores by method, and of the model's pictures
    only the chunk and those this image lacks (docs/gallery.md)."""
    problems = {
        str(place): [picture["status"], picture["reason"]]
        for place, picture in enumerate(row["pictures"])
        if picture["status"] != "ok"
    }
    kept = {k: v for k, v in row.items() if k not in ("metrics", "pictures")}
    return kept | {"scores": row["metrics"], "chunk": "chunk000of001", "picture_problems": problems}


def sort_value(model: dict, row: dict, key: str):
    """A row's value for a sort key (None: none; it sorts last)."""
    if key == "name":
        return row["name"]
    if key == "confidence":
        return row["probability"]
    for method in model["methods"]:
        for measure in model["measures"]:
            if key == f"m-{method['key']}-{measure['key']}":
                return row["metrics"].get(method["key"], {}).get(measure["key"])
    raise KeyError(key)


def write_fixture(root: Path) -> dict:
    """Write a results folder as the gallery leaves it (data files, inputs, pictures) under
    ``root``; what was written: ``{"results": Path, "page_size", "ids_per_file", "models":
    [index.js's model entry + "rows": {id: row}]}``."""
    results = root / "results"
    for number, (name, _) in enumerate(IMAGES):
        if number == UNREADABLE:
            (root / "images").mkdir(parents=True, exist_ok=True)
            (root / "images" / name).write_bytes(b"this is not a picture")
        else:
            _png(root / "images" / name, (40 + 2 * number, 30), (20 * number, 120, 200 - 10 * number))
    models = []
    for m, (model, folder, methods) in enumerate(MODELS):
        rows = {number: _row(m, folder, methods, number, name, label) for number, (name, label) in enumerate(IMAGES)}
        entry = {
            "name": model,
            "dir": folder,
            "count": len(rows),
            "methods": [{"key": key, "label": label} for key, label in methods],
            "measures": MEASURES,
        }
        entry["sorts"] = [
            {"key": "name", "label": "name"},
            {"key": "confidence", "label": "confidence (top-1 probability)", "higher_is_better": True},
        ] + [
            {
                "key": f"m-{key}-{measure['key']}",
                "label": f"{label}: {measure['label']}",
                "higher_is_better": measure["higher_is_better"],
            }
            for key, label in methods
            for measure in MEASURES
        ]
        members: dict[str, list[int]] = {}
        for row in rows.values():
            for bucket in _buckets(row):
                members.setdefault(bucket, []).append(row["id"])
            for picture in row["pictures"]:
                if picture["status"] == "ok":
                    _png(results / picture["src"], (16, 12), (200, 40 * m, 10 * row["id"]))
            _script(
                results / f"gallery/data/{folder}/rows/{row['id'] // 1000}/{row['id']}.js",
                f"row/{folder}/{row['id']}",
                written_row(row),
            )
        entry["pictures"] = [
            {k: picture[k] for k in ("section", "title", "label")}
            | {"path": picture["src"].replace(f"/{rows[0]['name']}/", "/{image}/")}
            for picture in rows[0]["pictures"]
        ]
        entry["buckets"] = {bucket: len(ids) for bucket, ids in members.items()}
        labels = sorted({row["label_class"] for row in rows.values() if row["label_class"] is not None})
        entry["classes"] = [
            {"index": c, "name": CLASS_NAMES[c], "bucket": f"c{c}", "count": entry["buckets"][f"c{c}"]} for c in labels
        ]
        entry["outcomes"] = [
            {"key": key, "count": entry["buckets"].get(f"o-{key}", 0)}
            for key in ("right", "wrong", "unlabelled", "failed")
        ]
        data = results / "gallery" / "data" / folder
        for bucket, ids in members.items():
            valued = {}
            for sort in entry["sorts"]:
                values = {i: sort_value(entry, rows[i], sort["key"]) for i in ids}
                with_value = sorted((i for i in ids if values[i] is not None), key=values.__getitem__)
                order = with_value + [i for i in ids if values[i] is None]
                valued[sort["key"]] = len(with_value)
                for number, start in enumerate(range(0, len(order), IDS_PER_FILE)):
                    key = f"{bucket}/{sort['key']}/{number}"
                    part = order[start : start + IDS_PER_FILE]
                    _script(data / f"order/{bucket}/{sort['key']}.{number}.js", f"order/{folder}/{key}", part)
            meta = {"count": len(ids), "valued": valued}
            _script(data / f"order/{bucket}/meta.js", f"order/{folder}/{bucket}", meta)
        models.append(entry | {"rows": rows})
    index = {
        "title": "cnnvis gallery",
        "page_size": PAGE_SIZE,
        "ids_per_file": IDS_PER_FILE,
        "models": [{k: v for k, v in model.items() if k != "rows"} for model in models],
    }
    _script(results / "gallery/data/index.js", "index", index)
    return {"results": results, "page_size": PAGE_SIZE, "ids_per_file": IDS_PER_FILE, "models": models}


# ---------------------------------------------------------------------------------------
# What the pages should show, computed from the rows.


def expected(model: dict, cls: int | None = None, outcome: str | None = None, sort: str = "name", desc=False):
    """The ids of a filter in an order: the images with a value sorted by it (the name
    order breaks ties), descending that part read backwards; then the rest by name."""
    rows = [
        row
        for row in model["rows"].values()
        if (cls is None or row["label_class"] == cls)
        and (outcome is None or (row["failed"] if outcome == "failed" else row["outcome"] == outcome))
    ]
    rows.sort(key=lambda row: row["id"])
    valued = [row["id"] for row in rows if sort_value(model, row, sort) is not None]
    valued.sort(key=lambda i: sort_value(model, model["rows"][i], sort))
    rest = [row["id"] for row in rows if row["id"] not in valued]
    return (valued[::-1] if desc else valued) + rest


def bucket_of(cls: int | None, outcome: str | None) -> str:
    if cls is None:
        return f"o-{outcome}" if outcome else "all"
    return f"c{cls}-o-{outcome}" if outcome else f"c{cls}"


# ---------------------------------------------------------------------------------------
# The site and the browser, once for the module.


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The fixture written, the pages rendered and the static files copied as the gallery does."""
    root = tmp_path_factory.mktemp("browse")
    written = write_fixture(root)
    results = written["results"]
    templates = _templates()
    (results / "images.html").write_text(
        templates.get_template("images.html.j2").render(title="cnnvis: every image", summary_href="summary.csv")
    )
    (results / "gallery" / "image.html").write_text(
        templates.get_template("image.html.j2").render(title="an image", summary_href="summary.csv")
    )
    (results / "gallery" / "browse").mkdir(parents=True, exist_ok=True)
    for path in STATIC.iterdir():
        if path.is_file():
            shutil.copy(path, results / "gallery" / "browse" / path.name)
    return written


def index_url(site, **state) -> str:
    page = (site["results"] / "images.html").as_uri()
    return page + ("#" + urlencode(state, quote_via=quote) if state else "")


def shown(browser) -> list[int]:
    return [int(i) for i in browser.attributes("#images tbody tr", "data-id")]


def value(browser, control: str) -> str:
    return browser.evaluate(f"document.getElementById({json.dumps(control)}).value")


def shown_number(number) -> str:
    return "\u2013" if number is None else f"{number:.3f}"


def clean(browser):
    errors = browser.errors(warnings=True)
    assert errors == [], errors
    return True


def screenshot(browser, name):
    if ARTIFACTS:
        browser.screenshot(Path(ARTIFACTS) / name)


# ---------------------------------------------------------------------------------------


def test_the_first_screen_is_the_first_page_by_name(site, browser):
    browser.open(site["results"] / "images.html")
    model = site["models"][0]
    assert shown(browser) == expected(model)[:PAGE_SIZE] == [0, 1, 2, 3, 4]
    assert [value(browser, name) for name in ("model", "class", "outcome", "sort", "dir")] == [
        "tiny-cnn",
        "all",
        "all",
        "name",
        "asc",
    ]
    assert browser.texts("#range") == ["rows 1\u20135 of 12 (page 1 of 3)"]
    # outcomes with no image are not offered; the counts are the buckets'
    options = browser.texts("#outcome option")
    assert options[0] == "all (12)" and any(o.startswith("failed (2)") for o in options), options
    assert "localisation" in " ".join(browser.texts("#images thead th"))
    # the failed image has no <img>; the others' thumbnails load
    images = browser.images()
    assert len(images) == PAGE_SIZE and all(image["naturalWidth"] > 0 for image in images), images
    screenshot(browser, "browse-index.png")
    assert clean(browser)


CASES = [  # model, class, outcome, sort, direction (None: the sort's default)
    (0, 7, None, "name", None),
    (0, None, "right", "confidence", None),
    (0, None, "failed", "name", "desc"),
    (0, 3, "wrong", "name", None),
    (0, None, None, "confidence", "asc"),
    (0, None, None, "m-grad-cam-deletion", None),  # lower is better: the worst (highest) first
    (0, None, None, "m-grad-cam-deletion", "asc"),
    (0, None, None, "m-score-cam-localisation", "desc"),
    (0, 11, None, "m-score-cam-localisation", None),  # higher is better: the worst (lowest) first
    (1, None, None, "m-grad-cam-localisation", "desc"),
    (1, None, "unlabelled", "confidence", None),
    (1, 7, None, "confidence", None),
]


@pytest.mark.parametrize("case", CASES, ids=lambda case: "-".join(str(part) for part in case))
def test_filters_and_orders_in_the_address(site, browser, case):
    m, cls, outcome, sort, direction = case
    model = site["models"][m]
    default = "desc" if sort == "confidence" or sort.endswith("deletion") else "asc"
    desc = (direction or default) == "desc"
    state = {"model": model["name"], "class": f"c{cls}" if cls is not None else "all", "outcome": outcome or "all"}
    state |= {"sort": sort} | ({"dir": direction} if direction else {})
    browser.open(index_url(site, **state))
    ids = expected(model, cls, outcome, sort, desc)
    assert ids, "a case with no images tests little"
    assert shown(browser) == ids[:PAGE_SIZE]
    assert value(browser, "dir") == ("desc" if desc else "asc")
    assert f"of {len(ids)} " in browser.texts("#range")[0]
    assert clean(browser)


def test_the_form_filters_sorts_and_pages(site, browser):
    browser.open(site["results"] / "images.html")
    model = site["models"][0]
    browser.choose("#class", "c3")
    assert shown(browser) == expected(model, 3)[:PAGE_SIZE]
    assert "outcome=all" in browser.evaluate("location.hash") and "class=c3" in browser.evaluate("location.hash")
    outcomes = browser.attributes("#outcome option", "value")
    assert "unlabelled" not in outcomes and "right" in outcomes  # no unlabelled image has a class
    browser.choose("#outcome", "right")
    assert shown(browser) == expected(model, 3, "right")
    browser.choose("#outcome", "all")
    browser.choose("#class", "all")
    browser.choose("#sort", "confidence")
    assert value(browser, "dir") == "desc"
    everything = expected(model, sort="confidence", desc=True)
    assert shown(browser) == everything[:5]
    browser.press("#next-page")
    assert shown(browser) == everything[5:10]
    assert browser.texts("#range") == ["rows 6\u201310 of 12 (page 2 of 3)"]
    browser.press("#last-page")
    assert shown(browser) == everything[10:]
    assert browser.evaluate("document.getElementById('next-page').hasAttribute('href')") is False
    browser.press("#prev-page")
    assert shown(browser) == everything[5:10]
    browser.choose("#dir", "asc")  # a new order starts at its first page
    assert shown(browser) == expected(model, sort="confidence")[:5]
    browser.choose("#sort", "name")
    browser.choose("#dir", "desc")
    assert shown(browser) == expected(model, desc=True)[:5] == [11, 10, 9, 8, 7]
    # a metric sort shows its method's measures; the method's choice changes only the columns
    browser.choose("#sort", "m-score-cam-deletion")
    assert value(browser, "method") == "score-cam"
    assert shown(browser) == expected(model, sort="m-score-cam-deletion", desc=True)[:5]
    browser.choose("#method", "grad-cam")
    assert shown(browser) == expected(model, sort="m-score-cam-deletion", desc=True)[:5]
    row = model["rows"][shown(browser)[0]]
    cells = browser.texts(f"#images tbody tr[data-id='{row['id']}'] td")
    assert cells[-2:] == [shown_number(row["metrics"]["grad-cam"].get(k)) for k in ("localisation", "deletion")]
    # the other model: its own classes and methods; the back button goes back
    browser.choose("#model", site["models"][1]["name"])
    assert browser.attributes("#method option", "value") == ["grad-cam"]
    browser.act("history.back()")
    assert value(browser, "model") == "tiny-cnn"
    assert clean(browser)


def test_the_index_reads_only_what_it_shows(site, browser):
    model = site["models"][0]
    browser.open(index_url(site, model="tiny-cnn", sort="confidence", dir="desc", page="2"), fresh=True)
    ids = expected(model, sort="confidence", desc=True)
    assert shown(browser) == ids[5:10]
    # positions 5..9 descending, 11 valued: ascending places 5..1 -> files 0 and 1
    requested = sorted(unquote(path) for path in browser.evaluate("cnnvis.requested"))
    folder = "gallery/data/tiny-cnn"
    assert requested == sorted(
        [f"{folder}/order/all/meta.js", f"{folder}/order/all/confidence.0.js", f"{folder}/order/all/confidence.1.js"]
        + [f"{folder}/rows/0/{i}.js" for i in ids[5:10]]
    )
    browser.act("cnnvis.requested.length = 0; document.getElementById('next-page').click()")
    again = sorted(unquote(path) for path in browser.evaluate("cnnvis.requested"))
    assert again == sorted([f"{folder}/order/all/confidence.2.js"] + [f"{folder}/rows/0/{i}.js" for i in ids[10:]])
    assert clean(browser)


def test_an_image_page_from_the_index(site, browser):
    model = site["models"][0]
    order = expected(model, sort="confidence", desc=True)
    browser.open(index_url(site, model="tiny-cnn", sort="confidence", dir="desc"))
    href = browser.follow(f"#images tbody tr[data-id='{order[1]}'] td.thumb a")
    query = parse_qs(urlsplit(href).query)
    assert query == {
        "model": ["tiny-cnn"],
        "id": [str(order[1])],
        "list": ["all"],
        "sort": ["confidence"],
        "dir": ["desc"],
        "pos": ["1"],
        "method": ["grad-cam"],
    }
    row = model["rows"][order[1]]
    assert browser.evaluate("document.body.dataset.id") == str(row["id"])
    assert row["name"] in browser.texts("#title")[0]
    images = browser.images()
    ok_pictures = [picture for picture in row["pictures"] if picture["status"] == "ok"]
    assert len(images) == 1 + len(ok_pictures)
    assert all(image["naturalWidth"] > 0 for image in images), images
    top = browser.texts("#top5 tbody tr td.name")
    assert len(top) == len(row["top"]) == 5
    assert top[0].startswith(f"{row['prediction_name']} ({row['prediction']})")
    assert browser.attributes("#top5 tbody tr.label", "data-class") == (
        [str(row["label_class"])] if any(c == row["label_class"] for c, _, _ in row["top"]) else []
    )
    assert browser.texts("#metrics tbody th") == ["Grad-CAM", "Score-CAM"]
    headers = browser.texts("#metrics thead th")
    assert headers == ["method", "localisation \u2191", "deletion AUC \u2193"]
    cells = browser.texts("#metrics tbody tr[data-method='grad-cam'] td")
    assert cells == [shown_number(row["metrics"]["grad-cam"].get(k)) for k in ("localisation", "deletion")]
    sections = browser.texts("#pictures h3")
    assert sections == ["Grad-CAM", "Saliency", "Score-CAM"]
    # the box drawn over the input, scaled as the picture is shown
    if row["box"]:
        box = browser.evaluate(
            "(() => { const i = document.querySelector('#input img').getBoundingClientRect();"
            " const b = document.querySelector('#input .box').getBoundingClientRect();"
            " return [b.left - i.left, b.top - i.top, b.right - i.left, b.bottom - i.top, i.width]; })()"
        )
        scale = box[4] / row["size"][0]
        assert all(math.isclose(a, b * scale, abs_tol=1.5) for a, b in zip(box[:4], row["box"])), (box, row["box"])
    # previous and next follow the index's list
    prev_href = browser.evaluate("document.getElementById('prev').href")
    assert parse_qs(urlsplit(prev_href).query)["id"] == [str(order[0])]
    back = browser.evaluate("document.getElementById('back').getAttribute('href')")
    assert back.startswith("../images.html#") and "sort=confidence" in back and "dir=desc" in back
    screenshot(browser, "browse-image.png")
    assert clean(browser)
    for position in range(2, 5):
        browser.follow("#next")
        assert browser.evaluate("document.body.dataset.id") == str(order[position])
        assert parse_qs(urlsplit(browser.evaluate("location.href")).query)["pos"] == [str(position)]
        assert all(image["naturalWidth"] > 0 for image in browser.images())
        assert clean(browser)
    browser.follow("#prev")
    assert browser.evaluate("document.body.dataset.id") == str(order[3])
    assert clean(browser)


def test_the_last_of_a_filtered_list_has_no_next(site, browser):
    model = site["models"][1]
    order = expected(model, 11, None, "m-grad-cam-localisation", True)
    query = {"model": model["name"], "id": order[-1], "list": "c11", "sort": "m-grad-cam-localisation"}
    query |= {"dir": "desc", "pos": len(order) - 1}
    browser.open((site["results"] / "gallery" / "image.html").as_uri() + "?" + urlencode(query, quote_via=quote))
    assert browser.evaluate("document.body.dataset.id") == str(order[-1])
    assert browser.evaluate("document.getElementById('next').hasAttribute('href')") is False
    assert parse_qs(urlsplit(browser.evaluate("document.getElementById('prev').href")).query)["id"] == [str(order[-2])]
    assert browser.texts("#metrics tbody th") == ["Grad-CAM"]
    assert clean(browser)


def test_image_pages_by_name_and_failures(site, browser):
    model = site["models"][0]
    page = (site["results"] / "gallery" / "image.html").as_uri()
    # without a list: name order (row.prev and row.next)
    browser.open(page + "?" + urlencode({"model": "tiny-cnn", "id": 0}))
    assert browser.evaluate("document.getElementById('prev').hasAttribute('href')") is False
    assert parse_qs(urlsplit(browser.evaluate("document.getElementById('next').href")).query) == {
        "model": ["tiny-cnn"],
        "id": ["1"],
    }
    assert clean(browser)
    # the image that cannot be read: no picture, its reason; every other picture says why it is missing
    browser.open(page + "?" + urlencode({"model": "tiny-cnn", "id": UNREADABLE}, quote_via=quote))
    assert browser.evaluate("document.images.length") == 0
    assert "cannot identify image file" in browser.texts("#input")[0]
    assert "cannot identify image file" in browser.texts("#failures li")[0]
    assert len(browser.texts("#pictures .placeholder")) == len(model["rows"][UNREADABLE]["pictures"])
    assert browser.texts("#top5") == ["No predictions."]
    assert set(browser.texts("#metrics tbody td")) == {"\u2013"}
    assert clean(browser)
    # a failed result: its picture's place says why; the failure is listed
    browser.open(page + "?" + urlencode({"model": "tiny-cnn", "id": RESULT_FAILED}, quote_via=quote))
    assert browser.texts("#pictures [data-section='score-cam'] .placeholder") == ["failed: CUDA out of memory"]
    assert browser.texts("#failures li") == ["score-cam: failed \u2014 CUDA out of memory"]
    assert all(image["naturalWidth"] > 0 for image in browser.images())
    # the other model, named as views.html links it (percent-encoded), with odd names throughout
    other = site["models"][1]
    browser.open(page + f"?model={quote(other['name'], safe='')}&id=2")
    assert other["rows"][2]["name"] in browser.texts("#title")[0]
    assert all(image["naturalWidth"] > 0 for image in browser.images())
    assert clean(browser)
    # an unknown image: a message, not an error (opened twice: the same address loads again)
    for _ in range(2):
        browser.open(page + "?model=tiny-cnn&id=99")
        assert "no image number 99" in browser.texts("#status")[0]
    assert clean(browser)


def test_no_match_and_an_image_that_cannot_be_shown(site, browser):
    # a filter no image passes: no file is read for it, and the page says so
    browser.open(index_url(site, model="tiny-cnn", **{"class": "c3"}, outcome="unlabelled"))
    assert shown(browser) == []
    assert browser.texts("#status") == ["No images match."]
    assert value(browser, "outcome") == "unlabelled"
    # the unreadable image's row: text instead of a thumbnail, and its reason
    browser.open(index_url(site, model="tiny-cnn", page="2"))
    assert shown(browser) == [5, 6, 7, 8, 9]
    assert browser.texts(f"#images tr[data-id='{UNREADABLE}'] td.thumb") == ["cannot be shown"]
    assert browser.evaluate(f"document.querySelectorAll(\"#images tr[data-id='{UNREADABLE}'] img\").length") == 0
    assert "cannot identify image file" in browser.texts(f"#images tr[data-id='{UNREADABLE}'] td.failed")[0]
    assert all(image["naturalWidth"] > 0 for image in browser.images())
    assert clean(browser)


def test_the_loader_says_what_went_wrong_and_loads_sixteen_at_a_time(site, browser):
    browser.open(site["results"] / "images.html", fresh=True)
    rows = [[model["dir"], list(model["rows"])] for model in site["models"]]  # 19 of them not loaded yet
    browser.evaluate(f"window.rowsToLoad = {json.dumps(rows)}")
    most = browser.evaluate(
        """(async () => {
          let most = 0;
          const watch = new MutationObserver(() => {
            most = Math.max(most, document.head.querySelectorAll('script').length);
          });
          watch.observe(document.head, {childList: true});
          await Promise.all(rowsToLoad.flatMap(([dir, ids]) => ids.map(id =>
            cnnvis.load('gallery/data/' + cnnvis.url(dir + '/rows/0/' + id + '.js'), 'row/' + dir + '/' + id))));
          watch.disconnect();
          return most;
        })()""",
        await_promise=True,
    )
    assert most == 16
    assert clean(browser)
    folder = site["models"][0]["dir"]
    wrong_key = browser.evaluate(
        f"cnnvis.load('gallery/data/{folder}/rows/0/1.js', 'another key').then(() => 'loaded', e => e.message)",
        await_promise=True,
    )
    assert (
        wrong_key == f'gallery/data/{folder}/rows/0/1.js ran but handed over "row/{folder}/1" instead of "another key"'
    )
    missing = browser.evaluate(
        "cnnvis.load('gallery/data/no%20such%20file.js', 'x').then(() => 'loaded', e => e.message)", await_promise=True
    )
    assert missing == "could not load gallery/data/no such file.js (missing or unreadable)"
    assert any("no%20such%20file.js" in error for error in browser.errors())  # the browser's own report
