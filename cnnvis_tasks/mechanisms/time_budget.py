"""A time budget for a computation that could run on (the trust metrics of a large image, a
perturbation method's thousands of copies): the loops that send copies through the model
(:func:`.attribution.copy_chunks`) check it between chunks, and a computation past its
budget raises :class:`cnnvis_tasks.errors.OverTimeBudget`, naming the step it was in.

    with time_budget(30.0 * images, per_image=30.0) as budget:
        budget.step("deletion and insertion")
        ...  # copy_chunks checks the budget before each chunk
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from cnnvis_tasks.errors import OverTimeBudget


@dataclass
class Budget:
    seconds: float  # for the whole computation
    per_image: float  # what the message quotes
    start: float = field(default_factory=time.monotonic)
    current: str = ""

    def step(self, name: str) -> None:
        """Check the budget, then name the step that starts (for the message)."""
        self.check()
        self.current = name

    def check(self) -> None:
        spent = time.monotonic() - self.start
        if spent > self.seconds:
            during = f" during {self.current}" if self.current else ""
            raise OverTimeBudget(
                f"stopped after {spent:.1f} s{during}: over the time budget of {self.per_image:g} s per image "
                "(max_seconds)"
            )


_BUDGET: contextvars.ContextVar[Budget | None] = contextvars.ContextVar("cnnvis_time_budget", default=None)


@contextmanager
def time_budget(seconds: float | None, per_image: float | None = None) -> Iterator[Budget | None]:
    """Run the block under a budget of ``seconds`` (None: no budget; a budget already running
    outside stays in force)."""
    if seconds is None:
        yield _BUDGET.get()
        return
    budget = Budget(seconds, per_image if per_image is not None else seconds)
    token = _BUDGET.set(budget)
    try:
        yield budget
    finally:
        _BUDGET.reset(token)


def check_time_budget() -> None:
    """Raise :class:`OverTimeBudget` if the budget in force is spent (nothing without one)."""
    budget = _BUDGET.get()
    if budget is not None:
        budget.check()
