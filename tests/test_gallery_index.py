"""The gallery's image index and views, from a hand-made run: which images each filter
holds, the orders the index reads, an image's page data, and the views' lists."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from cnnvis_tasks.gallery import SECTION_TITLES
from cnnvis_tasks.gallery.browse import catalogue
from cnnvis_tasks.gallery.index_files import write_index_data
from cnnvis_tasks.gallery.views import box_share, build_views, outside_object
from cnnvis_tasks.workflow.tables import technique_of_file

METRICS = technique_of_file(Path("metrics.csv")).table
MODELS = ("m1", "m2")
# name, label class, m1's top-1, its probability, result status, box (x0, y0, x1, y1) on a 100 x 50 image
IMAGES = [
    ("cat/a b{1}.png", 1, 1, 0.9, "ok", (0, 0, 50, 50)),
    ("cat/c.png", 1, 2, 0.8, "ok", (0, 0, 100, 50)),
    ("cat/d.png", 1, 2, 0.95, "failed", None),
    ("dog/e.png", 2, 2, 0.6, "ok", (10, 10, 30, 20)),
    ("dog/f.png", 2, 1, 0.4, "ok", (0, 0, 25, 50)),
    ("dog/g.png", None, 1, 0.7, "ok", None),
]
BROKEN = "dog/broken.png"
# m1's localisation and deletion per image for Grad-CAM (None: not scored)
LOCALISATION = {"cat/a b{1}.png": 0.3, "cat/c.png": 0.9, "dog/e.png": 0.1, "dog/f.png": 0.1, "dog/g.png": None}
DELETION = {"cat/a b{1}.png": 0.2, "cat/c.png": 0.1, "dog/e.png": 0.5, "dog/f.png": None, "dog/g.png": 0.3}


def read_script(path: Path):
    """The key and value a data file hands to cnnvis.receive."""
    match = re.fullmatch(r'cnnvis\.receive\(("[^"]*"),(.*)\);\n', path.read_text(encoding="utf-8"), re.S)
    assert match, path
    return json.loads(match.group(1)), json.loads(match.group(2))


def make_run(root: Path):
    statuses = [
        {
            "name": name,
            "path": str(root.parent / "data" / name),
            "status": "ok",
            "reason": None,
            "label": str(label or ""),
            "size": [100, 50],
            **({"box": list(box)} if box else {}),
        }
        for name, label, _, _, _, box in IMAGES
    ] + [
        {
            "name": BROKEN,
            "path": str(root.parent / "data" / BROKEN),
            "status": "failed",
            "reason": "truncated",
            "label": "2",
        }
    ]
    spec = {
        "models": list(MODELS),
        "chunk_count": 1,
        "chunks": ["chunk000of001"],
        "predictions": "records/{model}/predictions/{chunk}.csv",
        "settings": [{"model": m, "technique": "grad-cam", "setting": "auto"} for m in MODELS],
        "tables": [
            {
                "section": "grad-cam",
                "table": m,
                "per_image": True,
                "failures": {},
                "columns": [
                    {"key": "auto", "label": [m, "auto"], "setting": "auto", "path": f"{m}/grad-cam/{{image}}/auto.png"}
                ],
            }
            for m in MODELS
        ],
    }
    header = ["image", "name", "status", "reason", "label"]
    for m in MODELS:
        header += [f"{m} {c}" for c in ("label class", "label name", "top-1", "top-1 name", "probability", "correct")]
    header += [f"{m} grad-cam auto {part}" for m in MODELS for part in ("status", "reason")]
    rows = []
    for name, label, top1, probability, result, _ in IMAGES:
        row = [f"data/{name}", name, "ok", "", str(label or "")]
        for m in MODELS:
            guess = top1 if m == "m1" else label or 1  # m2 is always right
            correct = "" if label is None else ("yes" if guess == label else "no")
            row += [
                str(label or ""),
                f"class{label}" if label else "",
                str(guess),
                f"class{guess}",
                str(probability),
                correct,
            ]
        row += [result, "out of memory" if result != "ok" else "", "ok", ""]
        rows.append(row)
    rows.append([f"data/{BROKEN}", BROKEN, "failed", "truncated", "2", *[""] * 12, "failed", "truncated", "", ""])
    top = {("m1", "cat/c.png"): [[2, "class2", 0.8], [1, "class1", 0.15]]}
    metrics = [
        {
            "model": "m1",
            "method": "Grad-CAM",
            "explain": "grad-cam",
            "image": name,
            "target": "1",
            "localisation": "" if LOCALISATION[name] is None else str(LOCALISATION[name]),
            "deletion_auc": "" if DELETION[name] is None else str(DELETION[name]),
        }
        for name in LOCALISATION
    ] + [
        {
            "model": "m1",
            "method": "Grad-CAM++",
            "explain": "grad-cam-plus-plus",
            "image": "cat/c.png",
            "deletion_auc": "0.7",
        }
    ]
    found = catalogue(spec, statuses, (header, rows), top, [(METRICS, metrics)], root, SECTION_TITLES)
    return found


@pytest.fixture
def run(tmp_path):
    found = make_run(tmp_path / "results")
    written = write_index_data(tmp_path / "results" / "gallery" / "data", found, "test")
    return tmp_path / "results" / "gallery" / "data", found, written


def order(data: Path, model: str, bucket: str, sort: str) -> tuple[list[int], int]:
    _, meta = read_script(data / model / "order" / bucket / "meta.js")
    ids = []
    for number in range(len(list((data / model / "order" / bucket).glob(f"{sort}.*.js")))):
        key, part = read_script(data / model / "order" / bucket / f"{sort}.{number}.js")
        assert key == f"order/{model}/{bucket}/{sort}/{number}"
        ids += part
    return ids, meta["valued"][sort]


def test_filters_hold_the_images_of_their_class_and_outcome(run):
    data, found, _ = run
    _, index = read_script(data / "index.js")
    m1 = index["models"][0]
    names = [image["name"] for image in found.images]
    assert names == sorted(names) and len(names) == 7  # ids are the name order
    assert m1["outcomes"] == [
        {"key": "right", "count": 2},  # a b{1} (1 -> 1) and e (2 -> 2)
        {"key": "wrong", "count": 3},  # c, d (cat taken for dog) and f
        {"key": "unlabelled", "count": 1},
        {"key": "failed", "count": 2},  # the broken file, and d, whose Grad-CAM failed
    ]
    assert [(c["index"], c["count"]) for c in m1["classes"]] == [(1, 3), (2, 2)]
    assert m1["buckets"]["c1-o-wrong"] == 2 and m1["buckets"]["c1-o-failed"] == 1
    wrong, _ = order(data, "m1", "c1-o-wrong", "name")
    assert [names[i] for i in wrong] == ["cat/c.png", "cat/d.png"]
    assert index["models"][1]["outcomes"][1] == {"key": "wrong", "count": 0}


def test_orders_put_the_images_without_a_value_last(run):
    data, found, _ = run
    names = [image["name"] for image in found.images]
    ids, valued = order(data, "m1", "all", "m-Grad-CAM-localisation")
    # ascending, ties (e and f at 0.1) in name order, then the images without a value by name
    assert [names[i] for i in ids[:valued]] == ["dog/e.png", "dog/f.png", "cat/a b{1}.png", "cat/c.png"]
    assert [names[i] for i in ids[valued:]] == ["cat/d.png", BROKEN, "dog/g.png"]
    ids, valued = order(data, "m1", "o-wrong", "confidence")
    assert [names[i] for i in ids] == ["dog/f.png", "cat/c.png", "cat/d.png"] and valued == 3
    ids, valued = order(data, "m1", "all", "m-Grad-CAMpp-deletion_auc")  # Grad-CAM++ does not take Grad-CAM's key
    assert [names[i] for i in ids[:valued]] == ["cat/c.png"]


def test_an_image_page_has_its_top5_box_pictures_metrics_and_failures(run):
    data, found, _ = run
    names = [image["name"] for image in found.images]
    c = names.index("cat/c.png")
    key, row = read_script(data / "m1" / "rows" / "0" / f"{c}.js")
    assert key == f"row/m1/{c}"
    assert row["top"] == [[2, "class2", 0.8], [1, "class1", 0.15]]
    assert row["box"] == [0, 0, 100, 50] and row["size"] == [100, 50] and row["image"] == "../data/cat/c.png"
    assert row["outcome"] == "wrong" and row["prediction"] == 2 and row["probability"] == 0.8
    assert row["scores"] == {
        "Grad-CAM": {"deletion_auc": 0.1, "localisation": 0.9},
        "Grad-CAMpp": {"deletion_auc": 0.7},
    }
    assert row["chunk"] == "chunk000of001" and row["picture_problems"] == {}
    _, index = read_script(data / "index.js")
    assert index["models"][0]["pictures"] == [
        {
            "section": "grad-cam",
            "title": SECTION_TITLES["grad-cam"],
            "label": ["auto"],
            "path": "m1/grad-cam/{image}/auto.png",
        }
    ]
    assert (row["prev"], row["next"]) == (c - 1, c + 1)
    _, failed = read_script(data / "m1" / "rows" / "0" / f"{names.index('cat/d.png')}.js")
    assert failed["failed"] and failed["failures"] == [
        {"result": "grad-cam auto", "status": "failed", "reason": "out of memory"}
    ]
    assert failed["picture_problems"] == {"0": ["failed", "out of memory"]}
    _, broken = read_script(data / "m1" / "rows" / "0" / f"{names.index(BROKEN)}.js")
    assert broken["outcome"] == "failed" and broken["failures"][0]["reason"] == "truncated"
    assert broken["picture_problems"] == {"0": ["failed", "truncated"]} and not broken["scores"]
    assert (broken["prev"], broken["next"]) == (2, 4) and broken["top"] == []
    _, last = read_script(data / "m2" / "rows" / "0" / "6.js")
    assert last["name"] == "dog/g.png" and last["next"] is None and last["outcome"] == "unlabelled"


def test_views_list_mistakes_by_confidence_and_classes_by_how_little_lies_inside(run):
    _, found, _ = run
    views = build_views(found, {}, {}, {})
    m1 = views[0]
    assert [image["name"] for image in m1["mistakes"]] == ["cat/d.png", "cat/c.png", "dog/f.png"]
    assert m1["mistakes"][0]["href"].startswith("gallery/image.html?model=m1&id=")
    (block,) = m1["localisation"]
    assert block["method"] == "Grad-CAM"
    classes = {entry["class"]: entry for entry in block["classes"]}
    # dog: e (box 20 x 10 of 100 x 50: 0.04) and f (0.25); cat: a b{1} (0.5) and c (1.0)
    assert classes[2]["box_share"] == pytest.approx((0.04 + 0.25) / 2)
    assert classes[2]["mean"] == pytest.approx(0.1) and classes[1]["mean"] == pytest.approx(0.6)
    assert [entry["class"] for entry in block["classes"]] == [1, 2]  # cat gains 0.6 - 0.75 < dog's 0.1 - 0.145
    assert [image["name"] for image in classes[1]["lowest"]] == ["cat/a b{1}.png", "cat/c.png"]
    assert box_share({"box": [90, 40, 200, 200], "size": [100, 50]}) == pytest.approx(10 * 10 / 5000)
    assert outside_object(found, "m2", "Grad-CAM", "localisation") == []


def test_a_failed_write_keeps_the_old_index(tmp_path, monkeypatch, run):
    data, found, _ = run
    before = sorted(path.relative_to(data) for path in data.rglob("*"))
    import cnnvis_tasks.gallery.index_files as index_files

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(index_files, "_write_model", broken)
    with pytest.raises(OSError, match="disk full"):
        write_index_data(data, found, "test")
    assert sorted(path.relative_to(data) for path in data.rglob("*")) == before
    assert [p.name for p in data.parent.iterdir()] == ["data"]  # no temporary folder left beside it


def test_without_a_summary_no_usable_image_counts_as_failed(tmp_path):
    statuses = [
        {"name": "a.png", "path": str(tmp_path / "a.png"), "status": "ok"},
        {"name": "b.png", "path": str(tmp_path / "b.png"), "status": "failed", "reason": "truncated"},
        {"name": "c.txt", "path": str(tmp_path / "c.txt"), "status": "skipped"},
    ]
    found = catalogue({"models": ["m"]}, statuses, None, {}, [], tmp_path, SECTION_TITLES)
    assert [(e.name, e.outcome, e.failed) for e in found.models["m"]] == [
        ("a.png", "unlabelled", False),
        ("b.png", "failed", True),
    ]


def test_views_list_classes_worst_first_and_confusions_with_their_images(run):
    _, found, _ = run
    per_class = {
        "m1": [
            {
                "model": "m1",
                "class": "1",
                "name": "class1",
                "images": "3",
                "right": "1",
                "accuracy": "0.333333",
                "low": "0.06",
                "high": "0.79",
                "mistaken_for": "2",
                "mistaken_for_name": "class2",
                "mistaken_count": "2",
            },
            {
                "model": "m1",
                "class": "2",
                "name": "class2",
                "images": "2",
                "right": "1",
                "accuracy": "0.5",
                "low": "0.09",
                "high": "0.91",
                "mistaken_for": "1",
                "mistaken_for_name": "class1",
                "mistaken_count": "1",
            },
        ]
    }
    confusion = {
        "m1": [
            {
                "model": "m1",
                "label class": "1",
                "label name": "class1",
                "predicted class": "2",
                "predicted name": "class2",
                "count": "2",
            },
            {
                "model": "m1",
                "label class": "2",
                "label name": "class2",
                "predicted class": "2",
                "predicted name": "class2",
                "count": "1",
            },
        ]
    }
    (m1, _) = build_views(found, per_class, confusion, {"m1": "confusion/m1.png"})
    assert [row["class"] for row in m1["classes"]] == ["1", "2"]  # the worst first
    assert m1["classes"][0]["href"] == "images.html#model=m1&class=c1&outcome=wrong"
    (pair,) = m1["confusions"]  # the right answers (the diagonal) are not confusions
    names = [image["name"] for image in found.images]
    assert [image["name"] for image in pair["examples"]] == ["cat/c.png", "cat/d.png"]
    assert pair["examples"][0]["href"] == f"gallery/image.html?model=m1&id={names.index('cat/c.png')}"
    assert m1["picture"] == "confusion/m1.png"


def test_a_top5_with_nan_is_left_out_and_the_rest_kept(tmp_path):
    from cnnvis_tasks.cli.gallery_pages import read_top

    folder = tmp_path / "records" / "m" / "predictions"
    folder.mkdir(parents=True)
    (folder / "chunk000of001.csv").write_text(
        'image,top5\nimgs/a.png,"[[3, ""cat"", 0.9], [4, ""dog"", 0.05]]"\n'
        'imgs/b.png,"[[1, ""x"", NaN]]"\nimgs/c.png,\n'
    )
    spec = {"models": ["m"], "chunks": ["chunk000of001"], "predictions": "records/{model}/predictions/{chunk}.csv"}
    statuses = [{"name": n, "path": f"imgs/{n}"} for n in ("a.png", "b.png", "c.png")]
    assert read_top(spec, statuses, tmp_path) == {
        ("m", "a.png"): [[3, "cat", 0.9], [4, "dog", 0.05]],
        ("m", "b.png"): [],
    }
