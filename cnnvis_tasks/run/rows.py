"""What a call computes: its rows (:class:`Row`), their settings, and what to do when one fails (:class:`Failures`)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cnnvis_tasks.technique import Technique

RAW = "raw"  # the output name of a row's raw array, beside its renderings


@dataclass
class Row:
    """One row of a call: an image (its index in the call's images) or none, the
    values of the repeatable options, and where its files go (rendering or
    ``raw`` -> path)."""

    image: int | None
    values: dict[str, Any]
    outputs: dict[str, Path] = field(default_factory=dict)


@dataclass
class Failures:
    """What to do when one row fails: stop (the default), or go on; with
    ``placeholders``, a failed row still gets every file, a 1 x 1 picture whose
    facts say why (so that a workflow finds every output it expects)."""

    keep_going: bool = False
    placeholders: bool = False
    record: Path | None = None  # a JSON file: every row's status and reason


def combinations(technique: Technique, values: dict[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of the repeatable options' values, in the order given
    (the last option varies fastest); kernels' layers and parameters are rows of
    their own instead (``ModelRows("either")``)."""
    names = [option.name for option in technique.repeatable if values.get(option.name)]
    if technique.model_rows.mode == "either":
        return [{name: value} for name in names for value in values[name]]
    return [dict(zip(names, combo)) for combo in itertools.product(*(values[name] for name in names))]


def settings(rows: Sequence[Row], technique: Technique) -> list[tuple[dict[str, Any], list[int]]]:
    """Rows grouped by the values of their options that cannot vary within a batch,
    in order of first appearance: [(those values, row positions)]."""
    fixed = [option.name for option in technique.repeatable if not option.per_row]
    groups: dict[tuple, tuple[dict[str, Any], list[int]]] = {}
    for position, row in enumerate(rows):
        key = tuple((name, repr(row.values.get(name))) for name in fixed)
        values = {name: row.values[name] for name in fixed if name in row.values}
        groups.setdefault(key, (values, []))[1].append(position)
    return list(groups.values())
