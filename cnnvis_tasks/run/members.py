"""The members of a pass: each one technique call (:class:`Member`), its state while the pass runs (:class:`Running`).

A technique command is a pass of one member; ``cnnvis-tasks shared-pass`` a
pass of one member per ``--job``, all over the same images.  A member is what
its own command would run: the technique, its rows, options, targets, the
per-image inputs it reads (:mod:`cnnvis_tasks.io.columns`), renderings, what to
do on a failure and the PNG level; its files are written by its own
:class:`~cnnvis_tasks.run.writer.Writer`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnvis_tasks.errors import CnnvisError
from cnnvis_tasks.io.outputs import DEFAULT_PNG_LEVEL
from cnnvis_tasks.run.rows import Failures, Row, settings
from cnnvis_tasks.run.writer import Writer

if TYPE_CHECKING:
    from cnnvis_tasks.io.columns import Column, Geometry
    from cnnvis_tasks.run.session import Session
    from cnnvis_tasks.technique import PassNeeds, Technique


@dataclass
class Member:
    """One technique call of a pass: what its own command would run."""

    technique: Technique
    rows: Sequence[Row]
    options: dict[str, Any]  # single values, parsed
    targets: Sequence[int | str | None] | None = None  # per image, as the command gives them
    renderings: Sequence[str] = ()
    failures: Failures = field(default_factory=Failures)
    png_level: int = DEFAULT_PNG_LEVEL
    # per-image inputs by column name (cnnvis_tasks.io.columns): per image, its value in the
    # image's own terms or None; only the columns the technique reads are used
    columns: Mapping[str, Sequence[Any]] | None = None
    # a technique that reduces its images (Technique.reduction): the one file its rows go into
    reduced: Path | None = None


def pass_settings(member: Member) -> list[tuple[dict[str, Any], list[int], PassNeeds | str]]:
    """Each setting of a member (its repeatable values, its rows) with what it reads from
    a shared pass, or why it cannot share one."""
    technique = member.technique
    found = []
    for values, positions in settings(member.rows, technique):
        if technique.shares_pass is None or technique.from_pass is None:
            needs: PassNeeds | str = f"{technique.name} has no shared pass (it runs the model its own way)"
        else:
            fixed = {name: technique.option(name).parse(value) for name, value in values.items()}
            needs = technique.shares_pass(member.options | fixed)
        found.append((values, positions, needs))
    return found


@dataclass
class Setting:
    """One setting of a member: its repeatable values (parsed), its rows, and what it
    reads from a shared pass (None: it computes on its own)."""

    fixed: dict[str, Any]
    positions: list[int]
    needs: PassNeeds | None = None
    members: set[int] = field(init=False)

    def __post_init__(self) -> None:
        self.members = set(self.positions)


class Running:
    """A member while its pass runs: its writer, its settings, its targets as class
    indices, its rows by image, its failed rows and the notes it has shown."""

    def __init__(
        self,
        number: int,
        member: Member,
        session: Session,
        images: Sequence[Path],
        warn: Callable[[str], None],
        shared: bool = False,
    ):
        from cnnvis_tasks.io.columns import get_column

        self.number, self.member, self.technique = number, member, member.technique
        self.rows, self.options, self.failures = member.rows, member.options, member.failures
        self.writer = Writer(
            member.technique, session, images, tuple(member.renderings), member.options, warn, member.png_level
        )
        if member.reduced is not None:
            self.writer.reduce_into(member.reduced)
        self.failed: dict[int, str] = {}
        self.noted: set[str] = set()
        self.targets: list[int | None] | None = None
        self.by_image: dict[int | None, list[int]] = {}
        technique = member.technique
        found = pass_settings(member) if shared else [(v, p, None) for v, p in settings(member.rows, technique)]
        self.settings: list[Setting] = []
        for values, positions, needs in found:
            if isinstance(needs, str):
                raise CnnvisError(f"{technique.name} cannot share the pass: {needs}")
            fixed = {name: technique.option(name).parse(value) for name, value in values.items()}
            self.settings.append(Setting(fixed, positions, needs))
        given = member.columns or {}
        self.columns: dict[str, tuple[Column, Sequence[Any]]] = {
            name: (get_column(name), given[name]) for name in technique.columns if given.get(name) is not None
        }
        self._moved: dict[int, dict[str, Any]] = {}  # image -> its per-image inputs on the input, until computed

    def label(self, position: int) -> str:
        return self.writer.label(self.rows[position])

    def index_images(self) -> None:
        """Its rows that have not failed, by image."""
        for position, row in enumerate(self.rows):
            if position not in self.failed:
                self.by_image.setdefault(row.image, []).append(position)

    def wanted(self, batch_images: Sequence[int], setting: Setting) -> list[tuple[int, int]]:
        """(position in the batch, row position) of the rows of ``setting`` in a batch."""
        return [
            (k, p)
            for k, image in enumerate(batch_images)
            for p in self.by_image.get(image, ())
            if p in setting.members and p not in self.failed
        ]

    def batch_targets(self, images: Sequence[int]) -> list[int | None] | None:
        return None if self.targets is None else [self.targets[image] for image in images]

    def column_values(self, images: Sequence[int], geometry: Mapping[int, Geometry]) -> dict[str, list[Any]]:
        """Its per-image inputs of ``images`` (with repeats, one per row) moved onto the
        model's input (``geometry``: how each image became it), by column name."""
        if not self.columns:
            return {}
        moved = {image: self.moved(image, geometry[image]) for image in set(images)}
        for image in moved:  # read once: by the check before the compute, then here
            self._moved.pop(image, None)
        return {name: [moved[image][name] for image in images] for name in self.columns}

    def moved(self, image: int, geometry: Geometry) -> dict[str, Any]:
        """One image's per-image inputs on the model's input, by column name (None: it has
        none); a value that cannot be moved (a mask file that cannot be read) raises
        ValueError or OSError."""
        if image not in self._moved:
            self._moved[image] = {
                name: None if (value := values[image]) is None else column.on_input(value, geometry)
                for name, (column, values) in self.columns.items()
            }
        return self._moved[image]

    def column_keywords(self, values: Mapping[str, list[Any]]) -> dict[str, Any]:
        """What ``compute`` takes of a batch's per-image inputs: each column's batch as its keyword."""
        columns = {name: column for name, (column, _) in self.columns.items()}
        return {columns[name].keyword: columns[name].batch(list(batch)) for name, batch in values.items()}
