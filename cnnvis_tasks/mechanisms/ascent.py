"""Gradient ascent in image space: class and filter visualisation, deep dream.

Plain mode reproduces the seed: Adam on the normalised pixels from a uniform random
start in [140, 180] / 255 (class model visualisation, Simonyan et al. 2013).  Robust
mode (the default for class and filter visualisation) optimises a decorrelated
Fourier parameterisation and applies a random pad / jitter / zoom / rotation before
every forward (Olah et al. 2017, "Feature Visualization", Distill).

Every image of a batch has its own objective (target, penalty); the loss is their
sum, and Adam updates each element independently, so a batch gives the same result
as separate runs with the same seed: the random start and the random transforms are
shared by the whole batch.  Gradients flow to the image only; the model's parameters
have ``requires_grad`` switched off for the duration.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cnnvis_tasks.errors import CnnvisError
from cnnvis_tasks.mechanisms.capture import LayerTap, captured_tensor
from cnnvis_tasks.mechanisms.parameterization import FourierImage, PixelImage, random_transform
from cnnvis_tasks.mechanisms.penalties import REGULARIZATIONS
from cnnvis_tasks.mechanisms.pixels import to_model_space, to_pixels
from cnnvis_tasks.mechanisms.targets import check_class_indices
from cnnvis_tasks.mechanisms.tokens import as_feature_map, required_input_size
from cnnvis_tasks.models.layers import model_device
from cnnvis_tasks.technique import SILENT, Report, broadcast

START_LOW, START_HIGH = 140 / 255, 180 / 255  # the seed's random start, pixel space
TRANSFORM_PAD = 8  # px of zeros on each side before the robust transform warps


@dataclass
class AscentResult:
    """Outcome of one ascent run over a batch of N images."""

    images: torch.Tensor  # (N, 3, H, W) in [0, 1], pixel space, detached
    objective_start: torch.Tensor  # (N,) objective before any update
    objective_end: torch.Tensor  # (N,) objective on the final image, no transforms
    probabilities: torch.Tensor | None  # (N,) softmax prob. of the target (class-viz)
    steps: int  # total steps run (octaves: summed)
    octaves: int | None = None  # octaves actually used (deep dream with octaves)


# --- helpers ------------------------------------------------------------------------


@contextmanager
def _frozen(model: nn.Module):
    """Switch off ``requires_grad`` on the model's parameters, restoring it afterwards."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


class _ChannelObjective:
    """One layer's activation, of one channel per image or of all channels, flattened to (N, -1).
    A transformer's tokens are laid out as (N, C, h, w) first (the class token dropped), so
    that a channel is a channel there too.

    Channel indices are checked on the host against the layer's first output:
    reading the device copy would wait for the GPU."""

    def __init__(self, model: nn.Module, layer: str, channels: Sequence[int] | None):
        self.model = model
        self.tap = LayerTap(model, [layer])
        self.layer = layer
        self.host_channels = None if channels is None else [int(c) for c in channels]
        self.channels = (
            None if channels is None else torch.tensor(self.host_channels, dtype=torch.long, device=model_device(model))
        )
        self.checked = False

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        act = captured_tensor(self.tap(x), self.layer)
        if act.dim() in (3, 4):
            act = as_feature_map(act, self.model, self.layer)
        if not self.checked:
            _check_channels(act, self.host_channels, self.layer)
            self.checked = True
        n = act.shape[0]
        if self.channels is None:
            return act.reshape(n, -1)
        return act[torch.arange(n, device=act.device), self.channels].reshape(n, -1)


def _check_channels(act: torch.Tensor, channels: list[int] | None, layer: str) -> None:
    """Validate filter indices against the layer's channel count (once, off the hot loop)."""
    if channels is None:
        return
    if act.dim() < 2:
        raise CnnvisError(f"layer {layer!r} has no channel dimension (output shape {tuple(act.shape)})")
    count = act.shape[1]
    bad = [c for c in channels if not 0 <= c < count]
    if bad:
        raise CnnvisError(f"filter {bad[0]} out of range for layer {layer!r}: valid 0..{count - 1}")


def _report(report: Report, step, total, objective, stage, pixels):
    # A 0-d tensor: reading its value would wait for the GPU, so the report does
    # that only when it actually prints.
    report.step(step, total, objective.mean(), stage)
    if report.save_every and step % report.save_every == 0:
        report.snapshot(step, pixels().detach())


def _adam_ascent(image, score, penalty, *, steps, lr, transform, report, stage) -> tuple[torch.Tensor, torch.Tensor]:
    """Maximise ``score(transform(x)) - penalty(x)`` per image with Adam.

    ``score`` and ``penalty`` map a normalised batch to (N,).  Returns the objective
    (untransformed) before and after the run.
    """

    def evaluate():
        with torch.no_grad():
            x = image.normalized()
            return score(x) - penalty(x)

    start = evaluate()
    optimizer = torch.optim.Adam(image.parameters(), lr=lr)
    for step in range(1, steps + 1):
        x = image.normalized()
        objective = score(transform(x) if transform else x) - penalty(x)
        optimizer.zero_grad(set_to_none=True)
        (-objective.sum()).backward()
        optimizer.step()
        _report(report, step, steps, objective.detach(), stage, image.pixels)
    return start, evaluate()


def transform_padding(model: nn.Module) -> int:
    """The zeros the robust transform pads each side with before it warps: none for a model
    of fixed input size, which takes the warped image only at that size (warping without
    padding gives the padded warp's central crop)."""
    return 0 if required_input_size(model) else TRANSFORM_PAD


def _start_image(n, height, width, *, mean, std, robust, seed, device, pad=None):
    generator = torch.Generator().manual_seed(seed)
    if robust:
        image = FourierImage(n, height, width, mean=mean, std=std, generator=generator, device=device)
    else:
        # One draw shared by the batch, so image i equals a separate run with this seed.
        pixels = torch.rand(1, 3, height, width, generator=generator)
        pixels = START_LOW + (START_HIGH - START_LOW) * pixels
        normalized = to_model_space(pixels.to(device), mean, std)
        image = PixelImage(normalized.expand(n, -1, -1, -1), mean=mean, std=std)

    pad = TRANSFORM_PAD if pad is None else pad
    transform = (lambda x: random_transform(x, generator, pad=pad)) if robust else None
    return image, transform


# --- class and filter visualisation -------------------------------------------------


def class_visualization(
    model: nn.Module,
    targets: Sequence[int],
    regularizations: Sequence[str],
    weights: Sequence[float],
    *,
    mean,
    std,
    height: int,
    width: int,
    steps: int,
    lr: float,
    robust: bool = True,
    seed: int = 0,
    report: Report = SILENT,
) -> AscentResult:
    """Class model visualisation: maximise ``S_c(I) - lambda R(I)`` for each target c.

    ``S_c`` is the pre-softmax logit; ``R`` is per image ``"none"``, ``"l1"``
    (``lambda * sum |I|``) or ``"l2"`` (``lambda / 2 * ||I||^2``, whose gradient equals
    Adam's ``weight_decay=lambda`` in the seed), on the normalised image I.
    ``regularizations`` and ``weights`` give one value per target, or one for all
    (the weight of ``"none"`` is ignored).  The reported objective includes the penalty.
    """
    n = len(targets)
    if n == 0:
        raise ValueError("no targets given")
    regs = [str(r).lower() for r in broadcast(regularizations, n, "regularizations", "targets")]
    for reg in regs:
        if reg not in REGULARIZATIONS:
            raise ValueError(f"unknown regularization {reg!r}; choose from {', '.join(REGULARIZATIONS)}")
    lams = [float(w) for w in broadcast(weights, n, "weights", "targets")]
    device = model_device(model)
    l1 = torch.tensor([w if r == "l1" else 0.0 for r, w in zip(regs, lams)], device=device)
    l2 = torch.tensor([w if r == "l2" else 0.0 for r, w in zip(regs, lams)], device=device)
    index = torch.tensor([int(t) for t in targets], device=device)
    rows = torch.arange(n, device=device)

    def penalty(x):
        return l1 * x.abs().sum((1, 2, 3)) + 0.5 * l2 * x.pow(2).sum((1, 2, 3))

    def score(x):
        return model(x)[rows, index]

    with _frozen(model):
        image, transform = _start_image(
            n, height, width, mean=mean, std=std, robust=robust, seed=seed, device=device, pad=transform_padding(model)
        )
        with torch.no_grad():
            classes = model(image.normalized()[:1]).shape[1]
        check_class_indices([int(t) for t in targets], classes)
        start, end = _adam_ascent(
            image, score, penalty, steps=steps, lr=lr, transform=transform, report=report, stage="class viz"
        )
        with torch.no_grad():
            probs = F.softmax(model(image.normalized()), dim=1)[rows, index]
            pixels = image.pixels().detach()
    return AscentResult(pixels, start, end, probs, steps)


def filter_visualization(
    model: nn.Module,
    layer: str,
    filters: Sequence[int],
    *,
    mean,
    std,
    height: int,
    width: int,
    steps: int,
    lr: float,
    weight_decay: float,
    robust: bool = True,
    seed: int = 0,
    report: Report = SILENT,
) -> AscentResult:
    """Maximise the mean activation of filter ``filters[i]`` of ``layer`` for image i.

    A small L2 penalty ``weight_decay / 2 * ||I||^2`` (the seed's Adam weight decay)
    is included in the objective.
    """
    n = len(filters)
    if n == 0:
        raise ValueError("no filters given")
    device = model_device(model)
    activation = _ChannelObjective(model, layer, filters)

    def score(x):
        return activation(x).mean(1)

    def penalty(x):
        return 0.5 * weight_decay * x.pow(2).sum((1, 2, 3))

    with _frozen(model):
        image, transform = _start_image(
            n, height, width, mean=mean, std=std, robust=robust, seed=seed, device=device, pad=transform_padding(model)
        )
        start, end = _adam_ascent(
            image, score, penalty, steps=steps, lr=lr, transform=transform, report=report, stage="filter viz"
        )
        pixels = image.pixels().detach()
    return AscentResult(pixels, start, end, None, steps)


# --- deep dream ----------------------------------------------------------------------


def _model_space_images(images: torch.Tensor, mean, std, device) -> torch.Tensor:
    if images.dim() != 4 or images.shape[1] != 3:
        raise CnnvisError(f"expected images of shape (N, 3, H, W), got {tuple(images.shape)}")
    return to_model_space(images.to(device, torch.float32), mean, std)


def deep_dream(
    model: nn.Module,
    images: torch.Tensor,
    layer: str,
    filter: int | None,
    *,
    mean,
    std,
    octaves: int,
    octave_scale: float,
    steps_per_octave: int,
    lr: float,
    min_size: int = 8,
    report: Report = SILENT,
) -> AscentResult:
    """Deep dream with an octave pyramid (normalised-gradient ascent).

    ``images`` are pixel-space (N, 3, H, W) in [0, 1].  The objective is the L2 norm
    of ``layer``'s activation (channel ``filter``, or all channels for ``None``).
    Octave k (0 = full size) has size ``round(H / octave_scale**k)``; octaves smaller
    than ``min_size`` px or that the network cannot take are skipped
    (``result.octaves`` says how many ran); a model of fixed input size (a ViT) sees
    every octave resized to its size, so none is skipped.  Each step is
    ``x += lr / mean|g| * g`` (mean per image), then x is clipped to the valid
    normalised range.  The detail an octave adds (result minus its base) is upsampled
    and added to the next octave's base.  ``octaves=1`` is the plain version.
    ``objective_start``/``objective_end`` are measured on the full-size image.
    See :func:`deep_dream_adam` for the seed's plain Adam variant.
    """
    if octaves < 1:
        raise ValueError("octaves must be >= 1")
    device = model_device(model)
    x0 = _model_space_images(images, mean, std, device)
    low = to_model_space(torch.zeros((), device=device), mean, std)
    high = to_model_space(torch.ones((), device=device), mean, std)
    activation = _ChannelObjective(model, layer, None if filter is None else [int(filter)] * x0.shape[0])
    height, width = x0.shape[-2:]
    side = required_input_size(model)

    def resize(x, size):
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)

    def score(x):
        if side and tuple(x.shape[-2:]) != (side, side):
            x = resize(x, (side, side))  # the gradient reaches the octave through the resize
        return activation(x).norm(dim=1)

    with _frozen(model):
        with torch.no_grad():
            start = score(x0)
        sizes = []
        for k in range(octaves - 1, -1, -1):
            size = (round(height / octave_scale**k), round(width / octave_scale**k))
            if k == 0 or min(size) >= min_size:
                sizes.append(size)
        bases = [resize(x0, size) if size != (height, width) else x0 for size in sizes]
        while len(bases) > 1:  # drop the smallest octaves while the network rejects them
            try:
                with torch.no_grad():
                    score(bases[0])
                break
            except RuntimeError:
                bases.pop(0)
        total = len(bases) * steps_per_octave
        step = 0
        detail = torch.zeros_like(bases[0])
        for i, base in enumerate(bases):
            if detail.shape != base.shape:
                detail = F.interpolate(detail, size=base.shape[-2:], mode="bilinear", align_corners=False)
            x = base + detail
            stage = f"octave {i + 1}/{len(bases)}"
            for _ in range(steps_per_octave):
                x = x.detach().requires_grad_(True)
                objective = score(x)
                (grad,) = torch.autograd.grad(objective.sum(), x)
                grad_scale = grad.abs().mean(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
                x = torch.clamp(x.detach() + lr / grad_scale * grad, low, high)
                step += 1
                _report(report, step, total, objective.detach(), stage, lambda x=x: to_pixels(x, mean, std))
            detail = x - base
        with torch.no_grad():
            end = score(x)
    return AscentResult(to_pixels(x, mean, std).detach(), start, end, None, total, len(bases))


def deep_dream_adam(
    model: nn.Module,
    images: torch.Tensor,
    layer: str,
    filter: int | None,
    *,
    mean,
    std,
    steps: int,
    lr: float,
    report: Report = SILENT,
) -> AscentResult:
    """The seed's plain deep dream: Adam on the normalised photo, no pyramid, no clipping
    during the run, maximising the mean activation of ``filter`` (or all channels)."""
    device = model_device(model)
    x0 = _model_space_images(images, mean, std, device)
    activation = _ChannelObjective(model, layer, None if filter is None else [int(filter)] * x0.shape[0])

    def score(x):
        return activation(x).mean(1)

    with _frozen(model):
        image = PixelImage(x0, mean=mean, std=std)
        start, end = _adam_ascent(
            image, score, lambda x: 0.0, steps=steps, lr=lr, transform=None, report=report, stage="deep dream"
        )
        pixels = image.pixels().detach()
    return AscentResult(pixels, start, end, None, steps)
