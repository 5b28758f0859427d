"""Gradient x Input (Shrikumar et al. 2016): the input gradient of the target
logit, under any backward rule, times the input itself."""

from __future__ import annotations

from typing import Any

from cnnvis_tasks.technique import BATCH_SIZE, SIZE, TARGET_CLASS, Result, Technique
from cnnvis_tasks.techniques.attribution_family import ATTRIBUTION_RENDERINGS, RAW, method_option, renderer


def compute(model, images, targets=None, *, method: str = "vanilla", **_options: Any) -> Result:
    from cnnvis_tasks.mechanisms.relu_rules import saliency
    from cnnvis_tasks.mechanisms.targets import target_probabilities

    x = model.normalize(images)
    # One forward and backward: the gradient's own pass also picks the targets.
    outcome = saliency(model.module, x, targets, method)
    return Result(
        "gradient-x-input",
        maps=x * outcome.gradients,
        targets=outcome.targets,
        probabilities=target_probabilities(outcome.logits, outcome.targets),
        facts={"method": method},
    )


TECHNIQUE = Technique(
    name="gradient-x-input",
    order=90,
    title="Gradient x Input",
    summary="The input gradient of a class's logit times the input (Shrikumar et al. 2016).",
    description="The saliency gradient (vanilla, guided or deconvnet) multiplied by the input, element by element: "
    "large where the model is sensitive and the input is far from zero.",
    reference="Shrikumar et al. 2016, Not just a black box: learning important features through propagating "
    "activation differences",
    options=(method_option(), TARGET_CLASS, SIZE, BATCH_SIZE),
    renderings=ATTRIBUTION_RENDERINGS,
    raw=RAW.format(what="gradient x input"),
    compute=compute,
    render=renderer("Gradient x Input"),
    attribution=True,
)
