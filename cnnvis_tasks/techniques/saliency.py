"""Saliency maps (reference gallery row 3): the gradient of the target class's
logit with respect to the input image, passed back through every ReLU by one
of three rules (:mod:`cnnvis_tasks.mechanisms.relu_rules`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..technique import (
    BATCH_SIZE,
    CHOICE,
    SIZE,
    TARGET_CLASS,
    Option,
    PassNeeds,
    Rendered,
    Rendering,
    Result,
    Technique,
)

METHODS = ("vanilla", "guided", "deconv")


def compute(model, images, targets=None, *, method: str = "vanilla", **_options: Any) -> Result:
    from ..mechanisms.relu_rules import saliency

    outcome = saliency(model.module, model.normalize(images), targets, method)
    return _result(outcome.gradients, outcome.targets, outcome.logits, method)


def _result(gradients, targets, logits, method: str) -> Result:
    from ..mechanisms.targets import target_probabilities

    return Result(
        "saliency",
        maps=gradients,
        targets=targets,
        probabilities=target_probabilities(logits, targets),
        facts={"method": method},
    )


def shares_pass(options: Mapping[str, Any]) -> PassNeeds | str:
    """Vanilla saliency is the plain input gradient; the other methods change the backward."""
    if options["method"] != "vanilla":
        return f"--method {options['method']} changes the backward through every ReLU (only vanilla shares it)"
    return PassNeeds(input_gradient=True)


def from_pass(model, shared, images, *, method: str = "vanilla", **_options: Any) -> Result:
    """Vanilla saliency from a shared pass (:mod:`cnnvis_tasks.mechanisms.shared_pass`)."""
    return _result(shared.input_gradient, shared.targets, shared.logits, method)


def render(result: Result, row: int, renderings: tuple[str, ...], options: dict[str, Any]) -> Rendered:
    from .. import render as draw

    gradient = result.maps[row]
    pictures, degenerate = {}, False
    for rendering in renderings:
        draw_one = draw.gradient_color if rendering == "color" else draw.gradient_gray
        picture, degenerate = draw_one(gradient)
        pictures[rendering] = (picture, {})
    warnings = []
    if degenerate or not np.abs(draw.as_array(gradient)).max() > 0:  # NumPy: renders on writer threads
        warnings.append(f"the {result.facts['method']} gradient is all zero; rendered black")
    return Rendered(pictures, warnings)


TECHNIQUE = Technique(
    name="saliency",
    order=30,
    title="Saliency maps",
    summary="Gradient of a class's logit w.r.t. the image (reference gallery row 3).",
    description="Gradient of the class score with respect to the input: vanilla, guided backpropagation, deconvnet.",
    reference="Simonyan et al. 2013; Springenberg et al. 2014 (guided); Zeiler and Fergus 2014 (deconvnet)",
    options=(
        Option(
            "method",
            CHOICE,
            "vanilla",
            "How gradients pass back through ReLUs: the plain gradient, guided backpropagation, or deconvnet.",
            choices=METHODS,
            repeatable=True,
            config_default=list(METHODS),
        ),
        TARGET_CLASS,
        SIZE,
        BATCH_SIZE,
    ),
    renderings=(
        Rendering("color", "the gradient min-max normalised over all channels, as RGB"),
        Rendering("gray", "max |gradient| over channels, clipped at its 99th percentile"),
    ),
    raw="Raw gradient per image (.npy, 3 x H x W float32, w.r.t. the normalised input).",
    compute=compute,
    render=render,
    shares_pass=shares_pass,
    from_pass=from_pass,
)
