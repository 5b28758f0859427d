"""Per-class accuracy and the confusions of each model, from ``summary.csv``.

``per-class.csv``: per model and label class, the usable labelled images (summary
status ``ok``, the model's ``correct`` yes or no), how many it got right, the
accuracy with its Wilson score 95 % interval, and the class it most often gives
them instead.  ``confusion.csv``: per model every (label class, predicted class)
pair that occurs, the mistakes first, largest first.  ``confusion/MODEL.png``: the
matrix of the classes taking part in the model's largest confusions.

Torch-free; matplotlib is imported only to draw.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cnnvis_tasks.io.outputs import atomic_write

Z95 = 1.959963984540054  # the standard normal's 97.5 % quantile
CONFUSION_NAME = "confusion.csv"  # beside per-class.csv
PICTURE_FOLDER = "confusion"  # confusion/MODEL.png, beside per-class.csv
MAX_PICTURE_CLASSES = 20
NAME_WIDTH = 18  # characters of a class name kept on the picture's axes

PER_CLASS_COLUMNS = (
    "model",
    "class",
    "name",
    "images",
    "right",
    "accuracy",
    "low",
    "high",
    "mistaken_for",
    "mistaken_for_name",
    "mistaken_count",
)
CONFUSION_COLUMNS = ("model", "label class", "label name", "predicted class", "predicted name", "count")


def wilson(right: int, total: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``right / total`` (``total`` > 0)."""
    p = right / total
    scale = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / scale
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / scale
    # the bounds are exactly 0 and 1 at the ends (not a rounding error away)
    return (0.0 if right == 0 else centre - half), (1.0 if right == total else centre + half)


def models_of(header: Sequence[str]) -> list[str]:
    """The models of a summary, in its order: those with a ``MODEL correct`` column."""
    return [column[: -len(" correct")] for column in header if column.endswith(" correct")]


def _as_class(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def labelled(header: Sequence[str], rows: Sequence[Sequence[Any]], model: str) -> list[tuple[int, int]]:
    """(label class, predicted class) of each usable labelled image of ``model``: summary status
    ``ok`` and ``MODEL correct`` yes or no."""
    status = header.index("status")
    label, top, correct = (header.index(f"{model} {column}") for column in ("label class", "top-1", "correct"))
    pairs = []
    for row in rows:
        if row[status] != "ok" or row[correct] not in ("yes", "no"):
            continue
        truth, predicted = _as_class(row[label]), _as_class(row[top])
        if truth is not None and predicted is not None:
            pairs.append((truth, predicted))
    return pairs


def class_names(header: Sequence[str], rows: Sequence[Sequence[Any]], model: str) -> dict[int, str]:
    """Class index -> name, as the model's label and top-1 columns give them (the first name seen)."""
    names: dict[int, str] = {}
    for index, name in (("label class", "label name"), ("top-1", "top-1 name")):
        index_column, name_column = header.index(f"{model} {index}"), header.index(f"{model} {name}")
        for row in rows:
            found = _as_class(row[index_column])
            if found is not None and row[name_column] and found not in names:
                names[found] = str(row[name_column])
    return names


def per_class(header: Sequence[str], rows: Sequence[Sequence[Any]], model: str) -> list[dict[str, Any]]:
    """Per label class of the model's usable labelled images, by class index: images, right,
    accuracy with its Wilson 95 % interval (low, high), and the class it is most often wrongly
    given (``mistaken_for``, ties: the smaller index; empty when never wrong) with its count."""
    pairs = labelled(header, rows, model)
    names = class_names(header, rows, model)
    by_class: dict[int, Counter] = {}
    for truth, predicted in pairs:
        by_class.setdefault(truth, Counter())[predicted] += 1
    table = []
    for truth in sorted(by_class):
        given = by_class[truth]
        images, right = sum(given.values()), given[truth]
        low, high = wilson(right, images)
        mistakes = sorted(((-count, cls) for cls, count in given.items() if cls != truth and count))
        mistaken = mistakes[0][1] if mistakes else None
        table.append(
            {
                "model": model,
                "class": truth,
                "name": names.get(truth, ""),
                "images": images,
                "right": right,
                "accuracy": right / images,
                "low": low,
                "high": high,
                "mistaken_for": "" if mistaken is None else mistaken,
                "mistaken_for_name": "" if mistaken is None else names.get(mistaken, ""),
                "mistaken_count": -mistakes[0][0] if mistakes else 0,
            }
        )
    return table


def confusion(header: Sequence[str], rows: Sequence[Sequence[Any]], model: str) -> list[dict[str, Any]]:
    """Every (label class, predicted class) pair among the model's usable labelled images with
    its count: the mistakes by count, largest first (ties: by label class, then predicted
    class), then the right answers by class."""
    names = class_names(header, rows, model)
    counts = Counter(labelled(header, rows, model))
    mistakes = sorted((pair for pair in counts if pair[0] != pair[1]), key=lambda pair: (-counts[pair], pair))
    diagonal = sorted(pair for pair in counts if pair[0] == pair[1])
    return [
        {
            "model": model,
            "label class": truth,
            "label name": names.get(truth, ""),
            "predicted class": predicted,
            "predicted name": names.get(predicted, ""),
            "count": counts[(truth, predicted)],
        }
        for truth, predicted in [*mistakes, *diagonal]
    ]


def confused_classes(pairs: Sequence[dict[str, Any]], limit: int = MAX_PICTURE_CLASSES) -> list[int]:
    """The classes of the largest confusions (``pairs`` as :func:`confusion` orders them), in
    the order met walking the mistakes largest first: at most ``limit`` (a pair that would
    pass it is passed over)."""
    chosen: list[int] = []
    for pair in pairs:
        truth, predicted = pair["label class"], pair["predicted class"]
        if truth == predicted:
            continue
        new = [cls for cls in dict.fromkeys((truth, predicted)) if cls not in chosen]
        if len(chosen) + len(new) <= limit:
            chosen += new
        if len(chosen) >= limit:
            break
    return chosen


def _short(name: str, width: int = NAME_WIDTH) -> str:
    """A name cut to ``width`` characters, with ``$`` escaped (matplotlib reads ``$...$`` as maths)."""
    name = name if len(name) <= width else name[: width - 1].rstrip() + "\u2026"
    return name.replace("$", r"\$")


def draw_confusion(model: str, pairs: Sequence[dict[str, Any]], images: int, dpi: int = 100) -> Any:
    """A matplotlib figure (no pyplot) of the model's confusion matrix restricted to
    :func:`confused_classes`: rows the label, columns the prediction, the counts in the
    cells, the mistakes coloured; or a small note when it made no mistake or has no labels."""
    from matplotlib.figure import Figure

    classes = confused_classes(pairs)
    if not classes:
        model = _short(model, 60)
        note = f"{model}: no mistakes among {images} labelled images" if images else f"{model}: no labelled images"
        figure = Figure(figsize=(4.8, 1.0), dpi=dpi)
        figure.text(0.5, 0.5, note + "\n(no confusion to show)", ha="center", va="center", fontsize=9)
        return figure
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    position = {cls: index for index, cls in enumerate(classes)}
    counts = np.zeros((len(classes), len(classes)), dtype=int)
    names: dict[int, str] = {}
    for pair in pairs:
        names.setdefault(pair["label class"], pair["label name"])
        names.setdefault(pair["predicted class"], pair["predicted name"])
        if pair["label class"] in position and pair["predicted class"] in position:
            counts[position[pair["label class"]], position[pair["predicted class"]]] = pair["count"]
    labels = [f"{_short(names.get(cls) or '?')} ({cls})" for cls in classes]
    side = 2.6 + 0.42 * len(classes)
    figure = Figure(figsize=(side + 0.6, side), dpi=dpi, layout="constrained")
    axes = figure.add_subplot()
    diagonal = np.eye(len(classes), dtype=bool)
    top = max(1, int(np.where(diagonal, 0, counts).max()))
    axes.imshow(diagonal, cmap="Greys", vmin=0, vmax=6)  # the right answers' cells pale grey, the others white
    wrong = np.ma.masked_array(counts, mask=diagonal | (counts == 0))
    shown = axes.imshow(wrong, cmap="Reds", vmin=0, vmax=top)
    for row, column in zip(*np.nonzero(counts)):
        value = counts[row, column]
        dark = row != column and value > 0.6 * top
        axes.text(column, row, str(value), ha="center", va="center", fontsize=7, color="white" if dark else "black")
    axes.set_xticks(range(len(classes)), labels, rotation=60, ha="right", rotation_mode="anchor", fontsize=7)
    axes.set_yticks(range(len(classes)), labels, fontsize=7)
    axes.set_xlabel("predicted class", fontsize=8)
    axes.set_ylabel("label class", fontsize=8)
    axes.set_title(
        f"the {len(classes)} classes {_short(model, 60)} mixes up most\n"
        f"(of {images} labelled images; grey: right answers)",
        fontsize=9,
    )
    bar = figure.colorbar(shown, ax=axes, shrink=0.6, ticks=MaxNLocator(integer=True))
    bar.set_label("wrong answers", fontsize=8)
    bar.ax.tick_params(labelsize=7)
    return figure


def _csv_text(columns: Sequence[str], table: Sequence[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for entry in table:
        writer.writerow([f"{entry[c]:.6g}" if isinstance(entry[c], float) else entry[c] for c in columns])
    return buffer.getvalue()


def picture_path(folder: Path | str, model: str) -> Path:
    """Where a model's confusion picture goes, ``folder`` the one ``per-class.csv`` is in."""
    return Path(folder) / PICTURE_FOLDER / f"{model}.png"


def write_tables(header: Sequence[str], rows: Sequence[Sequence[Any]], out: Path) -> list[Path]:
    """Write ``out`` (per-class.csv), ``confusion.csv`` beside it and ``confusion/MODEL.png``
    per model of a summary's (header, rows), each atomically; the paths written, in that order."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    out = Path(out)
    models = models_of(header)
    classes = {model: per_class(header, rows, model) for model in models}
    pairs = {model: confusion(header, rows, model) for model in models}
    written = []
    for path, columns, table in (
        (out, PER_CLASS_COLUMNS, [entry for model in models for entry in classes[model]]),
        (out.parent / CONFUSION_NAME, CONFUSION_COLUMNS, [entry for model in models for entry in pairs[model]]),
    ):
        text = _csv_text(columns, table)
        written.append(atomic_write(path, lambda handle, text=text: handle.write(text.encode("utf-8"))))
    for model in models:
        images = sum(entry["images"] for entry in classes[model])
        canvas = FigureCanvasAgg(draw_confusion(model, pairs[model], images))
        facts = json.dumps({"model": model, "images": images, "classes": confused_classes(pairs[model])})
        written.append(
            atomic_write(
                picture_path(out.parent, model),
                lambda handle, canvas=canvas, facts=facts: canvas.print_png(handle, metadata={"cnnvis": facts}),
            )
        )
    return written
