"""Per-image inputs besides the pixels: the columns of an image list that a technique asks for.

A :class:`Column` is described once, here: how a manifest gives it, how it is
written as text (in a chunk's image list and on the command line, ``--NAME``
once per image), how it is parsed back, how it is moved onto the model's input
(the same resize and crop as the pixels) and how a batch of it reaches a
technique's ``compute`` (one keyword).  A technique names the columns it reads
(``Technique.columns``); the manifest reader, the image lists, the plan, the
command and the runner follow from that.  The label is a column of its own
kind: it decides the target class (``--target label``), see
:mod:`cnnvis_tasks.models.labels`.

Adding a column: one :class:`Column` in :data:`COLUMNS`, the technique that reads
it, a test.  Imports neither torch nor click.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

NONE_TEXT = "none"  # on the command line: this image has no value


@dataclass(frozen=True)
class Geometry:
    """How an image became the model's input: its own size, the shorter side it was
    resized to, and the central square it was cropped to (None: not cropped)."""

    width: int
    height: int
    size: int
    crop: int | None


@dataclass(frozen=True)
class Column:
    """One per-image input; see the module doc."""

    name: str  # the image list's column, the image record's key, the command's --NAME
    keyword: str  # compute's keyword: a batch of the column's values
    help: str  # the command's help for --NAME
    metavar: str
    parse: Callable[[str], Any]  # text (image list, command line) -> value; ValueError says why
    text: Callable[[Any], str]  # value -> text (parse(text(v)) == v)
    manifest_columns: tuple[str, ...]  # what a manifest's header holds it in
    # those columns' texts and the manifest's folder (relative paths) -> value (None: this image has none)
    from_manifest: Callable[[Sequence[str], str], Any]
    on_input: Callable[[Any, Geometry], Any]  # a value in the image's own terms -> on the model's input
    batch: Callable[[list[Any]], Any]  # the values of a batch's rows (None: none) -> what compute takes
    to_json: Callable[[Any], Any] = lambda value: value  # a value as an image record (images.json) holds it
    from_json: Callable[[Any], Any] = lambda value: value

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def parse_given(self, text: str) -> Any:
        """A value as given on the command line or in an image list: empty or ``none`` is None."""
        text = text.strip()
        return None if not text or text.lower() == NONE_TEXT else self.parse(text)


# --- the bounding box --------------------------------------------------------------------

Box = tuple[float, float, float, float]
# A manifest's bounding-box columns: pixel coordinates in the image as shown (EXIF
# orientation applied), left, top, right, bottom, with (0, 0) the top-left corner of the
# top-left pixel, so that the box 0, 0, WIDTH, HEIGHT holds the whole image.
BOX_COLUMNS = ("xmin", "ymin", "xmax", "ymax")


def parse_box(values: Sequence[str] | str) -> Box:
    """A bounding box from its four coordinates, as four texts or one text of four
    numbers separated by commas or spaces; ValueError says what is wrong with it."""
    parts = values.replace(",", " ").split() if isinstance(values, str) else [str(v).strip() for v in values]
    if len(parts) != 4:
        raise ValueError(f"a box is 4 numbers (xmin, ymin, xmax, ymax), got {len(parts)}")
    try:
        box = tuple(float(part) for part in parts)
    except ValueError:
        raise ValueError(f"a box is 4 numbers (xmin, ymin, xmax, ymax), got {', '.join(parts)}") from None
    if not all(math.isfinite(value) for value in box):
        raise ValueError(f"a box's coordinates must be finite numbers, got {', '.join(parts)}")
    if not (box[2] > box[0] and box[3] > box[1]):
        raise ValueError(f"a box needs xmax > xmin and ymax > ymin, got {', '.join(parts)}")
    return box  # type: ignore[return-value]


def box_text(box: Sequence[float] | None) -> str:
    """A box as image lists write it: four numbers separated by spaces ("" for none)."""
    return "" if box is None else " ".join(f"{value:g}" for value in box)


def _box_from_manifest(texts: Sequence[str], root: str) -> Box | None:
    return parse_box(texts) if any(text.strip() for text in texts) else None  # all empty: no box


def box_on_input(box: Sequence[float], geometry: Geometry) -> Box | None:
    """A box in an image's pixels as it lies on the model's input (resized to shorter side
    ``size``, or the central square cropped to ``crop``), clipped to it; None when nothing
    of it is left (it lies outside the crop)."""
    width, height = geometry.width, geometry.height
    if geometry.crop:
        square = min(width, height)
        left, top = (width - square) / 2, (height - square) / 2
        scale_x = scale_y = geometry.crop / square
        out_width = out_height = geometry.crop
    else:
        from cnnvis_tasks.io.images import resized

        out_width, out_height = resized(width, height, geometry.size)
        left, top, scale_x, scale_y = 0.0, 0.0, out_width / width, out_height / height
    x0, y0, x1, y1 = (
        (box[0] - left) * scale_x,
        (box[1] - top) * scale_y,
        (box[2] - left) * scale_x,
        (box[3] - top) * scale_y,
    )
    x0, x1 = max(0.0, x0), min(float(out_width), x1)
    y0, y1 = max(0.0, y0), min(float(out_height), y1)
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def _box_batch(boxes: list[Box | None]) -> Any:
    """(N, 4) float32 x0, y0, x1, y1 on the input, NaN where a row has no box."""
    import torch

    nan = (math.nan,) * 4
    return torch.tensor([box or nan for box in boxes], dtype=torch.float32)


BOX = Column(
    name="box",
    keyword="boxes",
    help="Each image's bounding box in its own pixels ((0, 0): the top-left corner; 'none': no box), once for "
    "all images or once per --image, in order; an --image-list takes them from its box column. Resized and "
    "cropped with the image.",
    metavar="XMIN,YMIN,XMAX,YMAX|none",
    parse=parse_box,
    text=box_text,
    manifest_columns=BOX_COLUMNS,
    from_manifest=_box_from_manifest,
    on_input=box_on_input,
    batch=_box_batch,
    to_json=list,
    from_json=lambda value: tuple(float(v) for v in value),
)

# --- the segmentation mask ----------------------------------------------------------------


def _mask_from_manifest(texts: Sequence[str], root: str) -> str | None:
    """A mask's path (a manifest's ``mask`` column), relative to the manifest's folder as its images are."""
    import os

    text = texts[0].strip()
    if not text:
        return None
    path = os.path.expanduser(text)
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(root, path))


def mask_on_input(path: str, geometry: Geometry) -> Any:
    """A mask file (any image as large as its image; nonzero pixels are the object) as an
    H x W bool array on the model's input: resized and cropped as the pixels are, nearest
    neighbour so that it stays a mask.  ValueError says why it cannot be used."""
    import numpy as np
    from PIL import Image, ImageOps

    from cnnvis_tasks.io.images import resized

    try:
        with Image.open(path) as opened:
            mask = ImageOps.exif_transpose(opened).convert("L")
    except (OSError, ValueError) as error:
        raise ValueError(f"mask {path} cannot be read: {error}") from None
    if mask.size != (geometry.width, geometry.height):
        raise ValueError(f"mask {path} is {mask.width} x {mask.height}, its image {geometry.width} x {geometry.height}")
    if geometry.crop:
        square = min(mask.size)
        left, top = (mask.width - square) / 2, (mask.height - square) / 2
        box = (left, top, left + square, top + square)
        mask = mask.resize((geometry.crop, geometry.crop), Image.Resampling.NEAREST, box=box)
    elif resized(*mask.size, geometry.size) != mask.size:
        mask = mask.resize(resized(*mask.size, geometry.size), Image.Resampling.NEAREST)
    return np.asarray(mask) > 0


def _mask_batch(masks: list[Any]) -> Any:
    """(N, H, W) float32: 1 inside a row's mask, 0 outside, NaN where a row has none."""
    import numpy as np
    import torch

    shape = next((mask.shape for mask in masks if mask is not None), (1, 1))
    return torch.from_numpy(
        np.stack([np.full(shape, np.nan, np.float32) if m is None else m.astype(np.float32) for m in masks])
    )


MASK = Column(
    name="mask",
    keyword="masks",
    help="Each image's segmentation mask: an image file as large as it, whose nonzero pixels are the object "
    "('none': no mask), once for all images or once per --image, in order; an --image-list takes them from its "
    "mask column. Resized and cropped with the image.",
    metavar="PATH|none",
    parse=str,
    text=str,
    manifest_columns=("mask",),
    from_manifest=_mask_from_manifest,
    on_input=mask_on_input,
    batch=_mask_batch,
)

# Every per-image input, by name, in the order image lists write them.
COLUMNS: dict[str, Column] = {column.name: column for column in (BOX, MASK)}


def get_column(name: str) -> Column:
    if name not in COLUMNS:
        raise KeyError(f"no per-image column {name!r}; known: {', '.join(COLUMNS)}")
    return COLUMNS[name]


def columns_text(values: Mapping[str, Any]) -> dict[str, str]:
    """An image's column values as text, by column name (the columns it has a value in)."""
    return {name: COLUMNS[name].text(value) for name, value in values.items() if value is not None}
