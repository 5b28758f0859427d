"""``summary.csv``: one row per image of a run, from the image check, each model's
predictions and each job's record.

Columns: the image (path, result name, status and reason of the check, label);
per model the label's class, the top-1 class, its name and probability, and
whether they agree; per model, technique and setting the status of the
image's result (``ok``, ``failed``, ``left out``, ``not built``) and why.
Torch-free.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

PREDICTION_COLUMNS = ("label class", "label name", "top-1", "top-1 name", "probability", "correct")
# the most probable classes each predictions table lists per image (its top5 column): the image pages' top-5
PREDICTION_TOP = 5


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _read_predictions(path: Path) -> list[dict[str, str]]:
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            return list(csv.DictReader(handle))
    except OSError:
        return []


def summarize(
    spec: Mapping[str, Any], statuses: Sequence[Mapping[str, Any]], root: Path
) -> tuple[list[str], list[list]]:
    """(header, rows) of the summary; ``root`` is the results folder the spec's paths are in."""
    models = list(spec.get("models", []))
    by_path = {str(status["path"]): status["name"] for status in statuses}
    predictions: dict[tuple[str, str], dict[str, str]] = {}
    chunks = spec.get("chunks", [])
    for model in models:
        for chunk in chunks:
            for row in _read_predictions(root / spec["predictions"].format(model=model, chunk=chunk)):
                predictions[(model, by_path.get(row.get("image", ""), row.get("image", "")))] = row
    results: dict[tuple[str, str, str], dict[str, tuple[str, str]]] = {}
    for entry in spec.get("settings", []):
        key = (entry["model"], entry["technique"], entry["setting"])
        column = results.setdefault(key, {})
        for chunk in chunks:
            record = _read_json(root / spec["records"].format(**entry, chunk=chunk))
            for row in (record or {}).get("rows", []):
                if row.get("image") is not None:
                    column[by_path.get(row["image"], row["image"])] = (row.get("status", "ok"), row.get("reason") or "")
    left_out = {(table["table"], table["section"]): table.get("failures", {}) for table in spec.get("tables", [])}
    header = ["image", "name", "status", "reason", "label"]
    for model in models:
        header += [f"{model} {column}" for column in PREDICTION_COLUMNS]
    header += [
        f"{model} {technique}{' ' + setting if setting else ''} {part}"
        for model, technique, setting in results
        for part in ("status", "reason")
    ]
    rows = []
    for status in statuses:
        name = status["name"]
        row = [status["path"], name, status["status"], status.get("reason") or "", status.get("label") or ""]
        for model in models:
            found = predictions.get((model, name), {})
            row += [found.get(column.replace(" ", "_").replace("-", ""), "") for column in PREDICTION_COLUMNS]
        for model, technique, setting in results:
            tried = results[(model, technique, setting)].get(name)
            if status["status"] != "ok":
                # the chunk layout's jobs try every image: their reason is the one to show
                row += list(tried) if tried else ["left out", "the image cannot be used"]
            elif name in left_out.get((model, technique), {}):
                row += ["left out", left_out[(model, technique)][name]]
            else:
                row += list(tried or ("not built", ""))
        rows.append(row)
    return header, rows


def read_summary(path: Path) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of a ``summary.csv`` (empty lists for an empty file)."""
    with Path(path).open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    return (rows[0], rows[1:]) if rows else ([], [])


def accuracy(header: Sequence[str], rows: Sequence[Sequence[Any]], model: str) -> tuple[int, int]:
    """(correct, labelled) of a model over the summary's rows."""
    column = header.index(f"{model} correct")
    answers = [row[column] for row in rows if row[column] in ("yes", "no")]
    return sum(answer == "yes" for answer in answers), len(answers)


def to_csv(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()
