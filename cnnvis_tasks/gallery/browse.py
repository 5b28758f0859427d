"""The gallery's image index: every image of a run under each model, gathered from the
run's tables (:func:`catalogue`); :mod:`cnnvis_tasks.gallery.index_files` writes it as
the small files that ``images.html`` and ``gallery/image.html`` read a screen at a time.

No picture is opened: what an image page shows comes from the image check, summary.csv,
the predictions' top-5 and the table techniques' rows, and its pictures are the paths
the plan gave them.  Imports neither torch nor click.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnvis_tasks.technique.table import Table

OUTCOMES = ("right", "wrong", "unlabelled", "failed")
# a result whose status is one of these is not a failure of the image (not built yet: a run cut short)
NOT_FAILED = ("ok", "not built", "")


def slug(text: str) -> str:
    """A file-name-safe key for a model, method or class name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text.replace("+", "p")).strip("_") or "_"


def _number(text: Any) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _integer(text: Any) -> int | None:
    try:
        return int(str(text))
    except (TypeError, ValueError):
        return None


@dataclass
class PictureColumn:
    """One picture every image has under a model: a column of a per-image gallery table."""

    section: str
    title: str
    label: list[str]
    path: str  # with "{image}" and "{chunk}" for the image's name and chunk
    status_key: tuple[str, str, str] | None  # (model, technique, setting) of summary.csv's status


@dataclass(slots=True)  # a million of them per model: no per-instance dict
class ModelImage:
    """One image under one model: what its row in the index and its page show."""

    id: int
    name: str
    status: str
    reason: str | None
    label: str | None
    label_class: int | None = None
    label_name: str | None = None
    prediction: int | None = None
    prediction_name: str | None = None
    probability: float | None = None
    top: list[Any] = field(default_factory=list)
    outcome: str = "failed"
    failures: list[dict[str, str]] = field(default_factory=list)
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    # the results that are not ok: (model, technique, setting) -> (status, reason)
    statuses: dict[tuple[str, str, str], tuple[str, str]] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.outcome == "failed" or bool(self.failures)

    @property
    def buckets(self) -> list[str]:
        """The filters this image passes (docs/gallery.md): all, its outcomes, its class and both."""
        outcomes = [self.outcome] + (["failed"] if self.failed and self.outcome != "failed" else [])
        names = ["all", *(f"o-{outcome}" for outcome in outcomes)]
        if self.label_class is not None:
            names += [f"c{self.label_class}", *(f"c{self.label_class}-o-{outcome}" for outcome in outcomes)]
        return names


@dataclass
class Catalogue:
    """A run's images (in name order: an image's id is its place) and each model's view of them."""

    images: list[Mapping[str, Any]]
    root_link: dict[str, str]  # image name -> its file, relative to the results folder
    models: dict[str, list[ModelImage]]
    pictures: dict[str, list[PictureColumn]]
    methods: dict[str, list[str]]  # model -> the methods (table groups) scored, in order
    measures: dict[str, list[Any]]  # model -> the measures (cnnvis_tasks.technique.table.Measure) found
    scored: dict[str, set[tuple[str, str]]] = field(default_factory=dict)  # model -> (method, measure) with a value
    chunk_count: int = 1

    def method_keys(self, model: str) -> dict[str, str]:
        """Each method's key in the index's files: its name made file-safe, unique within the model."""
        keys: dict[str, str] = {}
        for method in self.methods[model]:
            key, number = slug(method), 1
            while key in keys.values():
                number += 1
                key = f"{slug(method)}-{number}"
            keys[method] = key
        return keys


def _picture_columns(spec: Mapping[str, Any], titles: Mapping[str, str]) -> dict[str, list[PictureColumn]]:
    found: dict[str, list[PictureColumn]] = {}
    for table in spec.get("tables", []):
        if not table.get("per_image"):
            continue
        model = str(table.get("table", ""))
        for column in table.get("columns", []):
            label = [str(part) for part in (column.get("label") or [column.get("key", "")])]
            if len(label) > 1 and label[0] == model:
                label = label[1:]
            setting = column.get("setting")
            found.setdefault(model, []).append(
                PictureColumn(
                    section=table["section"],
                    title=titles.get(table["section"], table["section"]),
                    label=label,
                    path=column["path"],
                    status_key=(model, table["section"], setting) if setting is not None else None,
                )
            )
    return found


def _status_columns(spec: Mapping[str, Any], header: Sequence[str]) -> dict[tuple[str, str, str], tuple[int, int]]:
    """summary.csv's (status, reason) columns of each (model, technique, setting)."""
    where = {name: index for index, name in enumerate(header)}
    found = {}
    for entry in spec.get("settings", []):
        model, technique, setting = entry["model"], entry["technique"], entry["setting"]
        stem = f"{model} {technique}{' ' + setting if setting else ''}"
        if f"{stem} status" in where:
            found[(model, technique, setting)] = (where[f"{stem} status"], where[f"{stem} reason"])
    return found


def catalogue(
    spec: Mapping[str, Any],
    statuses: Sequence[Mapping[str, Any]],
    summary: tuple[Sequence[str], Sequence[Sequence[str]]] | None,
    top: Mapping[tuple[str, str], list[Any]],
    tables: Iterable[tuple[Table, Iterable[Mapping[str, str]]]],
    root: Path,
    titles: Mapping[str, str],
) -> Catalogue:
    """Each model's view of every image of the run.

    ``statuses``: the image check's records; ``summary``: summary.csv's (header, rows);
    ``top``: (model, image name) -> the top-5 ``[class, name, probability]``; ``tables``:
    each table technique's description with its NAME.csv rows (dicts); ``root``: the
    results folder (the images' links are made relative to it); ``titles``: section ->
    the technique's title."""
    images = sorted((s for s in statuses if s.get("status") != "skipped"), key=lambda s: str(s["name"]))
    ids = {str(image["name"]): number for number, image in enumerate(images)}
    base = os.path.abspath(root)
    links = {
        str(image["name"]): Path(os.path.relpath(os.path.abspath(str(image["path"])), base)).as_posix()
        for image in images
    }
    # the workflow's spec names its models; a hand-written one may name only its per-image tables
    named = spec.get("models") or [t.get("table", "") for t in spec.get("tables", []) if t.get("per_image")]
    models = [str(model) for model in dict.fromkeys(named)]
    header, rows = summary if summary is not None else ([], [])
    where = {name: index for index, name in enumerate(header)}
    status_columns = _status_columns(spec, header)
    by_name = {row[where["name"]]: row for row in rows} if "name" in where else {}
    problems = spec.get("label_problems") or {}
    left_out = {(t["table"], t["section"]): t.get("failures") or {} for t in spec.get("tables", [])}

    def cell(row: Sequence[str] | None, column: str) -> str:
        index = where.get(column)
        return row[index] if row is not None and index is not None and index < len(row) else ""

    views: dict[str, list[ModelImage]] = {}
    for model in models:
        entries = []
        for image in images:
            name = str(image["name"])
            row = by_name.get(name)
            status = str(image.get("status", "ok"))
            reason = image.get("reason")
            if status == "ok" and name in problems:
                status, reason = "failed", problems[name]
            entry = ModelImage(id=ids[name], name=name, status=status, reason=reason, label=image.get("label"))
            entry.label_class = _integer(cell(row, f"{model} label class"))
            entry.label_name = cell(row, f"{model} label name") or None
            entry.prediction = _integer(cell(row, f"{model} top-1"))
            entry.prediction_name = cell(row, f"{model} top-1 name") or None
            entry.probability = _number(cell(row, f"{model} probability"))
            entry.top = list(top.get((model, name), []))
            correct = cell(row, f"{model} correct")
            predicted = f"{model} top-1" in where  # without the model's predictions, no image failed for lack of one
            if status != "ok" or (predicted and entry.prediction is None):
                entry.outcome = "failed"
            else:
                entry.outcome = {"yes": "right", "no": "wrong"}.get(correct, "unlabelled")
            for key, (status_at, reason_at) in status_columns.items():
                if key[0] != model or row is None:
                    continue
                result, why = row[status_at], row[reason_at]
                if name in left_out.get((model, key[1]), {}):
                    result, why = "left out", left_out[(model, key[1])][name]
                if result not in ("ok", ""):
                    entry.statuses[key] = (result, why)
                if result not in NOT_FAILED:
                    label = " ".join(part for part in key[1:] if part)
                    entry.failures.append({"result": label, "status": result, "reason": why})
            if entry.outcome == "failed" and not entry.failures:
                entry.failures.append(
                    {"result": "image", "status": "failed", "reason": reason or "the model made no prediction"}
                )
            entries.append(entry)
        views[model] = entries

    tables = list(tables)
    methods: dict[str, list[str]] = {model: [] for model in models}
    measures: dict[str, list[Any]] = {model: [] for model in models}
    scored: dict[str, set[tuple[str, str]]] = {model: set() for model in models}
    for table, table_rows in tables:
        for row in table_rows:
            model, name, group = row.get("model", ""), row.get("image", ""), row.get(table.group, "")
            if model not in views or name not in ids:
                continue
            values = views[model][ids[name]].scores.setdefault(group, {})
            if group not in methods[model]:
                methods[model].append(group)
            for measure in table.measures:
                value = _number(row.get(measure.name))
                if value is not None:
                    values[measure.name] = value
                    if (group, measure.name) not in scored[model]:
                        scored[model].add((group, measure.name))
                        if measure not in measures[model]:
                            measures[model].append(measure)
    order = [measure for table, _ in tables for measure in table.measures]
    for model in models:  # the tables' order of measures, whatever order the rows came in
        measures[model].sort(key=order.index)
    return Catalogue(
        images=images,
        root_link=links,
        models=views,
        pictures=_picture_columns(spec, titles),
        methods=methods,
        measures=measures,
        scored=scored,
        chunk_count=int(spec.get("chunk_count") or 1),
    )
