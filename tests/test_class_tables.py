"""per-class.csv, confusion.csv and the confusion pictures, from a hand-made summary.csv."""

import csv
import math

import pytest
from click.testing import CliRunner
from PIL import Image
from scipy.stats import binomtest

from cnnvis_tasks.cli import cli
from cnnvis_tasks.io.outputs import read_metadata
from cnnvis_tasks.workflow.class_tables import (
    CONFUSION_COLUMNS,
    PER_CLASS_COLUMNS,
    confused_classes,
    confusion,
    models_of,
    per_class,
    wilson,
    write_tables,
)
from cnnvis_tasks.workflow.summary import PREDICTION_COLUMNS, read_summary, to_csv

NAMES = {1: "goldfish", 2: "great white shark", 3: "tiger shark", 7: "cock", 967: "espresso"}
MODELS = ("alpha", "beta")
HEADER = ["image", "name", "status", "reason", "label"] + [
    f"{model} {column}" for model in MODELS for column in PREDICTION_COLUMNS
]
HEADER += ["alpha saliency status", "alpha saliency reason"]


def prediction(label: int | None, top: int | None) -> list:
    """One model's columns of a summary row (label class, label name, top-1, its name, probability, correct)."""
    return [
        "" if label is None else label,
        NAMES.get(label, ""),
        "" if top is None else top,
        NAMES.get(top, ""),
        "" if top is None else "0.5",
        "" if label is None or top is None else ("yes" if label == top else "no"),
    ]


def row(name: str, label: int | None, alpha: int | None, beta: int | None, status: str = "ok") -> list:
    return [f"/data/{name}.jpg", name, status, "" if status == "ok" else "truncated", NAMES.get(label, "")] + [
        *prediction(label, alpha),
        *prediction(label, beta),
        "ok",
        "",
    ]


def summary_rows() -> list[list]:
    """Goldfish (1): 10 images, alpha 8 right, once shark (2), once cock (7); beta all right.
    Shark (2): 5 images, alpha 2 right, 3 times goldfish; beta 4 right, once tiger shark (3).
    Espresso (967): 3 images, alpha never right (twice goldfish, once tiger shark); beta all right.
    Then what must be left out: unlabelled images, failed images, a label no class matched."""
    alpha = {1: [1] * 8 + [2, 7], 2: [2, 2, 1, 1, 1], 967: [1, 3, 1]}
    beta = {1: [1] * 10, 2: [2, 2, 3, 2, 2], 967: [967] * 3}
    rows = [
        row(f"{NAMES[label]}-{index}", label, alpha[label][index], beta[label][index])
        for label in (967, 1, 2)  # not in class order: the tables sort
        for index in range(len(alpha[label]))
    ]
    rows += [row("unlabelled-0", None, 2, 2), row("unlabelled-1", None, 967, 1)]
    rows += [row("failed-0", 1, 2, 2, status="failed"), row("failed-1", 967, None, None, status="failed")]
    odd = row("label-not-understood", None, 2, 2)
    odd[4] = "not a class"
    rows.append(odd)
    return rows


def written_summary(tmp_path, rows=None):
    path = tmp_path / "summary.csv"
    path.write_text(to_csv(HEADER, summary_rows() if rows is None else rows), encoding="utf-8")
    return path


def read_table(path):
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.reader(handle))


def wilson_reference(right, total):
    """The Wilson interval as scipy computes it (an independent implementation)."""
    interval = binomtest(right, total).proportion_ci(confidence_level=0.95, method="wilson")
    return interval.low, interval.high


def test_wilson_interval_matches_known_values_and_scipy():
    assert wilson(8, 10) == pytest.approx((0.490162, 0.943318), abs=5e-7)
    assert wilson(0, 3)[0] == 0.0 and wilson(3, 3)[1] == 1.0  # exact at the ends
    for right, total in ((8, 10), (2, 5), (0, 3), (10, 10), (1, 1), (37, 120)):
        assert wilson(right, total) == pytest.approx(wilson_reference(right, total), abs=1e-12)
    # by hand for 2 of 5: centre (p + z^2/2n) / (1 + z^2/n), half-width z sqrt(p q / n + z^2/4n^2) / (1 + z^2/n)
    z, p, n = 1.959963984540054, 0.4, 5
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    assert wilson(2, 5) == pytest.approx((centre - half, centre + half), abs=1e-15)


def test_per_class_counts_accuracy_interval_and_mistakes():
    rows = summary_rows()
    assert models_of(HEADER) == ["alpha", "beta"]
    alpha = per_class(HEADER, rows, "alpha")
    assert [(e["class"], e["name"], e["images"], e["right"]) for e in alpha] == [
        (1, "goldfish", 10, 8),
        (2, "great white shark", 5, 2),
        (967, "espresso", 3, 0),
    ]
    assert [e["accuracy"] for e in alpha] == [0.8, 0.4, 0.0]
    for entry in alpha:
        assert (entry["low"], entry["high"]) == pytest.approx(wilson_reference(entry["right"], entry["images"]))
    assert (alpha[0]["low"], alpha[0]["high"]) == pytest.approx((0.490162, 0.943318), abs=5e-7)
    # goldfish: once shark (2), once cock (7): the tie goes to the smaller index
    assert [(e["mistaken_for"], e["mistaken_for_name"], e["mistaken_count"]) for e in alpha] == [
        (2, "great white shark", 1),
        (1, "goldfish", 3),
        (1, "goldfish", 2),
    ]
    beta = per_class(HEADER, rows, "beta")
    assert [(e["class"], e["images"], e["right"], e["mistaken_for"], e["mistaken_count"]) for e in beta] == [
        (1, 10, 10, "", 0),
        (2, 5, 4, 3, 1),
        (967, 3, 3, "", 0),
    ]
    assert beta[1]["mistaken_for_name"] == "tiger shark" and beta[0]["mistaken_for_name"] == ""
    assert beta[0]["high"] == 1.0 and beta[0]["low"] == pytest.approx(wilson_reference(10, 10)[0])
    assert all(entry["model"] == "beta" for entry in beta)


def test_confusion_puts_the_largest_mistakes_first_then_the_diagonal():
    pairs = confusion(HEADER, summary_rows(), "alpha")
    assert [(p["label class"], p["predicted class"], p["count"]) for p in pairs] == [
        (2, 1, 3),
        (967, 1, 2),
        (1, 2, 1),  # ties: by label class, then predicted class
        (1, 7, 1),
        (967, 3, 1),
        (1, 1, 8),
        (2, 2, 2),
    ]
    assert pairs[0]["label name"] == "great white shark" and pairs[0]["predicted name"] == "goldfish"
    assert pairs[3]["predicted name"] == "cock"  # a name only the predictions give
    assert sum(p["count"] for p in pairs) == 18  # the usable labelled images, nothing else
    # the picture's classes: walking the mistakes largest first
    assert confused_classes(pairs) == [2, 1, 967, 7, 3]
    assert confused_classes(pairs, limit=3) == [2, 1, 967]
    beta = confusion(HEADER, summary_rows(), "beta")
    assert [(p["label class"], p["predicted class"], p["count"]) for p in beta] == [
        (2, 3, 1),
        (1, 1, 10),
        (2, 2, 4),
        (967, 967, 3),
    ]


def test_at_most_twenty_classes_are_drawn():
    pairs = [
        {"label class": 2 * k, "predicted class": 2 * k + 1, "count": 100 - k} for k in range(15)
    ]  # 15 pairs of new classes: 10 fit
    chosen = confused_classes(pairs)
    assert len(chosen) == 20 and chosen[:4] == [0, 1, 2, 3]


def check_png(path, min_side):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG" and min(image.size) >= min_side
        return image.size


def test_write_tables_writes_both_tables_and_a_picture_per_model(tmp_path):
    out = tmp_path / "results" / "per-class.csv"
    written = write_tables(*read_summary(written_summary(tmp_path)), out)
    folder = out.parent
    assert written == [
        out,
        folder / "confusion.csv",
        folder / "confusion" / "alpha.png",
        folder / "confusion" / "beta.png",
    ]
    table = read_table(out)
    assert table[0] == list(PER_CLASS_COLUMNS)
    assert table[1] == [
        "alpha",
        "1",
        "goldfish",
        "10",
        "8",
        "0.8",
        "0.490162",
        "0.943318",
        "2",
        "great white shark",
        "1",
    ]
    assert table[3] == ["alpha", "967", "espresso", "3", "0", "0", "0", "0.561497", "1", "goldfish", "2"]
    assert table[4][:8] == ["beta", "1", "goldfish", "10", "10", "1", "0.722467", "1"]
    assert table[4][8:] == ["", "", "0"]
    assert len(table) == 1 + 3 + 3
    pairs = read_table(folder / "confusion.csv")
    assert pairs[0] == list(CONFUSION_COLUMNS)
    assert pairs[1] == ["alpha", "2", "great white shark", "1", "goldfish", "3"]
    assert [line[0] for line in pairs[1:]] == ["alpha"] * 7 + ["beta"] * 4
    alpha_size = check_png(folder / "confusion" / "alpha.png", 300)
    assert read_metadata(folder / "confusion" / "alpha.png") == {
        "model": "alpha",
        "images": 18,
        "classes": [2, 1, 967, 7, 3],
    }
    beta_size = check_png(folder / "confusion" / "beta.png", 300)
    assert alpha_size[0] > beta_size[0] and alpha_size[1] > beta_size[1]  # 5 classes drawn against 2
    assert not list(folder.rglob("*.tmp"))


def test_a_model_without_mistakes_gets_a_note(tmp_path):
    rows = [row(f"goldfish-{k}", 1, 1, 1) for k in range(4)]
    out = tmp_path / "per-class.csv"
    write_tables(*read_summary(written_summary(tmp_path, rows)), out)
    size = check_png(tmp_path / "confusion" / "alpha.png", 50)
    assert size[0] > size[1]  # a one-line note, not a matrix
    assert read_metadata(tmp_path / "confusion" / "alpha.png")["classes"] == []
    assert read_table(tmp_path / "confusion.csv")[1] == ["alpha", "1", "goldfish", "1", "goldfish", "4"]


def test_class_summary_command(tmp_path):
    summary = written_summary(tmp_path)
    out = tmp_path / "per-class.csv"
    result = CliRunner().invoke(cli, ["class-summary", "--summary", str(summary), "--out", str(out)])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("class-summary:")]
    assert lines == [
        "class-summary: alpha: 3 classes, worst: espresso 0.0 % [0.0 %, 56.1 %] (0 of 3)",
        "class-summary: beta: 3 classes, worst: great white shark 80.0 % [37.6 %, 96.4 %] (4 of 5)",
    ]
    assert out.is_file() and (tmp_path / "confusion.csv").is_file()
    assert {p.name for p in (tmp_path / "confusion").iterdir()} == {"alpha.png", "beta.png"}
    help_text = CliRunner().invoke(cli, ["class-summary", "--help"]).output
    assert "confusion.csv" in help_text and "Wilson" in help_text


def test_a_summary_without_labels_gives_empty_tables_and_notes(tmp_path):
    rows = [row(f"image-{k}", None, 2, 7) for k in range(3)] + [row("bad", None, None, None, status="failed")]
    out = tmp_path / "per-class.csv"
    result = CliRunner().invoke(
        cli, ["class-summary", "--summary", str(written_summary(tmp_path, rows)), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "class-summary: alpha: no labelled images" in result.output
    assert read_table(out) == [list(PER_CLASS_COLUMNS)]
    assert read_table(tmp_path / "confusion.csv") == [list(CONFUSION_COLUMNS)]
    for model in MODELS:
        check_png(tmp_path / "confusion" / f"{model}.png", 50)
        assert read_metadata(tmp_path / "confusion" / f"{model}.png") == {"model": model, "images": 0, "classes": []}
