"""The techniques: one module each, found here by looking.

Every module of this package that defines ``TECHNIQUE`` (a
:class:`cnnvis_tasks.technique.Technique`) is a technique: its command, config
block, workflow jobs and gallery section follow from that description, so a new
technique is a new module (and its test).  Modules here import no torch when
loaded (their functions import it when called), so that the workflow and the
command list read the descriptions cheaply; ``tests/test_startup.py`` checks it.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import pkgutil

from cnnvis_tasks.errors import CnnvisError
from cnnvis_tasks.technique import Technique


@functools.cache
def all_techniques() -> tuple[Technique, ...]:
    """Every technique, in gallery order."""
    found: dict[str, Technique] = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        technique = getattr(module, "TECHNIQUE", None)
        if not isinstance(technique, Technique):
            continue  # a family module: shared pieces, no technique of its own
        if technique.module_name != info.name:
            raise RuntimeError(
                f"technique {technique.name!r} must live in techniques/{technique.module_name}.py, not {info.name}.py"
            )
        found[technique.name] = technique
    return tuple(sorted(found.values(), key=lambda t: (t.order, t.name)))


def technique_names() -> list[str]:
    return [technique.name for technique in all_techniques()]


def get_technique(name: str | Technique) -> Technique:
    """A technique by name (``grad-cam``) or config key (``grad_cam``)."""
    if isinstance(name, Technique):
        return name
    wanted = str(name).replace("_", "-")
    for technique in all_techniques():
        if technique.name == wanted:
            return technique
    close = difflib.get_close_matches(wanted, technique_names(), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise CnnvisError(f"unknown technique {name!r}{hint} (known: {', '.join(technique_names())})")
