"""Saliency maps (reference gallery row 3): the gradient of the target class's
logit with respect to the input image, passed back through every ReLU by one
of three rules (:mod:`cnnvis_tasks.mechanisms.relu_rules`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cnnvis_tasks.technique import BATCH_SIZE, SIZE, TARGET_CLASS, PassNeeds, Rendered, Result, Technique
from cnnvis_tasks.techniques.attribution_family import METHODS, RENDERINGS, method_option, render_map


def compute(model, images, targets=None, *, method: str = "vanilla", **_options: Any) -> Result:
    from cnnvis_tasks.mechanisms.relu_rules import saliency

    outcome = saliency(model.module, model.normalize(images), targets, method)
    return _result(outcome.gradients, outcome.targets, outcome.logits, method)


def _result(gradients, targets, logits, method: str) -> Result:
    from cnnvis_tasks.mechanisms.targets import target_probabilities

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
    return render_map(result.maps[row], renderings, f"{result.facts['method']} gradient")


TECHNIQUE = Technique(
    name="saliency",
    order=30,
    title="Saliency maps",
    summary="Gradient of a class's logit w.r.t. the image (reference gallery row 3).",
    description="Gradient of the class score with respect to the input: vanilla, guided backpropagation, deconvnet.",
    reference="Simonyan et al. 2013; Springenberg et al. 2014 (guided); Zeiler and Fergus 2014 (deconvnet)",
    options=(
        method_option(METHODS),
        TARGET_CLASS,
        SIZE,
        BATCH_SIZE,
    ),
    renderings=RENDERINGS,
    raw="Raw gradient per image (.npy, 3 x H x W float32, w.r.t. the normalised input).",
    compute=compute,
    render=render,
    attribution=True,
    shares_pass=shares_pass,
    from_pass=from_pass,
)
