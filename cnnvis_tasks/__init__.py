"""cnnvis: see what a convolutional network does.

From Python, every technique is one call (see :mod:`cnnvis_tasks.api` and ``docs/python.md``)::

    import cnnvis_tasks as cv
    result = cv.compute("grad-cam", my_module, "images/chelsea.png", target="tabby", classes=names)
    cv.save_picture(result, 0, "cat.png", "overlay")

Names load lazily: ``import cnnvis_tasks`` imports no torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Method", "compute", "load_images", "load_model", "save_picture", "technique_names", "wrap_model"]


def __getattr__(name: str) -> Any:
    if name in ("Method", "compute", "load_images", "load_model", "save_picture", "wrap_model"):
        from cnnvis_tasks import api

        return getattr(api, name)
    if name == "technique_names":
        from cnnvis_tasks.techniques import technique_names

        return technique_names
    raise AttributeError(f"module 'cnnvis_tasks' has no attribute {name!r}")
