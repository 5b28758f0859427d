"""A data set whose class is decided by one object at a known place.

Each image is a noisy background with clutter: a few lines and distractor shapes of
every class (and of three shapes of no class), in colours other than red.  The one red shape decides the class (its
kind: circle, square, triangle or cross), and its bounding box goes in the manifest.
A model that classifies these images must find the red shape and tell its kind, so
an explanation of the right class points inside the box: the proof that cnnvis
explains a user's own model, with its own classes, for the right class.

:func:`make_dataset` writes an ImageFolder layout (``ROOT/CLASS/NAME.png``) and
``ROOT/manifest.csv`` (``path,label,xmin,ymin,xmax,ymax``, the format of
:mod:`cnnvis_tasks.io.image_list`); :func:`load_tensors` reads the images as cnnvis
itself does (:func:`cnnvis_tasks.io.images.load_image`).  The small classifier trained
on it is in :mod:`cnnvis_tasks.io.synthetic_model`.

Torch is imported by the function that needs it.
"""

from __future__ import annotations

import csv
import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw

from cnnvis_tasks.models.class_lists import folder_classes  # noqa: F401  (the classes of a split: ImageFolder's order)

if TYPE_CHECKING:
    import torch

CLASSES = ("circle", "square", "triangle", "cross")
# Shapes of no class, among the distractors only.
OTHER_SHAPES = ("diamond", "ring", "bar")
SHAPES = CLASSES + OTHER_SHAPES
SIZE = 160
MANIFEST = "manifest.csv"
MANIFEST_COLUMNS = ("path", "label", "xmin", "ymin", "xmax", "ymax")
# The deciding object is red; nothing else is.  With the noise bounded by NOISE, a pixel
# is the object exactly when red - max(green, blue) > RED_MARGIN (see is_object_pixel):
# the object's own colour gives at least 103, the background and distractors at most 78.
OBJECT_RED = (200, 236)
OBJECT_OTHER = (20, 50)
DISTRACTOR_COLOURS = (
    (40, 90, 220),
    (40, 170, 60),
    (230, 200, 40),
    (150, 60, 190),
    (40, 190, 200),
    (235, 235, 235),
    (20, 20, 20),
)
NOISE = 24
RED_MARGIN = 90
# Side of the deciding object and of the distractors, as shares of the image's side (each
# side then jittered by up to 15 %): the object's box is 10 % to 18 % of the image, 7 % to
# 23 % at the extremes.
OBJECT_SIDE = (0.32, 0.42)
DISTRACTOR_SIDE = (0.14, 0.28)
DISTRACTORS = (3, 6)
ODD_NAME = "{split} ünï {index:04d}.png"  # a space and non-ASCII letters: the first image of each class
NAME = "{split}-{index:04d}.png"


@dataclass(frozen=True)
class Record:
    """One image: its file, its class (the folder's name), the deciding object's box
    (xmin, ymin, xmax, ymax in the image's pixels, xmax and ymax one past the last
    column and row) and the split it belongs to."""

    path: Path
    label: str
    box: tuple[int, int, int, int]
    split: str

    @property
    def box_share(self) -> float:
        """The box's area as a share of the image's (the image is square, its side from the file)."""
        with Image.open(self.path) as image:
            width, height = image.size
        xmin, ymin, xmax, ymax = self.box
        return (xmax - xmin) * (ymax - ymin) / (width * height)


def is_object_pixel(pixels: np.ndarray) -> np.ndarray:
    """(H, W) bool: which pixels of an (H, W, 3) uint8 image of this data set are the red object's."""
    channels = pixels.astype(np.int16)
    return channels[..., 0] - np.maximum(channels[..., 1], channels[..., 2]) > RED_MARGIN


def _shape(draw: ImageDraw.ImageDraw, kind: str, box: tuple[int, int, int, int], fill, flip: bool) -> None:
    """Draw ``kind`` filling ``box`` (x0, y0, x1, y1; x1 and y1 one past the last pixel)."""
    x0, y0, x1, y1 = box
    right, bottom = x1 - 1, y1 - 1
    if kind == "circle":
        draw.ellipse((x0, y0, right, bottom), fill=fill)
    elif kind == "square":
        draw.rectangle((x0, y0, right, bottom), fill=fill)
    elif kind == "triangle":
        apex, base = (y0, bottom) if not flip else (bottom, y0)
        draw.polygon([(x0, base), ((x0 + right) / 2, apex), (right, base)], fill=fill)
    elif kind == "cross":
        arm_x, arm_y = max(2, round((x1 - x0) / 3)), max(2, round((y1 - y0) / 3))
        middle_x, middle_y = x0 + (x1 - x0 - arm_x) // 2, y0 + (y1 - y0 - arm_y) // 2
        draw.rectangle((middle_x, y0, middle_x + arm_x - 1, bottom), fill=fill)
        draw.rectangle((x0, middle_y, right, middle_y + arm_y - 1), fill=fill)
    elif kind == "diamond":
        middle_x, middle_y = (x0 + right) / 2, (y0 + bottom) / 2
        draw.polygon([(middle_x, y0), (right, middle_y), (middle_x, bottom), (x0, middle_y)], fill=fill)
    elif kind == "ring":
        draw.ellipse((x0, y0, right, bottom), outline=fill, width=max(2, round((x1 - x0) / 6)))
    elif kind == "bar":  # a thick diagonal stroke corner to corner
        draw.line(
            [(x0, y0), (right, bottom)] if not flip else [(x0, bottom), (right, y0)],
            fill=fill,
            width=max(3, round((x1 - x0) / 4)),
        )
    else:
        raise ValueError(f"unknown shape {kind!r}: expected one of {', '.join(SHAPES)}")


def _overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int], margin: int) -> bool:
    return a[0] < b[2] + margin and b[0] < a[2] + margin and a[1] < b[3] + margin and b[1] < a[3] + margin


def _square_box(rng: np.random.Generator, size: int, side_range: tuple[float, float]) -> tuple[int, int, int, int]:
    """A box of random side (a share of ``size`` in ``side_range``, the aspect ratio jittered) inside the image."""
    side = rng.uniform(*side_range) * size
    width = max(4, round(side * rng.uniform(0.85, 1.15)))
    height = max(4, round(side * rng.uniform(0.85, 1.15)))
    x0 = int(rng.integers(0, size - width + 1))
    y0 = int(rng.integers(0, size - height + 1))
    return x0, y0, x0 + width, y0 + height


def draw_image(kind: str, size: int, rng: np.random.Generator) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """One image: (H, W, 3) uint8 pixels, and the box of its red ``kind`` shape, as drawn."""
    # background: a gradient between two muted colours along a random direction
    low, high = (rng.uniform(70, 190) + rng.uniform(-15, 15, size=3) for _ in range(2))
    angle = rng.uniform(0, 2 * math.pi)
    ys, xs = np.mgrid[0:size, 0:size] / max(1, size - 1)
    t = (np.cos(angle) * xs + np.sin(angle) * ys + 1) / 2
    background = low[None, None] * (1 - t[..., None]) + high[None, None] * t[..., None]
    canvas = Image.fromarray(np.clip(background, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(2, 6))):  # clutter: thin lines anywhere, under the shapes
        grey = int(rng.integers(40, 220))
        points = [tuple(float(v) for v in rng.uniform(0, size, 2)) for _ in range(2)]
        draw.line(points, fill=(grey, grey, grey), width=int(rng.integers(1, 3)))
    box = _square_box(rng, size, OBJECT_SIDE)
    colour = (int(rng.integers(*OBJECT_RED)), int(rng.integers(*OBJECT_OTHER)), int(rng.integers(*OBJECT_OTHER)))
    mask = Image.new("L", canvas.size, 0)
    flip = bool(rng.integers(0, 2))
    _shape(draw, kind, box, colour, flip)
    _shape(ImageDraw.Draw(mask), kind, box, 255, flip)
    for _ in range(int(rng.integers(DISTRACTORS[0], DISTRACTORS[1] + 1))):
        for _attempt in range(30):
            other = _square_box(rng, size, DISTRACTOR_SIDE)
            # clear of the object's box, so that the box holds the object alone; distractors may touch
            if not _overlaps(other, box, margin=2):
                break
        else:
            continue
        fill = DISTRACTOR_COLOURS[int(rng.integers(0, len(DISTRACTOR_COLOURS)))]
        _shape(draw, SHAPES[int(rng.integers(0, len(SHAPES)))], other, fill, bool(rng.integers(0, 2)))
    noise = rng.integers(-NOISE, NOISE + 1, size=(size, size, 3))
    pixels = np.clip(np.asarray(canvas, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
    drawn = mask.getbbox()  # the object as drawn: left, top, one past right, one past bottom
    return pixels, drawn


def _image_rng(seed: int, split: str, class_index: int, index: int) -> np.random.Generator:
    # one generator per image: an image does not change with per_class or the other classes
    return np.random.default_rng([seed, zlib.crc32(split.encode("utf-8")), class_index, index])


def make_dataset(
    root: str | Path,
    classes: Sequence[str] = CLASSES,
    per_class: int = 150,
    size: int = SIZE,
    seed: int = 0,
    split: str = "train",
) -> list[Record]:
    """Write ``per_class`` images of each class as ``ROOT/CLASS/NAME.png`` (``size`` x
    ``size``) and ``ROOT/manifest.csv`` (path relative to ROOT, label, the red object's
    box); the records, class by class.  ``classes`` are shape names of :data:`SHAPES`.
    One root per split: ``split`` names the files and seeds the images, so that two
    splits of one seed share no image."""
    root = Path(root)
    unknown = [name for name in classes if name not in SHAPES]
    if unknown:
        raise ValueError(f"unknown classes {unknown}: each class is a shape, one of {', '.join(SHAPES)}")
    records = []
    for label in classes:
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            pixels, box = draw_image(label, size, _image_rng(seed, split, SHAPES.index(label), index))
            name = (ODD_NAME if index == 0 else NAME).format(split=split, index=index)
            path = folder / name
            Image.fromarray(pixels, "RGB").save(path, format="PNG")
            records.append(Record(path=path, label=label, box=tuple(int(v) for v in box), split=split))
    with (root / MANIFEST).open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(MANIFEST_COLUMNS)
        for record in records:
            writer.writerow([record.path.relative_to(root).as_posix(), record.label, *record.box])
    return records


def read_manifest(root: str | Path, split: str = "") -> list[Record]:
    """The records of ``ROOT/manifest.csv`` as :func:`make_dataset` wrote them."""
    root = Path(root)
    with (root / MANIFEST).open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [
        Record(
            path=root / row["path"],
            label=row["label"],
            box=tuple(int(row[key]) for key in MANIFEST_COLUMNS[2:]),
            split=split,
        )
        for row in rows
    ]


def load_tensors(records: Sequence[Record], size: int = SIZE) -> torch.Tensor:
    """(N, 3, H, W) pixels in [0, 1], each image as cnnvis reads it (:func:`cnnvis_tasks.io.images.load_image`
    at shorter side ``size``)."""
    import torch

    from cnnvis_tasks.io.images import load_image

    return torch.stack([load_image(record.path, size=size) for record in records])
