"""Synthesis commands: class-viz, filter-viz, deep-dream (gradient ascent on images)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click
import torch

from .. import render
from ..images import load_batches
from ..outputs import save_npy, save_png
from ..techniques import ascent
from . import cli
from .common import (
    Session,
    base_metadata,
    broadcast,
    capture_warnings,
    check_class_index,
    check_paired,
    class_record,
    image_options,
    model_options,
    open_session,
    technique_command,
)

# The seed's L2 penalty was Adam weight decay 0.01; L1 has no seed value: this one
# visibly sparsifies a 400 x 600 image without washing out the class.
DEFAULT_WEIGHTS = {"none": 0.0, "l1": 1e-4, "l2": 0.01}


def _ascent_options(function: Callable) -> Callable:
    decorators = [
        click.option("--width", default=600, type=click.IntRange(min=8), help="Width of the synthesised image."),
        click.option("--height", default=400, type=click.IntRange(min=8), help="Height of the synthesised image."),
        click.option("--steps", default=None, type=click.IntRange(min=1),
                     help=f"Optimisation steps  [default: {ascent.ROBUST_STEPS} robust, {ascent.PLAIN_STEPS} plain]"),
        click.option("--lr", default=None, type=click.FloatRange(min=0, min_open=True),
                     help=f"Adam learning rate  [default: {ascent.ROBUST_LR} robust, {ascent.PLAIN_LR} plain]"),
        click.option("--robust/--plain", default=True,
                     help="Robust: decorrelated Fourier image and random jitter/scale/rotation each step "
                          "(recognisable pictures); plain: the seed's pixel-space Adam from a random start."),
        click.option("--save-every", default=0, type=click.IntRange(min=0),
                     help="Also write a snapshot every K steps as OUT's name + '.stepNNNN.png' (0: none)."),
        click.option("--batch-size", default=16, type=click.IntRange(min=1), help="Images optimised together."),
    ]
    for decorator in reversed(decorators):
        function = decorator(function)
    return function


def _effective(steps: int | None, lr: float | None, robust: bool) -> tuple[int, float]:
    """The steps and learning rate a run uses when the options are left at their defaults."""
    if steps is None:
        steps = ascent.ROBUST_STEPS if robust else ascent.PLAIN_STEPS
    if lr is None:
        lr = ascent.ROBUST_LR if robust else ascent.PLAIN_LR
    return steps, lr


def _snapshot_path(out: Path, step: int) -> Path:
    return out.with_name(f"{out.stem}.step{step:04d}.png")


def _reporters(session: Session, label: str, outs: Sequence[Path], save_every: int) -> tuple[Callable, Callable]:
    """Progress and snapshot callbacks for one ascent batch."""
    meter = None

    def progress(step: int, total: int, objective: torch.Tensor, stage: str) -> None:
        nonlocal meter
        if meter is None:
            meter = session.progress(total, label)
        meter.update(step, lambda: f"{stage + ' ' if stage else ''}objective {float(objective):.4g}")

    def snapshot(step: int, images: torch.Tensor) -> None:
        for out, image in zip(outs, images):
            save_png(_snapshot_path(out, step), render.to_uint8(image), {"technique": label, "step": step})

    return progress, (snapshot if save_every else None)


def _record_result(result: ascent.AscentResult, row: int) -> dict[str, Any]:
    record = {
        "objective_start": float(result.objective_start[row]),
        "objective_end": float(result.objective_end[row]),
        "steps": result.steps,
    }
    if result.probabilities is not None:
        record["probability"] = float(result.probabilities[row])
    if result.octaves is not None:
        record["octaves_used"] = result.octaves
    return record


def _write(outs: Sequence[Path], raws: Sequence[Path], index: int, image: torch.Tensor, record: dict[str, Any]) -> None:
    """Write run ``index``'s picture and raw array, each where one was asked for."""
    if outs:
        save_png(outs[index], render.to_uint8(image), record)
    if raws:
        save_npy(raws[index], image.float().cpu().numpy())


def _chunks(count: int, size: int) -> list[range]:
    return [range(start, min(start + size, count)) for start in range(0, count, size)]


@technique_command(cli, "class-viz")
@model_options
@click.option("--target", "targets", multiple=True, required=True, type=int,
              help="Class index to visualise; repeat for several (paired with --regularization/--weight/--out).")
@click.option("--regularization", "regularizations", multiple=True, default=("none",),
              type=click.Choice(ascent.REGULARIZATIONS), help="Penalty on the image; once for all or once per target.")
@click.option("--weight", "penalty_weights", multiple=True, type=float,
              help="Penalty weight lambda  [default: none 0, l1 1e-4, l2 0.01 (the seed's weight decay)]")
@click.option("--out", "outs", multiple=True, type=click.Path(path_type=Path), help="PNG per target.")
@click.option("--raw", "raws", multiple=True, type=click.Path(path_type=Path),
              help="Raw image per target (.npy, 3 x H x W float32 in [0, 1]).")
@_ascent_options
@capture_warnings
def class_viz_command(targets, regularizations, penalty_weights, outs, raws, width, height, steps, lr, robust, save_every,
                      batch_size, **common: Any) -> None:
    """Class model visualisation (Simonyan et al. 2013): an image that maximises
    one class's logit minus a penalty (seed gallery row 4)."""
    count = len(targets)
    regularizations = broadcast(regularizations, count, "--regularization", "targets")
    if penalty_weights:
        penalty_weights = broadcast(penalty_weights, count, "--weight", "targets")
    else:
        penalty_weights = [DEFAULT_WEIGHTS[r] for r in regularizations]
    check_paired(count, "targets", out=outs, raw=raws)
    steps, lr = _effective(steps, lr, robust)
    session = open_session(**common)
    for target in targets:
        check_class_index(target, session.model)
    model = session.model
    for chunk in _chunks(count, batch_size):
        chunk_outs = [outs[i] for i in chunk] if outs else []
        progress, snapshot = _reporters(session, "class-viz", chunk_outs, save_every)
        result = ascent.class_visualization(
            model.module, [targets[i] for i in chunk], [regularizations[i] for i in chunk], [penalty_weights[i] for i in chunk],
            mean=model.mean, std=model.std, height=height, width=width, steps=steps, lr=lr, robust=robust,
            seed=common["seed"], progress=progress, snapshot=snapshot, save_every=save_every)
        for row, index in enumerate(chunk):
            record = base_metadata(session, "class-viz", target=class_record(model, targets[index]),
                                   regularization=regularizations[index], weight=penalty_weights[index], robust=robust,
                                   lr=lr, size=[height, width]) | _record_result(result, row)
            _write(outs, raws, index, result.images[row], record)


@technique_command(cli, "filter-viz")
@model_options
@click.option("--layer", required=True, metavar="PATH", help="Module path (see: cnnvis-tasks layers).")
@click.option("--filter", "filters", multiple=True, required=True, type=click.IntRange(min=0),
              help="Channel index of the layer; repeat for several (paired with --out).")
@click.option("--weight-decay", default=1e-6, type=click.FloatRange(min=0), help="L2 penalty on the image (the seed's).")
@click.option("--out", "outs", multiple=True, type=click.Path(path_type=Path), help="PNG per filter.")
@click.option("--raw", "raws", multiple=True, type=click.Path(path_type=Path),
              help="Raw image per filter (.npy, 3 x H x W float32 in [0, 1]).")
@_ascent_options
@capture_warnings
def filter_viz_command(layer, filters, weight_decay, outs, raws, width, height, steps, lr, robust, save_every,
                       batch_size, **common: Any) -> None:
    """Filter visualisation: an image that maximises the mean activation of one
    channel of an intermediate layer (seed gallery row 5)."""
    count = len(filters)
    check_paired(count, "filters", out=outs, raw=raws)
    steps, lr = _effective(steps, lr, robust)
    session = open_session(**common)
    model = session.model
    for chunk in _chunks(count, batch_size):
        chunk_outs = [outs[i] for i in chunk] if outs else []
        progress, snapshot = _reporters(session, "filter-viz", chunk_outs, save_every)
        result = ascent.filter_visualization(
            model.module, layer, [filters[i] for i in chunk], mean=model.mean, std=model.std, height=height,
            width=width, steps=steps, lr=lr, weight_decay=weight_decay, robust=robust, seed=common["seed"],
            progress=progress, snapshot=snapshot, save_every=save_every)
        for row, index in enumerate(chunk):
            record = base_metadata(session, "filter-viz", layer=layer, filter=filters[index], robust=robust,
                                   weight_decay=weight_decay, lr=lr, size=[height, width]) | _record_result(result, row)
            _write(outs, raws, index, result.images[row], record)


def _parse_filter(value: str) -> int | None:
    if value.lower() == "all":
        return None
    try:
        index = int(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is neither 'all' nor a channel index", param_hint="--filter") from None
    if index < 0:
        raise click.BadParameter(f"channel index must be >= 0, got {index}", param_hint="--filter")
    return index


@technique_command(cli, "deep-dream")
@model_options
@image_options
@click.option("--layer", required=True, metavar="PATH", help="Module path whose activation is amplified.")
@click.option("--filter", "filter_", default="all", metavar="N|all", help="One channel of the layer, or all channels.")
@click.option("--octaves", default=10, type=click.IntRange(min=1), help="Octave pyramid levels (1: no pyramid).")
@click.option("--octave-scale", default=1.4, type=click.FloatRange(min=1, min_open=True), help="Size ratio between octaves.")
@click.option("--steps", default=None, type=click.IntRange(min=1),
              help="Steps per octave  [default: 20; with --optimizer adam: 200 in all]")
@click.option("--lr", default=None, type=click.FloatRange(min=0, min_open=True),
              help="Step size  [default: 0.01; with --optimizer adam: 0.1]")
@click.option("--optimizer", type=click.Choice(["normalized", "adam"]), default="normalized",
              help="normalized: x += lr / mean|g| * g on the L2 norm of the activation, clipped to the valid range "
                   "(seed row 7); adam: the seed's plain deep dream on the mean activation (row 6), no pyramid.")
@click.option("--out", "outs", multiple=True, type=click.Path(path_type=Path), help="PNG per image.")
@click.option("--raw", "raws", multiple=True, type=click.Path(path_type=Path),
              help="Raw result per image (.npy, 3 x H x W float32 in [0, 1]).")
@click.option("--save-every", default=0, type=click.IntRange(min=0),
              help="Also write a snapshot every K steps as OUT's name + '.stepNNNN.png' (0: none).")
@capture_warnings
def deep_dream_command(images, layer, filter_, octaves, octave_scale, steps, lr, optimizer, outs, raws, save_every, size,
                       batch_size, **common: Any) -> None:
    """Deep dream: start from a photo and amplify what a layer (or one of its
    channels) responds to, optionally over an octave pyramid (seed rows 6 and 7)."""
    check_paired(len(images), "images", out=outs, raw=raws)
    channel = _parse_filter(filter_)
    if optimizer == "adam":
        octaves = 1  # the seed's Adam version has no pyramid
        steps, lr = steps or 200, lr or 0.1
    else:
        steps, lr = steps or 20, lr or 0.01
    session = open_session(**common)
    model = session.model
    for indices, batch in load_batches(images, size, batch_size):
        chunk_outs = [outs[i] for i in indices] if outs else []
        progress, snapshot = _reporters(session, "deep-dream", chunk_outs, save_every)
        batch = batch.to(session.device)
        settings = dict(mean=model.mean, std=model.std, progress=progress, snapshot=snapshot, save_every=save_every)
        if optimizer == "adam":
            result = ascent.deep_dream_adam(model.module, batch, layer, channel, steps=steps, lr=lr, **settings)
        else:
            result = ascent.deep_dream(model.module, batch, layer, channel, octaves=octaves, octave_scale=octave_scale,
                                       steps_per_octave=steps, lr=lr, **settings)
        for row, index in enumerate(indices):
            record = base_metadata(session, "deep-dream", image=str(images[index]), layer=layer,
                                   filter="all" if channel is None else channel, optimizer=optimizer, lr=lr,
                                   octaves=octaves, octave_scale=octave_scale) | _record_result(result, row)
            _write(outs, raws, index, result.images[row], record)
