"""Integrated Gradients (Sundararajan et al. 2017): the input minus a baseline,
times the gradient averaged along the straight path from the baseline to the
input.  The attributions sum to f(input) - f(baseline) up to the integration
error, which each row records (the completeness error)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from cnnvis_tasks.errors import CnnvisError
from cnnvis_tasks.technique import (
    BATCH_SIZE,
    CHOICE,
    INT,
    SIZE,
    TARGET_CLASS,
    Cost,
    Option,
    Result,
    Technique,
    option_passes,
)
from cnnvis_tasks.techniques.attribution_family import ATTRIBUTION_RENDERINGS, RAW, clean_pass, method_option, renderer

BASELINES = ("black", "blurred", "uniform")
RULES = ("gausslegendre", "trapezoid")  # as mechanisms.attribution.RULES (no torch import here)
BLUR_FRACTION = 1 / 16  # the blurred baseline's Gaussian sigma, as a fraction of the shorter side


def baseline_pixels(images, baseline: str, seed: int = 0):
    """The baseline of each image in pixel space: black, the image blurred (a
    Gaussian of sigma 1/16 of its shorter side) or uniform noise (the same seeded
    draws for every image)."""
    import torch

    if baseline == "black":
        return torch.zeros_like(images)
    if baseline == "blurred":
        return gaussian_blur(images, max(1.0, min(images.shape[-2:]) * BLUR_FRACTION))
    if baseline == "uniform":
        generator = torch.Generator().manual_seed(seed)
        draws = torch.rand(tuple(images.shape[1:]), generator=generator)
        return draws.to(images.device, images.dtype).expand_as(images).clone()
    raise CnnvisError(f"unknown baseline {baseline!r}; expected one of {', '.join(BASELINES)}")


def gaussian_blur(images, sigma: float):
    """(N, C, H, W) blurred by a separable Gaussian of ``sigma`` pixels (edges replicated)."""
    import torch
    import torch.nn.functional as F

    radius = math.ceil(3 * sigma)
    offsets = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    channels = images.shape[1]
    out = F.pad(images, (radius, radius, radius, radius), mode="replicate")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1), groups=channels)
    return F.conv2d(out, kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1), groups=channels)


def compute(
    model,
    images,
    targets=None,
    *,
    method: str = "vanilla",
    baseline: str = "black",
    steps: int = 50,
    rule: str = "gausslegendre",
    batch_size: int = 16,
    seed: int = 0,
    **_options: Any,
) -> Result:
    from cnnvis_tasks.mechanisms.attribution import (
        completeness_error,
        integrated_gradients,
        rule_gradient,
        target_scores,
    )

    if rule == "trapezoid" and steps < 2:
        raise CnnvisError("--rule trapezoid needs --steps 2 or more")
    x = model.normalize(images)
    start = model.normalize(baseline_pixels(images, baseline, seed))
    chosen, scores, probabilities = clean_pass(model.module, x, targets)
    gradient = rule_gradient(model.module, method)
    maps = integrated_gradients(gradient, x, start, chosen, steps=steps, rule=rule, batch_size=batch_size)
    baseline_scores = target_scores(model.module, start, chosen, batch_size)
    error, relative = completeness_error(maps, scores, baseline_scores)
    return Result(
        "integrated-gradients",
        maps=maps,
        targets=chosen,
        probabilities=probabilities,
        facts={"method": method, "baseline": baseline, "steps": steps, "rule": rule},
        row_numbers={
            "completeness_error": error,
            "completeness_relative": relative,
            "score_change": scores - baseline_scores,
        },
    )


def caption(meta: Mapping[str, Any]) -> list[str]:
    """The completeness error, absolute and as a share of f(x) - f(baseline)."""
    error, relative = meta.get("completeness_error"), meta.get("completeness_relative")
    if not isinstance(error, (int, float)) or not isinstance(relative, (int, float)):
        return []
    return [f"completeness error {error:.3g} ({100 * relative:.2g}% of the score change)"]


TECHNIQUE = Technique(
    name="integrated-gradients",
    cost=Cost(copies=True, passes=option_passes("steps")),
    order=91,
    title="Integrated Gradients",
    summary="The input minus a baseline times the gradient averaged from the baseline to it (Sundararajan et al. "
    "2017).",
    description="(input - baseline) times the gradient (vanilla, guided or deconvnet) averaged along the straight "
    "path from a baseline (black, the image blurred, or uniform noise) to the input; the attributions sum to "
    "f(input) - f(baseline) up to the integration error, recorded as the completeness error.",
    reference="Sundararajan et al. 2017, Axiomatic attribution for deep networks",
    options=(
        method_option(),
        Option(
            "baseline",
            CHOICE,
            "black",
            "Where the path starts: a black image, the image blurred (Gaussian, sigma 1/16 of the shorter side), "
            "or uniform noise (seeded by --seed).",
            choices=BASELINES,
            repeatable=True,
            config_default=["black", "blurred"],
        ),
        Option("steps", INT, 50, "Points along the path (each a forward and backward pass).", minimum=1),
        Option(
            "rule",
            CHOICE,
            "gausslegendre",
            "Integration rule: Gauss-Legendre nodes (captum's default) or the trapezoid rule (evenly spaced points, "
            "both ends included).",
            choices=RULES,
        ),
        TARGET_CLASS,
        SIZE,
        BATCH_SIZE,
    ),
    renderings=ATTRIBUTION_RENDERINGS,
    raw=RAW.format(what="attribution"),
    compute=compute,
    render=renderer("Integrated Gradients"),
    attribution=True,
    caption=caption,
)
