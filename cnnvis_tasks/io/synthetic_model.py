"""A small classifier trained on the shapes data set (:mod:`cnnvis_tasks.io.synthetic`).

:func:`train_classifier` trains a timm model on the tensors cnnvis itself makes of the
images (:func:`cnnvis_tasks.io.images.load_image`), :func:`evaluate` predicts each
image, :func:`grad_cam_shares` measures how much of Grad-CAM falls inside each
image's box, :func:`save_checkpoints` writes the weights in four forms (state dict,
TorchScript, timm training checkpoint, safetensors).

Torch and timm are imported by the functions that need them.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnvis_tasks.io.synthetic import SIZE, Record, load_tensors

if TYPE_CHECKING:
    import torch

# A plain ResNet of timm's, small enough to train in a minute on two CPU cores.  Not one with
# squeeze-and-excitation (test_byobnet): its global pooling inside the blocks spreads a class's
# evidence over every cell of the last layer, and its Grad-CAM then left one class's box empty.
ARCH = "test_resnet"
EPOCHS = 6
# Not ImageNet's: a loader that ignores the configured mean and std gives other predictions.
MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)


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

    from cnnvis_tasks.mechanisms.pixels import to_model_space

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

    from cnnvis_tasks.mechanisms.pixels import to_model_space

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

    from cnnvis_tasks.api import wrap_model
    from cnnvis_tasks.techniques import get_technique

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
