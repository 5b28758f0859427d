"""The files of the gallery's image index (docs/gallery.md, "The files behind it"):
``gallery/data/index.js``, a row per image and model, and per filter (bucket) the image
ids in each order the index offers, a thousand to a file, so that a page reads only what
it shows.  Imports neither torch nor click."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnnvis_tasks.gallery.browse import OUTCOMES, Catalogue, ModelImage, PictureColumn, slug
from cnnvis_tasks.workflow.plan import chunk_name, chunk_of

PAGE_SIZE = 50
IDS_PER_FILE = 1000
ROWS_PER_FOLDER = 1000


def sort_keys(catalogue: Catalogue, model: str) -> list[dict[str, Any]]:
    """The orders the index offers for a model: name, confidence, and each sortable
    measure of each method (key, label, higher_is_better; for a measure, its method's key
    and the measure's, and the method's name in the table's rows)."""
    keys = [
        {"key": "name", "label": "name"},
        {"key": "confidence", "label": "confidence (top-1 probability)", "higher_is_better": True},
    ]
    scored = catalogue.scored.get(model, set())
    for method, method_key in catalogue.method_keys(model).items():
        for measure in catalogue.measures[model]:
            if measure.sorts and (method, measure.name) in scored:  # a method some image has a value of
                keys.append(
                    {
                        "key": f"m-{method_key}-{measure.name}",
                        "label": f"{method}: {measure.label}",
                        "higher_is_better": measure.higher_is_better,
                        "method": method_key,
                        "measure": measure.name,
                        "group": method,  # the method as the table's rows name it
                    }
                )
    return keys


def sort_value(entry: ModelImage, key: Mapping[str, Any]) -> float | None:
    """An image's value for a sort key of :func:`sort_keys` (None: it has none, and sorts last)."""
    if key["key"] == "confidence":
        return entry.probability
    if "measure" in key:
        return entry.scores.get(key["group"], {}).get(key["measure"])
    return None


def image_page_row(
    catalogue: Catalogue, entry: ModelImage, columns: Sequence[PictureColumn], keys: Mapping[str, str]
) -> dict[str, Any]:
    """What ``gallery/image.html`` and the index show of one image under one model;
    ``columns``: the model's pictures, ``keys``: its methods' keys (:meth:`Catalogue.method_keys`)."""
    image = catalogue.images[entry.id]
    box = image.get("box")
    problems = {}  # the pictures not to show, by their place in the model's list (most images have none)
    for number, column in enumerate(columns):
        if entry.status != "ok":
            problems[str(number)] = ["failed", entry.reason or "the image cannot be used"]
        elif column.status_key is not None:
            status, reason = entry.statuses.get(column.status_key, ("ok", ""))
            if status not in ("ok", ""):
                problems[str(number)] = [status, reason or None]
    return {
        "id": entry.id,
        "name": entry.name,
        "path": str(image["path"]),
        "image": catalogue.root_link[entry.name],
        "label": entry.label,
        "label_class": entry.label_class,
        "label_name": entry.label_name,
        "top": entry.top,
        "prediction": entry.prediction,
        "prediction_name": entry.prediction_name,
        "probability": entry.probability,
        "outcome": entry.outcome,
        "failed": entry.failed,
        "status": entry.status,
        "reason": entry.reason,
        "size": list(image["size"]) if image.get("size") else None,
        "box": list(box) if box else None,
        "scores": {keys[method]: values for method, values in entry.scores.items()},
        "chunk": chunk_name(chunk_of(entry.name, catalogue.chunk_count), catalogue.chunk_count),
        "picture_problems": problems,
        "failures": entry.failures,
        "prev": entry.id - 1 if entry.id > 0 else None,
        "next": entry.id + 1 if entry.id + 1 < len(catalogue.images) else None,
    }


def _script(key: str, value: Any) -> str:
    # "</" would end an inline script; harmless in a file, but kept out so the text can be inlined
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    return f"cnnvis.receive({json.dumps(key)},{text});\n"


def _write(path: Path, text: str) -> int:
    data = text.encode("utf-8")
    with open(path, "wb") as handle:
        handle.write(data)
    return len(data)


@dataclass
class WrittenIndex:
    """What :func:`write_index_data` wrote: files, bytes and the largest file's size."""

    files: int = 0
    bytes: int = 0
    largest: int = 0
    largest_name: str = ""

    def add(self, name: str, size: int) -> None:
        self.files += 1
        self.bytes += size
        if size > self.largest:
            self.largest, self.largest_name = size, name


def model_index(catalogue: Catalogue, model: str, folder: str) -> dict[str, Any]:
    """A model's entry of ``index.js`` (docs/gallery.md)."""
    entries = catalogue.models[model]
    counts: dict[str, int] = {}
    classes: dict[int, str] = {}
    for entry in entries:
        for bucket in entry.buckets:
            counts[bucket] = counts.get(bucket, 0) + 1
        if entry.label_class is not None:
            classes.setdefault(entry.label_class, entry.label_name or str(entry.label_class))
    return {
        "name": model,
        "dir": folder,
        "count": len(entries),
        "classes": [
            {"index": index, "name": classes[index], "bucket": f"c{index}", "count": counts.get(f"c{index}", 0)}
            for index in sorted(classes)
        ],
        "outcomes": [{"key": key, "count": counts.get(f"o-{key}", 0)} for key in OUTCOMES],
        "buckets": counts,
        "methods": [{"key": key, "label": method} for method, key in catalogue.method_keys(model).items()],
        "measures": [
            {"key": m.name, "label": m.label, "higher_is_better": m.higher_is_better} for m in catalogue.measures[model]
        ],
        "pictures": [
            {"section": c.section, "title": c.title, "label": c.label, "path": c.path}
            for c in catalogue.pictures.get(model, [])
        ],
        "sorts": [{k: v for k, v in key.items() if k != "group"} for key in sort_keys(catalogue, model)]
        if entries
        else [],
    }


def replace_folder(data: Path, fill: Callable[[Path], None]) -> None:
    """Fill a fresh folder beside ``data`` (``fill(folder)``), which then takes ``data``'s
    place, so a failure leaves the old folder whole; the fresh folders of a run that was
    killed are removed."""
    data.parent.mkdir(parents=True, exist_ok=True)
    for stale in data.parent.glob(f".{data.name}.*"):
        shutil.rmtree(stale, ignore_errors=True)
    fresh = Path(tempfile.mkdtemp(prefix=f".{data.name}.", dir=data.parent))
    try:
        fill(fresh)
        os.chmod(fresh, 0o755)
        old = None
        if data.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{data.name}.old.", dir=data.parent))
            os.replace(data, old / data.name)
        os.replace(fresh, data)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(fresh, ignore_errors=True)
        raise


def write_index_data(
    data: Path, catalogue: Catalogue, title: str, page_size: int = PAGE_SIZE, ids_per_file: int = IDS_PER_FILE
) -> WrittenIndex:
    """Write ``gallery/data/`` (``data``) for the catalogue: into a fresh folder beside it,
    which then takes the old one's place (:func:`replace_folder`), so a failure leaves the
    old index whole (the workflow's gallery job starts from an empty ``gallery/``: Snakemake
    removes a folder output before its job runs)."""
    written = WrittenIndex()

    def fill(fresh: Path) -> None:
        folders = {}
        for model in catalogue.models:
            folder = slug(model)
            while folder in folders.values():
                folder += "_"
            folders[model] = folder
        index = {
            "title": title,
            "page_size": page_size,
            "ids_per_file": ids_per_file,
            "models": [model_index(catalogue, model, folders[model]) for model in catalogue.models],
        }
        written.add("index.js", _write(fresh / "index.js", _script("index", index)))
        for model, folder in folders.items():
            _write_model(fresh / folder, catalogue, model, folder, ids_per_file, written)

    replace_folder(data, fill)
    return written


def _write_model(
    folder: Path, catalogue: Catalogue, model: str, key: str, ids_per_file: int, written: WrittenIndex
) -> None:
    entries = catalogue.models[model]
    columns = catalogue.pictures.get(model, [])
    method_keys = catalogue.method_keys(model)
    made: set[int] = set()
    for entry in entries:
        shard = entry.id // ROWS_PER_FOLDER
        if shard not in made:
            (folder / "rows" / str(shard)).mkdir(parents=True, exist_ok=True)
            made.add(shard)
        name = f"rows/{shard}/{entry.id}.js"
        row = image_page_row(catalogue, entry, columns, method_keys)
        written.add(name, _write(folder / name, _script(f"row/{key}/{entry.id}", row)))
    _write_orders(folder, entries, sort_keys(catalogue, model), key, ids_per_file, written)


def bucket_order(ids: np.ndarray, values: np.ndarray | None) -> tuple[np.ndarray, int]:
    """A bucket's ids (ascending: name order) sorted by ``values`` (NaN: none) ascending,
    ties in name order, then those without a value in name order; and how many have one."""
    if values is None:
        return ids, len(ids)
    column = values[ids]
    has = ~np.isnan(column)
    with_value = ids[has][np.argsort(column[has], kind="stable")]
    return np.concatenate([with_value, ids[~has]]), len(with_value)


def _write_orders(
    folder: Path,
    entries: Sequence[ModelImage],
    keys: Sequence[Mapping[str, Any]],
    model_key: str,
    ids_per_file: int,
    written: WrittenIndex,
) -> None:
    values: dict[str, np.ndarray | None] = {}
    for k in keys:
        found = None if k["key"] == "name" else [sort_value(entry, k) for entry in entries]
        values[k["key"]] = None if found is None else np.array([np.nan if v is None else v for v in found], float)
    members: dict[str, list[int]] = {}
    for entry in entries:  # ids in name order: each bucket's list is its name order
        for bucket in entry.buckets:
            members.setdefault(bucket, []).append(entry.id)
    for bucket, listed in members.items():
        ids = np.array(listed, dtype=np.int64)
        valued = {}
        (folder / "order" / bucket).mkdir(parents=True)
        for sort, column in values.items():
            order, valued[sort] = bucket_order(ids, column)
            for number, start in enumerate(range(0, len(order), ids_per_file)):
                name = f"order/{bucket}/{sort}.{number}.js"
                part = order[start : start + ids_per_file].tolist()
                written.add(name, _write(folder / name, _script(f"order/{model_key}/{bucket}/{sort}/{number}", part)))
        name = f"order/{bucket}/meta.js"
        meta = {"count": len(ids), "valued": valued}
        written.add(name, _write(folder / name, _script(f"order/{model_key}/{bucket}", meta)))
