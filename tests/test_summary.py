"""Predictions, labels and summary.csv: a data set explained by its true classes."""

from __future__ import annotations

import csv
import io
import json

import pytest
import torch
from click.testing import CliRunner
from conftest import CAT, REPO
from PIL import Image

from cnnvis_tasks.cli import cli
from cnnvis_tasks.io.images import load_image
from cnnvis_tasks.workflow.plan import PREDICTIONS_PATTERN, RECORD_PATTERN
from cnnvis_tasks.workflow.summary import accuracy, summarize

COFFEE = REPO / "images" / "coffee.png"


def read_csv(path):
    return list(csv.DictReader(io.StringIO(path.read_text())))


def test_predict_writes_top1_probabilities_and_whether_the_label_agrees(tmp_path, embedded_model):
    broken = tmp_path / "broken.png"
    broken.write_text("no")
    out = tmp_path / "p.csv"
    result = CliRunner().invoke(
        cli,
        [
            "predict",
            "--image",
            str(CAT),
            "--image",
            str(COFFEE),
            "--image",
            str(broken),
            "--label",
            "n02123045",
            "--label",
            "espresso",
            "--label",
            "",
            "--out",
            str(out),
            "--device",
            "cpu",
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = read_csv(out)
    with torch.inference_mode():
        logits = embedded_model.module(embedded_model.normalize(torch.stack([load_image(CAT)])))
    expected = torch.softmax(logits, dim=1)[0]
    assert rows[0]["top1"] == str(int(expected.argmax())) and rows[0]["label_class"] == "281"
    assert abs(float(rows[0]["probability"]) - float(expected.max())) < 1e-5
    assert rows[0]["correct"] == ("yes" if int(expected.argmax()) == 281 else "no")
    assert rows[1]["label_name"] == "espresso" and rows[1]["correct"] == "yes" and rows[1]["top1_name"] == "espresso"
    assert rows[2]["status"] == "failed" and "not a recognised image file" in rows[2]["reason"]
    assert rows[2]["top1"] == "" and rows[2]["correct"] == "" and rows[2]["top5"] == ""
    # the five most probable classes, most probable first, with their names (the image page's top-5)
    top5 = json.loads(rows[0]["top5"])
    values, classes = expected.topk(5)
    assert [entry[0] for entry in top5] == classes.tolist()
    assert [entry[1] for entry in top5] == [embedded_model.class_name(c) for c in classes.tolist()]
    assert max(abs(entry[2] - value) for entry, value in zip(top5, values.tolist())) < 1e-5


def test_summary_joins_the_check_the_predictions_and_the_records(tmp_path):
    root = tmp_path / "results"
    (root / "records" / "m" / "predictions").mkdir(parents=True)
    (root / "records" / "m" / "saliency" / "vanilla").mkdir(parents=True)
    (root / "records" / "m" / "predictions" / "chunk000of001.csv").write_text(
        "image,label,label_class,label_name,top1,top1_name,probability,correct,status,reason\n"
        "ds/cat/1.png,cat,281,tabby,281,tabby,0.9,yes,ok,\n"
        "ds/cat/2.png,cat,281,tabby,285,Egyptian cat,0.5,no,ok,\n"
        "ds/x.png,,,,3,tiger shark,0.1,,ok,\n"
    )
    (root / "records" / "m" / "saliency" / "vanilla" / "chunk000of001.json").write_text(
        json.dumps(
            {
                "rows": [
                    {"image": "ds/cat/1.png", "setting": "vanilla", "status": "ok", "reason": None},
                    {"image": "ds/cat/2.png", "setting": "vanilla", "status": "failed", "reason": "out of memory"},
                    {"image": "ds/tried.png", "setting": "vanilla", "status": "failed", "reason": "truncated"},
                ]
            }
        )
    )
    spec = {
        "models": ["m"],
        "tables": [{"section": "saliency", "table": "m", "per_image": True, "failures": {"x.png": "too large"}}],
        "chunks": ["chunk000of001"],
        "settings": [{"model": "m", "technique": "saliency", "setting": "vanilla"}],
        "records": RECORD_PATTERN,
        "predictions": PREDICTIONS_PATTERN,
    }
    statuses = [
        {"name": "cat/1.png", "path": "ds/cat/1.png", "status": "ok", "reason": None, "label": "cat"},
        {"name": "cat/2.png", "path": "ds/cat/2.png", "status": "ok", "reason": None, "label": "cat"},
        {"name": "x.png", "path": "ds/x.png", "status": "ok", "reason": None, "label": None},
        {"name": "bad.png", "path": "ds/bad.png", "status": "failed", "reason": "not an image", "label": None},
        # failed the image check, yet tried by its job (the chunk layout): the job's reason
        {"name": "tried.png", "path": "ds/tried.png", "status": "failed", "reason": "header", "label": None},
    ]
    header, rows = summarize(spec, statuses, root)
    table = [dict(zip(header, row)) for row in rows]
    assert [row["m correct"] for row in table] == ["yes", "no", "", "", ""]
    assert [row["m saliency vanilla status"] for row in table] == ["ok", "failed", "left out", "left out", "failed"]
    assert table[3]["m saliency vanilla reason"] == "the image cannot be used"
    assert table[4]["m saliency vanilla reason"] == "truncated" and table[4]["reason"] == "header"
    assert table[1]["m saliency vanilla reason"] == "out of memory" and table[2]["m saliency vanilla reason"] == (
        "too large"
    )
    assert table[3]["reason"] == "not an image"
    assert accuracy(header, rows, "m") == (1, 2)


@pytest.mark.parametrize("bad", ["results: /", "results: ..", "results: ."])
def test_results_must_be_a_folder_of_its_own(bad, tmp_path):
    from cnnvis_tasks.workflow import ConfigError, check_results_folder

    with pytest.raises(ConfigError, match="config error: results"):
        check_results_folder(bad.split(": ")[1])
    check_results_folder("results/run 1")
    check_results_folder(str(tmp_path / "elsewhere"))


def test_a_gallery_shows_accuracy_skipped_files_and_failures(tmp_path):
    from cnnvis_tasks.gallery import build_gallery

    images = [
        {"name": "cat/1.png", "path": "ds/cat/1.png", "status": "ok"},
        {"name": "bad.png", "path": "ds/bad.png", "status": "failed", "reason": "not an image"},
        {
            "name": "ds/pipe.png",
            "path": "ds/pipe.png",
            "status": "skipped",
            "reason": "a named pipe (FIFO), not a file",
        },
    ]
    page = build_gallery(
        [], images=images, summary={"href": "summary.csv", "accuracy": [{"model": "m", "right": 7, "labelled": 8}]}
    )["index.html"]
    assert "2 input images, 1 usable, 1 failed" in page and "not an image" in page
    assert "1 other file of the image source skipped" in page and "a named pipe (FIFO), not a file" in page
    assert '<a href="summary.csv">summary.csv</a>' in page and "m: 7 of 8 labelled images right (87.5 %)" in page
    Image.new("RGB", (2, 2)).save(tmp_path / "x.png")
