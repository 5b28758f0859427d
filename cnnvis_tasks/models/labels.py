"""Labels: the true class of an image, as a data set states it.

A label is a class name of the model (``tabby``; exactly as written first, so that a
class named ``10`` or ``n01440764`` is that class, then without regard to case,
spaces or underscores), a class index (``281``) or, for a model with ImageNet's 1000
classes, an ImageNet WordNet ID (``n02123045``).  It comes from a manifest's ``label`` column or from the
folder an image sits in (a class-folder layout).  Torch-free.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from importlib.resources import files

from cnnvis_tasks.errors import CnnvisError

_WNID = re.compile(r"^n\d{8}$")


@functools.cache
def imagenet_wnids() -> tuple[str, ...]:
    """The 1000 ImageNet-1k WordNet IDs in class-index order (the sorted IDs)."""
    return tuple((files("cnnvis_tasks") / "data" / "imagenet_wnids.txt").read_text(encoding="utf-8").split())


def _key(name: str) -> str:
    return re.sub(r"[\s_]+", " ", name.strip()).casefold()


def resolve_label(label: str | int, categories: Sequence[str], model: str = "the model") -> int:
    """The class index a label names among ``categories``; a one-line error if none."""
    text = str(label).strip()
    if not text:
        raise CnnvisError(
            "no label (target: label): give it a label column in the manifest, or put it in a folder named by its class"
        )
    exact = _exact_names(tuple(categories))
    if text in exact:  # a class named '10' or 'n01440764' is that class, whatever its index
        return exact[text]
    if re.fullmatch(r"\d+", text):
        index = int(text)
        if index < len(categories):
            return index
        raise CnnvisError(f"label {text}: class index out of range for {model} (0..{len(categories) - 1})")
    if _WNID.match(text) and len(categories) == len(imagenet_wnids()):
        try:
            return imagenet_wnids().index(text)
        except ValueError:
            raise CnnvisError(f"label {text}: not one of ImageNet-1k's WordNet IDs") from None
    names = _names(tuple(categories))
    if _key(text) in names:
        return names[_key(text)]
    if _WNID.match(text):
        raise CnnvisError(
            f"label {text}: a WordNet ID, but {model} has {len(categories)} classes, not ImageNet's, and none is "
            "named so"
        )
    shown = ", ".join(categories[:5]) + (", ..." if len(categories) > 5 else "")
    raise CnnvisError(
        f"label {text!r} names no class of {model} (neither a class index, a WordNet ID nor one of its "
        f"{len(categories)} class names: {shown})"
    )


@functools.cache
def _exact_names(categories: tuple[str, ...]) -> dict[str, int]:
    exact: dict[str, int] = {}
    for index, name in enumerate(categories):
        exact.setdefault(name, index)
    return exact


@functools.cache
def _names(categories: tuple[str, ...]) -> dict[str, int]:
    names: dict[str, int] = {}
    for index, name in enumerate(categories):
        names.setdefault(_key(name), index)
    return names
