"""``metrics.csv`` and ``metrics-summary.csv``: the trust metrics of every image, method
and model, from the metrics jobs' records, and per method and model their mean with a
bootstrap 95 % interval.  Torch-free (NumPy for the bootstrap).

A metric is *better* high (insertion, ROAD, localisation) or low (deletion;
randomisation, where a low correlation means the map changes when the model does).
Methods are ordered by their mean rank over the faithfulness metrics (deletion,
insertion, ROAD), the randomisation and localisation checks shown beside them.
"""

from __future__ import annotations

import csv
import io
import json
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

METRICS_TECHNIQUE = "metrics"
# name in the record -> (column title, higher is better, counts in the ordering)
METRICS: dict[str, tuple[str, bool, bool]] = {
    "deletion_auc": ("Deletion AUC", False, True),
    "insertion_auc": ("Insertion AUC", True, True),
    "road": ("ROAD (LeRF - MoRF)", True, True),
    "randomisation": ("Randomisation correlation", False, False),
    "localisation": ("Attribution in box", True, False),
}
ROW_COLUMNS = ("model", "method", "explain", "image", "target", *METRICS)
SUMMARY_COLUMNS = ("model", "method", "metric", "mean", "low", "high", "count", "better")


@dataclass
class Scored:
    """One image's scores for one method on one model."""

    model: str
    method: str
    explain: str
    image: str
    target: Any
    numbers: dict[str, float]
    curves: dict[str, list[float]]
    stages: list[str]


def read_scores(spec: Mapping[str, Any], root: Path) -> list[Scored]:
    """Every scored row of the metrics jobs the spec lists (failed rows have no scores)."""
    found = []
    for entry in spec.get("settings", []):
        if entry["technique"] != METRICS_TECHNIQUE:
            continue
        for chunk in spec.get("chunks", []):
            path = root / spec["records"].format(**entry, chunk=chunk)
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            for row in record.get("rows", []):
                measured = row.get("measured")
                if row.get("status", "ok") != "ok" or not measured:
                    continue
                found.append(
                    Scored(
                        model=entry["model"],
                        method=str(measured.get("method") or entry["setting"]),
                        explain=str(measured.get("explain", "")),
                        image=str(row.get("image", "")),
                        target=measured.get("target", ""),
                        numbers={
                            name: float(measured[name])
                            for name in METRICS
                            if isinstance(measured.get(name), (int, float)) and math.isfinite(measured[name])
                        },
                        curves={name: list(measured["curves"][name]) for name in measured.get("curves", {})},
                        stages=list(measured.get("stages", [])),
                    )
                )
    return found


def bootstrap_interval(values: Sequence[float], resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """The 2.5th and 97.5th percentiles of the mean over ``resamples`` resamples (with
    replacement) of ``values``; a single value is its own interval."""
    import numpy as np

    data = np.asarray(values, dtype=np.float64)
    if data.size < 2:
        return (float(data[0]), float(data[0])) if data.size else (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(resamples, data.size))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def summarise(scores: Sequence[Scored], resamples: int = 2000, seed: int = 0) -> list[dict[str, Any]]:
    """Per model, method and metric: mean, bootstrap 95 % interval, count, which way is better."""
    groups: dict[tuple[str, str, str], list[float]] = {}
    for scored in scores:
        for name, value in scored.numbers.items():
            groups.setdefault((scored.model, scored.method, name), []).append(value)
    rows = []
    for (model, method, name), values in groups.items():
        low, high = bootstrap_interval(values, resamples, seed)
        rows.append(
            {
                "model": model,
                "method": method,
                "metric": name,
                "mean": sum(values) / len(values),
                "low": low,
                "high": high,
                "count": len(values),
                "better": "higher" if METRICS[name][1] else "lower",
            }
        )
    return rows


def method_order(summary: Sequence[Mapping[str, Any]], model: str) -> list[str]:
    """The model's methods, best first: by their mean rank over the faithfulness metrics
    (ties and methods without them by name)."""
    means: dict[str, dict[str, float]] = {}
    for row in summary:
        if row["model"] == model:
            means.setdefault(row["method"], {})[row["metric"]] = float(row["mean"])
    ranks: dict[str, list[int]] = {method: [] for method in means}
    for name, (_title, higher, counts) in METRICS.items():
        if not counts:
            continue
        having = [method for method in means if name in means[method]]
        having.sort(key=lambda method: -means[method][name] if higher else means[method][name])
        for rank, method in enumerate(having, start=1):
            ranks[method].append(rank)
    return sorted(means, key=lambda m: (sum(ranks[m]) / len(ranks[m]) if ranks[m] else float("inf"), m))


def to_csv(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _cell(row.get(key, "")) for key in columns})
    return out.getvalue()


def _cell(value: Any) -> Any:
    return f"{value:.6g}" if isinstance(value, float) else value


def score_rows(scores: Sequence[Scored]) -> list[dict[str, Any]]:
    """``metrics.csv``'s rows: one per image, method and model."""
    return [
        {
            "model": s.model,
            "method": s.method,
            "explain": s.explain,
            "image": s.image,
            "target": s.target,
            **s.numbers,
        }
        for s in scores
    ]


def mean_curves(scores: Sequence[Scored], model: str) -> dict[str, dict[str, list[float]]]:
    """Per method of ``model``, each curve averaged over its images (curves of one length only;
    a missing value, None, is left out of its point's mean)."""
    import numpy as np

    sums: dict[str, dict[str, list[list[float]]]] = {}
    for scored in scores:
        if scored.model != model:
            continue
        for name, values in scored.curves.items():
            sums.setdefault(scored.method, {}).setdefault(name, []).append(values)
    means: dict[str, dict[str, list[float]]] = {}
    for method, curves in sums.items():
        for name, lists in curves.items():
            length = len(lists[0])
            same = [[math.nan if v is None else v for v in values] for values in lists if len(values) == length]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # a stage no image has a correlation for
                mean = np.nanmean(np.asarray(same, dtype=np.float64), axis=0)
            means.setdefault(method, {})[name] = [float(v) if math.isfinite(v) else None for v in mean]
    return means


def curves_picture(model: str) -> str:
    """Where a model's averaged curves are drawn, below the results folder."""
    return f"metrics/{model}-curves.png"
