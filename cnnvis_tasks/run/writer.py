"""A call's files: each row's pictures and raw array, a failed row's placeholders, the call's record.

One :class:`Writer` per technique call (a member of a pass, see
:mod:`cnnvis_tasks.run.members`): it renders a row of a host result and writes
its files atomically with their facts as PNG text, on a writer thread
(:class:`cnnvis_tasks.run.pipeline.Behind`), and keeps what the technique measured
of each row for the record.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnvis_tasks.io.outputs import DEFAULT_PNG_LEVEL, atomic_write, save_npy, save_png
from cnnvis_tasks.run.rows import RAW, Row

if TYPE_CHECKING:
    from cnnvis_tasks.run.session import Session
    from cnnvis_tasks.technique import Result, Technique


def _finite(value: Any) -> float | None:
    """A number for a JSON record: NaN and infinities (undefined) as None."""
    number = float(value)
    return number if math.isfinite(number) else None


class Writer:
    """Renders each row of a result and writes its files."""

    def __init__(
        self,
        technique: Technique,
        session: Session,
        images: Sequence[Path],
        renderings: tuple[str, ...],
        options: dict[str, Any],
        warn: Callable[[str], None],
        png_level: int = DEFAULT_PNG_LEVEL,
    ):
        self.technique, self.session, self.images = technique, session, images
        self.renderings, self.options, self.warn = renderings, options, warn
        self.png_level = png_level
        # each written row's own numbers and facts (Result.row_numbers, row_facts), by id(row), for the record
        self.measured: dict[int, dict[str, Any]] = {}
        self.reducing: Any = None  # a reducing technique's state (Technique.reduction), and its file
        self.reduced: Path | None = None
        self.written = 0  # rows' files written in full (pictures, arrays, placeholders), for a disk-full message
        self._counting = threading.Lock()  # rows are written on several threads

    def _wrote(self, count: int = 1) -> None:
        with self._counting:
            self.written += count

    def reduce_into(self, path: Path) -> None:
        """Rows go into the technique's reduction, written to ``path`` by :meth:`finish`."""
        self.reducing, self.reduced = self.technique.reduction.start(self.options), path

    def finish(self) -> None:
        """Write the reduction's file (every row is in)."""
        if self.reducing is not None:
            self.reducing.save(self.reduced)

    def placeholder(self, row: Row, why: str) -> None:
        """A failed row's files: 1 x 1 gray pictures whose facts say why, an empty array."""
        import numpy as np

        record = self.base(row) | {"status": "failed", "reason": why}
        for name, path in row.outputs.items():
            if name == RAW:
                save_npy(path, np.zeros((0,), dtype=np.float32))
            else:
                save_png(path, np.full((1, 1, 3), 128, dtype=np.uint8), record | {"rendering": name}, self.png_level)
            self._wrote()

    def record(self, path: Path, rows: Sequence[Row], failed: dict[int, str]) -> None:
        """Every row's status, as JSON: image, setting, status (ok|failed), reason, and
        what the technique measured of the row (``measured``: its row numbers and facts), if anything."""
        entries = []
        for position, row in enumerate(rows):
            entries.append(
                {
                    "image": str(self.images[row.image]) if row.image is not None else None,
                    "setting": self.technique.setting_name(row.values),
                    "status": "failed" if position in failed else "ok",
                    "reason": failed.get(position),
                }
            )
            measured = self.measured.get(id(row)) if position not in failed else None
            if measured:
                entries[-1]["measured"] = measured
        text = json.dumps(
            {"technique": self.technique.name, "model": self.session.model.name, "rows": entries}, indent=1
        )
        atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))

    def base(self, row: Row) -> dict[str, Any]:
        record = {
            "technique": self.technique.name,
            "model": self.session.model.name,
            "weights": self.session.model.weights,
            "preprocessing": self.session.model.preprocessing,
        }
        if row.image is not None:
            record["image"] = str(self.images[row.image])
        return record

    def write(self, result: Result, position: int, row: Row) -> list[str]:
        """Render the row at ``position`` of a host result and write its files; returns
        its warnings.  Runs on a writer thread: NumPy and Pillow, no torch ops."""
        from cnnvis_tasks.render import as_array

        warnings: list[str] = []
        record = self.base(row) | result.record(position, self.session.model.class_name)
        measured: dict[str, Any] = {name: _finite(values[position]) for name, values in result.row_numbers.items()}
        measured |= result.row_facts[position] if result.row_facts is not None else {}
        if measured:
            self.measured[id(row)] = measured
        if self.reducing is not None:
            self.reducing.add_row(str(self.images[row.image]) if row.image is not None else "", result, position)
        if self.renderings:
            several = self.technique.several_renderings
            rendered = self.technique.render(result, position, self.renderings, self.options)
            for name in self.renderings:
                picture, facts = rendered.pictures[name]
                facts = record | facts | ({"rendering": name} if several else {})
                save_png(row.outputs[name], picture, facts, self.png_level)
                self._wrote()
            warnings = list(rendered.warnings)
        if RAW in row.outputs:
            save_npy(row.outputs[RAW], as_array(result.maps[position]))
            self._wrote()
        return warnings

    def label(self, row: Row) -> str:
        if row.image is not None:
            return str(self.images[row.image])
        return self.technique.setting_name(row.values) or self.technique.name

    def snapshots(self, positions: Sequence[int], rows: Sequence[Row]) -> Callable[[int, Any], None] | None:
        """Writes each row's intermediate picture beside its first picture."""
        paths = [
            next((rows[p].outputs[name] for name in self.renderings if name in rows[p].outputs), None)
            for p in positions
        ]
        if not self.technique.reports_steps or not any(paths):
            return None

        def snapshot(step: int, pixels: Any) -> None:
            from cnnvis_tasks.render import to_uint8

            for path, image in zip(paths, pixels):
                if path is not None:
                    save_png(
                        path.with_name(f"{path.stem}.step{step:04d}.png"),
                        to_uint8(image),
                        {"technique": self.technique.name, "step": step},
                        self.png_level,
                    )

        return snapshot
