"""The tables of a run: for each technique whose description has a ``table``
(:class:`cnnvis_tasks.technique.table.Table`), its rows from the jobs' records,
``NAME.csv`` (one line per row), ``NAME-summary.csv`` (per model, group and measure:
the mean with a bootstrap 95 % interval and the count), the groups' order, its
pictures, and the summary rules of ``rules/gallery.smk``.  Torch-free (NumPy for the
bootstrap); no technique is named here.

A measure is *better* high or low (:class:`~cnnvis_tasks.technique.table.Measure`).
A model's groups are ordered by their mean rank over the measures that rank, ties
and groups without them by name.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnvis_tasks import techniques
from cnnvis_tasks.errors import CnnvisError
from cnnvis_tasks.technique import Technique
from cnnvis_tasks.technique.table import IMAGE, MODEL, Table


@dataclass
class TableRow:
    """One row's numbers in a table: a job's row (an image, for a model and a setting)."""

    model: str
    image: str
    facts: dict[str, Any]  # the table's identity facts (its group's value a str)
    numbers: dict[str, float]  # measure -> value (the finite ones only)
    measured: dict[str, Any]  # all the record holds of the row: the pictures read it (curves, ...)


def table_techniques() -> list[Technique]:
    """Every technique whose description has a table, in gallery order."""
    return [technique for technique in techniques.all_techniques() if technique.table is not None]


def technique_of_file(path: str | Path) -> Technique:
    """The table technique whose ``NAME.csv`` or ``NAME-summary.csv`` this file is (by its name)."""
    name = Path(path).name
    for technique in table_techniques():
        if name in (technique.table.rows_name, technique.table.summary_name):
            return technique
    known = ", ".join(f"{t.table.rows_name} ({t.name})" for t in table_techniques()) or "none"
    raise CnnvisError(f"{path}: names the table of no technique (known: {known}, and NAME-summary.csv)")


def read_rows(technique: Technique, spec: Mapping[str, Any], root: Path) -> list[TableRow]:
    """Every measured row of the technique's jobs that the spec lists (at its records'
    pattern below ``root``): failed rows, and rows without measured facts, have none."""
    table: Table = technique.table
    found = []
    for entry in spec.get("settings", []):
        if entry["technique"] != technique.name:
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
                facts = {key: measured.get(key, "") for key in table.facts}
                facts[table.group] = str(measured.get(table.group) or entry["setting"])
                numbers = {
                    measure.name: float(measured[measure.name])
                    for measure in table.measures
                    if isinstance(measured.get(measure.name), (int, float)) and math.isfinite(measured[measure.name])
                }
                found.append(TableRow(entry["model"], str(row.get("image", "")), facts, numbers, dict(measured)))
    return found


def row_table(rows: Sequence[TableRow]) -> list[dict[str, Any]]:
    """``NAME.csv``'s rows (by column name): one per row of a job."""
    return [{MODEL: row.model, IMAGE: row.image, **row.facts, **row.numbers} for row in rows]


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


def summarise(table: Table, rows: Sequence[TableRow], resamples: int = 2000, seed: int = 0) -> list[dict[str, Any]]:
    """``NAME-summary.csv``'s rows: per model, group and measure, the mean, bootstrap 95 %
    interval, count and which way is better."""
    groups: dict[tuple[str, str, str], list[float]] = {}
    for row in rows:
        for name, value in row.numbers.items():
            groups.setdefault((row.model, row.facts[table.group], name), []).append(value)
    found = []
    for (model, group, name), values in groups.items():
        low, high = bootstrap_interval(values, resamples, seed)
        found.append(
            {
                MODEL: model,
                table.group: group,
                "metric": name,
                "mean": sum(values) / len(values),
                "low": low,
                "high": high,
                "count": len(values),
                "better": table.measure(name).better,
            }
        )
    return found


def group_order(table: Table, summary: Sequence[Mapping[str, Any]], model: str) -> list[str]:
    """The model's groups (the table's group values) in ``summary``'s rows (as written, or
    read back from the CSV), best first: by their mean rank over the measures that rank
    (ties and groups without them by name)."""
    means: dict[str, dict[str, float]] = {}
    for row in summary:
        if row[MODEL] == model:
            means.setdefault(row[table.group], {})[row["metric"]] = float(row["mean"])
    ranks: dict[str, list[int]] = {group: [] for group in means}
    for measure in table.measures:
        if not measure.ranks:
            continue
        having = [group for group in means if measure.name in means[group]]
        having.sort(
            key=lambda group: -means[group][measure.name] if measure.higher_is_better else means[group][measure.name]
        )
        for rank, group in enumerate(having, start=1):
            ranks[group].append(rank)
    return sorted(means, key=lambda g: (sum(ranks[g]) / len(ranks[g]) if ranks[g] else float("inf"), g))


def to_csv(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _cell(row.get(key, "")) for key in columns})
    return out.getvalue()


def _cell(value: Any) -> Any:
    return f"{value:.6g}" if isinstance(value, float) else value


# --- the workflow: one summary rule per table technique that has jobs --------------------


@dataclass(frozen=True)
class SummaryRule:
    """The rule that writes one table technique's files (``rules/gallery.smk``)."""

    rule: str
    records: list[str]  # its inputs: the records of the technique's jobs
    files: list[str]  # its outputs: NAME.csv first (the command's --out), then the rest
    summary: str  # NAME-summary.csv, which the gallery reads
    log: str


def summary_rules(plan: Any) -> list[SummaryRule]:
    """One per technique of ``plan.table_records`` (technique name -> its jobs' records),
    each writing :meth:`Table.files <cnnvis_tasks.technique.table.Table.files>` in the
    plan's results folder."""
    found = []
    for name, records in plan.table_records.items():
        technique = techniques.get_technique(name)
        table: Table = technique.table
        found.append(
            SummaryRule(
                rule=f"table_summary_{technique.config_key}",
                records=list(records),
                files=table.files(plan.results, plan.models),
                summary=f"{plan.results}/{table.summary_name}",
                log=f"{plan.results}/logs/{table.name}-summary.log",
            )
        )
    return found


def gallery_arguments(plan: Any) -> list[str]:
    """The gallery command's ``--table-summary`` of every summary rule."""
    return [word for rule in summary_rules(plan) for word in ("--table-summary", rule.summary)]
