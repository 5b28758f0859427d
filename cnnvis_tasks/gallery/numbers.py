"""The gallery's view of a table technique's numbers (its description's ``table``,
:class:`cnnvis_tasks.technique.table.Table`): per model, a table of its groups best
first, each measure as mean [95 % interval] (count), the best of each column marked,
then the model's pictures.  The technique's section opens with it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from markupsafe import escape

from cnnvis_tasks.technique.table import Table
from cnnvis_tasks.workflow.tables import group_order


def numbers_view(
    table: Table,
    summary: Sequence[Mapping[str, Any]],
    links: Mapping[str, str],
    pictures: Mapping[str, Sequence[Mapping[str, str]]],
) -> dict[str, Any] | None:
    """What the section shows of ``NAME-summary.csv``'s rows (as read from the CSV, or as
    :func:`cnnvis_tasks.workflow.tables.summarise` makes them); ``links``: the tables'
    files by name, ``pictures``: each model's pictures (``src``, ``alt``), relative to
    the gallery.  None when there is no row."""
    views = []
    for model in dict.fromkeys(str(row["model"]) for row in summary):
        rows = [row for row in summary if row["model"] == model]
        measures = [measure for measure in table.measures if any(row["metric"] == measure.name for row in rows)]
        cells = {(row[table.group], row["metric"]): row for row in rows}
        best = {}
        for measure in measures:
            means = [float(row["mean"]) for row in rows if row["metric"] == measure.name]
            best[measure.name] = max(means) if measure.higher_is_better else min(means)
        groups = []
        for group in group_order(table, rows, model):
            values = []
            for measure in measures:
                row = cells.get((group, measure.name))
                if row is None:
                    values.append({"text": "-", "best": False})
                    continue
                mean, low, high = float(row["mean"]), float(row["low"]), float(row["high"])
                values.append(
                    {
                        "text": f"{mean:.3f} [{low:.3f}, {high:.3f}] (n={row['count']})",
                        "best": mean == best[measure.name],
                    }
                )
            groups.append({"name": group, "cells": values})
        headers = [f"{escape(m.label)} {'&uarr;' if m.higher_is_better else '&darr;'}" for m in measures]
        views.append({"model": model, "headers": headers, "groups": groups, "pictures": list(pictures.get(model, []))})
    if not views:
        return None
    return {
        "heading": table.heading,
        "anchor": table.anchor_name,
        "group": table.group,
        "order": table.order,
        "links": dict(links),
        "models": views,
    }
