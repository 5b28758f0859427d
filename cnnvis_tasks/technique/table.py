"""Numbers as a kind of output: the table a technique's rows make (:class:`Table`).

A technique that measures something of each row (the trust metrics: how faithful an
attribution method's map is to the model, per image) returns the numbers in its
result's ``row_numbers`` and what they are of in ``row_facts``; the runner writes both
in the job's record, per row (``measured``).  Its description's ``table`` says what
those numbers are, and everything else follows from it, with no technique named in
generic code:

* the run's files (:meth:`Table.files`): ``NAME.csv``, one line per row (its
  :attr:`~Table.identity`, then each :class:`Measure`); ``NAME-summary.csv``, per
  model, :attr:`~Table.group` value and measure, the mean with a bootstrap 95 %
  interval and the count; and the table's pictures, one per model and
  :class:`TablePicture` (``NAME/MODEL-PICTURE.png``), drawn from the model's rows
  (:mod:`cnnvis_tasks.workflow.tables`, the ``table-summary`` command and its rule);
* the gallery: the technique's section opens with one table per model, its groups
  best first (by their mean rank over the measures that :attr:`~Measure.ranks`), each
  measure as mean [interval] (count), the best of each column in bold, then its
  pictures;
* each picture's caption in the gallery: the row's numbers (:meth:`Table.caption`),
  unless the technique gives a caption of its own.

Imports neither torch nor click.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

MODEL, IMAGE = "model", "image"  # identity columns that come from the job and the row, not the measured facts


@dataclass(frozen=True)
class Measure:
    """One number each row may have: a column of the table."""

    name: str  # the key in the record's measured facts, the column of NAME.csv
    label: str  # the gallery's column header
    higher_is_better: bool
    short: str = ""  # in captions and in the gallery's note on the order (default: the name)
    ranks: bool = True  # counts in the groups' order (False: shown beside, a check of another kind)
    # a column of NAME.csv only when some row has it (a measure of an optional per-image input,
    # such as a mask): a run that gives none keeps the columns it always had
    optional: bool = False
    # the gallery's image index (images.html) sorts the images by it, per group (method)
    sorts: bool = False
    # the share of the row's map inside the image's object (its box): the gallery's view of
    # the explanations that lie outside the object compares it with the box's share of the image
    inside_object: bool = False

    @property
    def better(self) -> str:
        """``higher`` or ``lower``: the summary's column and the gallery's arrow."""
        return "higher" if self.higher_is_better else "lower"

    @property
    def brief(self) -> str:
        return self.short or self.name


@dataclass(frozen=True)
class TablePicture:
    """A picture drawn once per model from the model's rows (averaged curves, a histogram)."""

    name: str  # the file: NAME/MODEL-PICTURE.png below the results folder
    alt: str  # what it shows, after "MODEL: " (the gallery's alt text)
    # (the model's rows, cnnvis_tasks.workflow.tables.TableRow; the model) -> an H x W x 3
    # uint8 array, or None when there is nothing to draw (then a 1 x 1 white picture)
    draw: Callable[[Sequence[Any], str], Any]


@dataclass(frozen=True)
class Table:
    """What the numbers of a technique's rows are; see the module doc."""

    name: str  # the files' stem: NAME.csv, NAME-summary.csv, NAME/ (the pictures)
    measures: tuple[Measure, ...]
    # NAME.csv's columns before the measures, in order: "model" (the job's), "image" (the
    # row's) and facts of the row's measured record (missing: an empty cell)
    identity: tuple[str, ...]
    # the fact the summary compares: one summary row per model, value of it and measure
    # (a row without it takes its job's setting)
    group: str
    heading: str  # the gallery's heading of each model's table: "HEADING: MODEL"
    anchor: str = ""  # the gallery's id of a model's table: ANCHOR--MODEL (default: the name)
    pictures: tuple[TablePicture, ...] = ()

    def __post_init__(self) -> None:
        names = [measure.name for measure in self.measures]
        if MODEL not in self.identity or IMAGE not in self.identity:
            raise ValueError(f"table {self.name}: its identity must hold {MODEL!r} and {IMAGE!r}")
        if self.group not in self.identity or self.group in (MODEL, IMAGE):
            raise ValueError(f"table {self.name}: its group {self.group!r} must be a row fact of its identity")
        if len(set(names)) != len(names) or set(names) & set(self.identity):
            raise ValueError(f"table {self.name}: measure names must be unique and not identity columns")

    @property
    def rows_name(self) -> str:
        return f"{self.name}.csv"

    @property
    def summary_name(self) -> str:
        return f"{self.name}-summary.csv"

    @property
    def facts(self) -> tuple[str, ...]:
        """The identity columns read from the measured facts."""
        return tuple(key for key in self.identity if key not in (MODEL, IMAGE))

    @property
    def row_columns(self) -> tuple[str, ...]:
        """NAME.csv's header, the optional measures left out (:meth:`columns_for` adds those a run has)."""
        return (*self.identity, *(measure.name for measure in self.measures if not measure.optional))

    def columns_for(self, measured: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
        """NAME.csv's header for these rows: :attr:`row_columns` and the optional measures some row has."""
        kept = [m for m in self.measures if not m.optional or any(m.name in row for row in measured)]
        return (*self.identity, *(measure.name for measure in kept))

    @property
    def summary_columns(self) -> tuple[str, ...]:
        """NAME-summary.csv's header."""
        return (MODEL, self.group, "metric", "mean", "low", "high", "count", "better")

    @property
    def anchor_name(self) -> str:
        return self.anchor or self.name

    def measure(self, name: str) -> Measure:
        for measure in self.measures:
            if measure.name == name:
                return measure
        raise KeyError(f"table {self.name} has no measure {name!r}")

    def picture_name(self, model: str, picture: TablePicture) -> str:
        """Where a model's picture is drawn, below the results folder."""
        return f"{self.name}/{model}-{picture.name}.png"

    def files(self, results: str, models: Sequence[str]) -> list[str]:
        """What its summary writes in ``results``: NAME.csv first, NAME-summary.csv, then
        each model's pictures."""
        names = [self.rows_name, self.summary_name]
        names += [self.picture_name(model, picture) for model in models for picture in self.pictures]
        return [f"{results}/{name}" for name in names]

    @property
    def order(self) -> str:
        """How the gallery orders the groups, in words (after "ordered by")."""
        ranked = [measure.brief for measure in self.measures if measure.ranks]
        if not ranked:
            return "name"
        listed = ranked[0] if len(ranked) == 1 else f"{', '.join(ranked[:-1])} and {ranked[-1]}"
        return f"their mean rank over {listed}"

    def caption(self, meta: Mapping[str, Any]) -> list[str]:
        """A picture's numbers (its facts: the row's measured numbers), two per line."""
        found = [
            f"{measure.brief} {meta[measure.name]:.3f}"
            for measure in self.measures
            if isinstance(meta.get(measure.name), (int, float))
        ]
        return [" \u00b7 ".join(found[i : i + 2]) for i in range(0, len(found), 2)]
