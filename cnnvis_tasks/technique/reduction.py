"""Techniques that reduce a data set: each job writes one file for all its images, one job merges them.

A technique whose description has a ``reduction`` (:class:`Reduction`) draws no
picture per image.  Its job (the *map*: one chunk of images) keeps a state that
each computed row is added to, and writes it to one file (``--out``) when its
images are done; the workflow then runs the reduction's own command (the
*reduce*) over every chunk's file, per model and setting, into a folder the
gallery reads.  Adding images re-runs the jobs of the chunks they land in, and the
reduce.  The command of the reduce is made from this description too
(:mod:`cnnvis_tasks.cli.reduce`).  The channel examples
(``techniques/channel_examples.py``) are the first.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from cnnvis_tasks.technique.options import Option


class Reducing(Protocol):
    """The state of a map job: rows go in as they are computed (from writer threads), one file comes out."""

    def add_row(self, image: str, result: Any, position: int) -> None: ...

    def save(self, path: Any) -> None: ...


@dataclass(frozen=True)
class Reduction:
    """What a reducing technique's jobs write and how they are merged; see the module doc."""

    suffix: str  # the map's file ending (".npz")
    help: str  # the --out option's help: what the map's file holds
    start: Callable[[Mapping[str, Any]], Reducing]  # a job's options (parsed) -> its empty state
    command: str  # the reduce's cnnvis-tasks command: FILES... --model-file F --images J --out-dir D
    title: str  # the gallery's name for one reduce's folder ("channel atlas")
    summary: str  # the reduce command's help
    # the reduce: (files, session, out_dir, *, images_file, size, batch_size, warn, **options) -> one line
    # saying what it wrote; ValueError: the files cannot be merged, why
    reduce: Callable[..., str]
    options: tuple[Option, ...] = ()  # the reduce command's own options (given to reduce by name)
