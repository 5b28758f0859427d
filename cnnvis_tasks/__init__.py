"""cnnvis: see what a convolutional network does.

From Python, every technique is one call (see :mod:`cnnvis_tasks.api`)::

    import cnnvis_tasks as cv
    result = cv.compute("saliency", cv.load_model(), cv.load_images(["images/chelsea.png"]), method="guided")

Names load lazily: ``import cnnvis_tasks`` imports no torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["compute", "load_images", "load_model", "technique_names"]


def __getattr__(name: str) -> Any:
    if name in ("compute", "load_images", "load_model"):
        from . import api

        return getattr(api, name)
    if name == "technique_names":
        from .techniques import technique_names

        return technique_names
    raise AttributeError(f"module 'cnnvis_tasks' has no attribute {name!r}")
