"""SmoothGrad (Smilkov et al. 2017): an attribution averaged over noisy copies of
the image, which evens out the gradient's pixel-to-pixel noise; SmoothGrad-Squared
averages its square."""

from __future__ import annotations

from typing import Any

from ..technique import BATCH_SIZE, BOOL, CHOICE, FLOAT, INT, SIZE, TARGET_CLASS, Option, Result, Technique
from .attribution_family import ATTRIBUTION_RENDERINGS, METHODS, RAW, clean_pass, renderer

BASES = (*METHODS, "gradient-x-input", "integrated-gradients")
SHORT = {"gradient-x-input": "gxi", "integrated-gradients": "ig"}  # in file names


def base_attribution(model, base: str, steps: int, batch_size: int):
    """The attribution SmoothGrad averages, as ``fn(inputs, targets, owners)``: a
    gradient under a backward rule, Gradient x Input or Integrated Gradients from a
    black image (both with the plain gradient)."""
    from ..mechanisms.attribution import gradient_x_input, integrated_gradients, rule_gradient

    gradient = rule_gradient(model.module, base if base in METHODS else "vanilla")
    if base in METHODS:
        return lambda inputs, targets, _owners: gradient(inputs, targets)
    if base == "gradient-x-input":
        return lambda inputs, targets, _owners: gradient_x_input(gradient, inputs, targets)

    def integrated(inputs, targets, _owners):
        import torch

        black = model.normalize(torch.zeros_like(inputs))
        return integrated_gradients(gradient, inputs, black, targets, steps=steps, batch_size=batch_size)

    return integrated


def compute(
    model,
    images,
    targets=None,
    *,
    method: str = "vanilla",
    samples: int = 50,
    noise: float = 0.15,
    squared: bool = False,
    steps: int = 16,
    batch_size: int = 16,
    seed: int = 0,
    **_options: Any,
) -> Result:
    from ..mechanisms.attribution import smooth_grad

    x = model.normalize(images)
    chosen, _scores, probabilities = clean_pass(model.module, x, targets)
    base = base_attribution(model, method, steps, batch_size)
    # An Integrated Gradients copy runs its own path points in batches: one copy at a time.
    copies = 1 if method == "integrated-gradients" else batch_size
    maps = smooth_grad(base, x, chosen, samples=samples, noise=noise, squared=squared, seed=seed, batch_size=copies)
    facts = {"method": method, "samples": samples, "noise": noise, "squared": squared, "seed": seed}
    if method == "integrated-gradients":
        facts["steps"] = steps
    return Result("smooth-grad", maps=maps, targets=chosen, probabilities=probabilities, facts=facts)


TECHNIQUE = Technique(
    name="smooth-grad",
    order=92,
    title="SmoothGrad",
    summary="An attribution averaged over noisy copies of the image (Smilkov et al. 2017).",
    description="The mean of an attribution (the vanilla, guided or deconvnet gradient, Gradient x Input, or "
    "Integrated Gradients) over copies of the image with Gaussian noise added, whose standard deviation is a "
    "fraction of the image's value range; with --squared, the mean of its square (SmoothGrad-Squared). "
    "The noise is drawn from --seed, the same for every image.",
    reference="Smilkov et al. 2017, SmoothGrad: removing noise by adding noise",
    options=(
        Option(
            "method",
            CHOICE,
            "vanilla",
            "The attribution averaged: a gradient (vanilla, guided backpropagation, deconvnet), Gradient x Input, "
            "or Integrated Gradients from a black image (gxi and ig in file names).",
            choices=BASES,
            repeatable=True,
            config_default=["vanilla", "guided"],
            token=lambda value: SHORT.get(value, value),
        ),
        Option("samples", INT, 50, "Noisy copies per image (each a forward and backward pass).", minimum=1),
        Option(
            "noise", FLOAT, 0.15, "The noise's standard deviation as a fraction of the image's max - min.", minimum=0
        ),
        Option("squared", BOOL, False, "Average the attribution's square (SmoothGrad-Squared).", negative="mean"),
        Option("steps", INT, 16, "Path points per copy for --method integrated-gradients.", minimum=1),
        TARGET_CLASS,
        SIZE,
        BATCH_SIZE,
    ),
    renderings=ATTRIBUTION_RENDERINGS,
    raw=RAW.format(what="attribution"),
    compute=compute,
    render=renderer("SmoothGrad"),
    attribution=True,
)
