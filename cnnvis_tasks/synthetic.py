"""A data set whose class is decided by one object at a known place, and a small classifier trained on it.

Each image is a noisy background with clutter: a few lines and distractor shapes of
every class (and of three shapes of no class), in colours other than red.  The one red shape decides the class (its
kind: circle, square, triangle or cross), and its bounding box goes in the manifest.
A model that classifies these images must find the red shape and tell its kind, so
an explanation of the right class points inside the box: the proof that cnnvis
explains a user's own model, with its own classes, for the right class.

:func:`make_dataset` writes an ImageFolder layout (``ROOT/CLASS/NAME.png``) and
``ROOT/manifest.csv`` (``path,label,xmin,ymin,xmax,ymax``, the format of
:mod:`cnnvis_tasks.image_list`); :func:`train_classifier` trains a timm model on the
tensors cnnvis itself makes of the images (:func:`cnnvis_tasks.images.load_image`),
:func:`evaluate` predicts each image, :func:`save_checkpoints` writes the weights in
four forms (state dict, TorchScript, timm training checkpoint, safetensors).

Torch and timm are imported by the functions that need them.
"""

from __future__ import annotations

import csv
import json
import math
import time
import warnings
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw

from .class_lists import folder_classes  # noqa: F401  (the classes of a split: ImageFolder's order)

if TYPE_CHECKING:
    import torch

CLASSES = ("circle", "square", "triangle", "cross")
# Shapes of no class, among the distractors only.
OTHER_SHAPES = ("diamond", "ring", "bar")
SHAPES = CLASSES + OTHER_SHAPES
SIZE = 160
# A plain ResNet of timm's, small enough to train in a minute on two CPU cores.  Not one with
# squeeze-and-excitation (test_byobnet): its global pooling inside the blocks spreads a class's
# evidence over every cell of the last layer, and its Grad-CAM then left one class's box empty.
ARCH = "test_resnet"
EPOCHS = 6
# Not ImageNet's: a loader that ignores the configured mean and std gives other predictions.
MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)
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
    """(N, 3, H, W) pixels in [0, 1], each image as cnnvis reads it (:func:`cnnvis_tasks.images.load_image`
    at shorter side ``size``)."""
    import torch

    from .images import load_image

    return torch.stack([load_image(record.path, size=size) for record in records])


def _indices(records: Sequence[Record], classes: Sequence[str]) -> list[int]:
    if list(classes) != sorted(classes):
        raise ValueError(f"classes must be in sorted order (ImageFolder's), got {list(classes)}")
    missing = sorted({record.label for record in records} - set(classes))
    if missing:
        raise ValueError(f"labels not among the classes: {', '.join(missing)}")
    return [list(classes).index(record.label) for record in records]


def train_classifier(
    train_records: Sequence[Record],
    classes: Sequence[str],
    arch: str = ARCH,
    size: int = SIZE,
    epochs: int = EPOCHS,
    batch_size: int = 32,
    lr: float = 3e-3,
    seed: int = 0,
    mean: Sequence[float] = MEAN,
    std: Sequence[float] = STD,
    log: Callable[[str], None] | None = None,
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Train ``timm.create_model(arch, num_classes=len(classes))`` from scratch on the
    images of ``train_records``, read as cnnvis reads them at ``size`` and normalised
    with ``mean`` and ``std``; class ``i`` is ``classes[i]``, which must be sorted
    (ImageFolder's order).  Seeded: the same arguments on the same machine (and the
    same number of torch threads) give the same weights.  Returns the model (eval mode, CPU) and its history: ``arch``,
    ``classes``, ``mean``, ``std``, ``size``, ``epochs``, per epoch ``loss`` and
    ``train_accuracy``, ``seconds`` (training alone) and ``load_seconds``."""
    import timm
    import torch

    from .mechanisms.pixels import to_model_space

    classes = list(classes)
    targets = torch.tensor(_indices(train_records, classes))
    started = time.perf_counter()
    pixels = load_tensors(train_records, size)
    load_seconds = time.perf_counter() - started
    torch.manual_seed(seed)
    model = timm.create_model(arch, pretrained=False, num_classes=len(classes))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    steps = epochs * math.ceil(len(targets) / batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.2)
    generator = torch.Generator().manual_seed(seed)
    history: dict[str, Any] = {
        "arch": arch,
        "classes": classes,
        "mean": list(mean),
        "std": list(std),
        "size": size,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "images": len(train_records),
        "loss": [],
        "train_accuracy": [],
    }
    started = time.perf_counter()
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(targets), generator=generator)
        total_loss, correct = 0.0, 0
        for start in range(0, len(order), batch_size):
            chosen = order[start : start + batch_size]
            batch = pixels[chosen]
            # every shape is its own mirror image left to right, and triangles point both ways
            flips = torch.rand(2, len(chosen), generator=generator) < 0.5
            batch = torch.where(flips[0, :, None, None, None], batch.flip(-1), batch)
            batch = torch.where(flips[1, :, None, None, None], batch.flip(-2), batch)
            logits = model(to_model_space(batch, mean, std))
            loss = torch.nn.functional.cross_entropy(logits, targets[chosen])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total_loss += float(loss.detach()) * len(chosen)
            correct += int((logits.argmax(1) == targets[chosen]).sum())
        history["loss"].append(total_loss / len(targets))
        history["train_accuracy"].append(correct / len(targets))
        if log:
            log(
                f"epoch {epoch + 1}/{epochs}: loss {history['loss'][-1]:.3f}, "
                f"train accuracy {history['train_accuracy'][-1]:.3f}, {time.perf_counter() - started:.1f} s"
            )
    history["seconds"] = time.perf_counter() - started
    history["load_seconds"] = load_seconds
    optimizer.zero_grad(set_to_none=True)
    return model.eval(), history


def logits_of(
    model: torch.nn.Module,
    records: Sequence[Record],
    size: int = SIZE,
    mean: Sequence[float] = MEAN,
    std: Sequence[float] = STD,
    batch_size: int = 16,
) -> torch.Tensor:
    """(N, classes) logits of ``model`` (eval mode) on the images, read as cnnvis reads them."""
    import torch

    from .mechanisms.pixels import to_model_space

    pixels = load_tensors(records, size)
    with torch.inference_mode():
        return torch.cat(
            [model(to_model_space(pixels[i : i + batch_size], mean, std)) for i in range(0, len(pixels), batch_size)]
        )


def evaluate(
    model: torch.nn.Module,
    records: Sequence[Record],
    classes: Sequence[str],
    size: int = SIZE,
    mean: Sequence[float] = MEAN,
    std: Sequence[float] = STD,
    batch_size: int = 16,
) -> dict[str, int]:
    """Each image's predicted class index, by its path (as text)."""
    _indices(records, classes)
    predicted = logits_of(model, records, size, mean, std, batch_size).argmax(1).tolist()
    return {str(record.path): int(index) for record, index in zip(records, predicted)}


def accuracy(predictions: dict[str, int], records: Sequence[Record], classes: Sequence[str]) -> float:
    """The share of ``records`` whose prediction (:func:`evaluate`) is their label's index."""
    truth = _indices(records, classes)
    return sum(predictions[str(record.path)] == index for record, index in zip(records, truth)) / len(records)


def grad_cam_shares(
    model: torch.nn.Module,
    records: Sequence[Record],
    classes: Sequence[str],
    size: int = SIZE,
    mean: Sequence[float] = MEAN,
    std: Sequence[float] = STD,
    batch_size: int = 16,
) -> list[float]:
    """Per image, the share of Grad-CAM's positive attribution for its label's class inside
    its box, as cnnvis's metrics technique computes it in-process (auto layer): what the
    workflow's ``metrics.csv`` should say, before the workflow runs."""
    import torch

    from .api import wrap_model
    from .techniques import get_technique

    loaded = wrap_model(model, mean=mean, std=std, classes=classes, name="synthetic")
    metrics = get_technique("metrics")
    targets = _indices(records, classes)
    shares: list[float] = []
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    for parameter in trainable:  # gradients to the activations only, none left on the weights
        parameter.requires_grad_(False)
    try:
        for start in range(0, len(records), batch_size):
            chunk = records[start : start + batch_size]
            result = metrics.compute(
                loaded,
                load_tensors(chunk, size),
                torch.tensor(targets[start : start + batch_size]),
                explain="grad-cam",
                deletion_insertion=False,
                road=False,
                randomisation_stages=0,
                batch_size=batch_size,
                boxes=torch.tensor([record.box for record in chunk], dtype=torch.float32),
            )
            shares += [float(value) for value in result.row_numbers["localisation"]]
    finally:
        for parameter in trainable:
            parameter.requires_grad_(True)
    return shares


def save_checkpoints(
    model: torch.nn.Module,
    folder: str | Path,
    classes: Sequence[str],
    mean: Sequence[float] = MEAN,
    std: Sequence[float] = STD,
    arch: str = ARCH,
    size: int = SIZE,
    epoch: int = 0,
    metric: float | None = None,
) -> dict[str, Path]:
    """Write ``model``'s weights to ``folder`` in four forms; their paths by form:

    - ``state_dict``: ``model.pt``, ``torch.save(model.state_dict())``;
    - ``torchscript``: ``model.torchscript.pt``, traced at ``size`` (checked: the same logits);
    - ``timm``: ``checkpoint-timm.pth.tar``, the dict timm's ``CheckpointSaver`` writes
      (``epoch``, ``arch``, ``optimizer``, ``version``, ``args`` as an ``argparse.Namespace``,
      ``state_dict``, ``metric``, ``saver``);
    - ``safetensors``: ``model.safetensors``, metadata ``classes``, ``mean``, ``std`` (JSON) and ``arch``.
    """
    import argparse

    import torch
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    state = {key: value.detach().clone() for key, value in model.state_dict().items()}
    paths = {
        "state_dict": folder / "model.pt",
        "torchscript": folder / "model.torchscript.pt",
        "timm": folder / "checkpoint-timm.pth.tar",
        "safetensors": folder / "model.safetensors",
    }
    torch.save(state, paths["state_dict"])

    example = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = model(example)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "`torch.jit", FutureWarning)  # deprecated, still what users have
        traced = torch.jit.trace(model, example, check_trace=False)
        traced.save(str(paths["torchscript"]))
        with torch.inference_mode():
            got = torch.jit.load(str(paths["torchscript"])).eval()(example)
    if not torch.allclose(got, expected, rtol=1e-4, atol=1e-5):
        raise RuntimeError(f"the TorchScript model's logits differ from the model's by {(got - expected).abs().max()}")

    # as timm's train.py saves (timm.utils.CheckpointSaver._save); the optimizer is a fresh one
    # (its state is of no use for explaining), args a Namespace as train.py's argparse makes it
    args = argparse.Namespace(
        model=arch,
        num_classes=len(classes),
        pretrained=False,
        mean=list(mean),
        std=list(std),
        input_size=[3, size, size],
        class_map="",
    )
    optimizer = torch.optim.AdamW(model.parameters())
    checkpoint = {
        "epoch": epoch,
        "arch": arch,
        "optimizer": optimizer.state_dict(),
        "version": 2,
        "args": args,
        "state_dict": state,
        "metric": metric,
        "saver": {
            "checkpoint_files": [(paths["timm"].name, metric)],
            "best_epoch": epoch,
            "best_metric": metric,
            "pending": (epoch, metric),
        },
    }
    torch.save(checkpoint, paths["timm"])

    metadata = {
        "classes": json.dumps(list(classes)),
        "mean": json.dumps(list(mean)),
        "std": json.dumps(list(std)),
        "arch": arch,
    }
    save_file({key: value.contiguous() for key, value in state.items()}, str(paths["safetensors"]), metadata)
    return paths
