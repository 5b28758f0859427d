"""SmoothGrad (Smilkov et al. 2017): an attribution averaged over noisy copies of
the image, which evens out the gradient's pixel-to-pixel noise; SmoothGrad-Squared
averages its square.

The attribution averaged is a method (:mod:`cnnvis_tasks.technique.method`), as captum's
NoiseTunnel wraps one: a gradient rule's word (``guided``), or Gradient x Input or
Integrated Gradients with their own flags (``'integrated-gradients --steps 32'``;
in Python ``Method("integrated-gradients", steps=32)``)."""

from __future__ import annotations

from typing import Any

from cnnvis_tasks.technique import (
    BATCH_SIZE,
    BOOL,
    FLOAT,
    INT,
    METHOD,
    SIZE,
    TARGET_CLASS,
    Cost,
    Option,
    Result,
    Technique,
    option_passes,
)
from cnnvis_tasks.technique.method import Method, Slot
from cnnvis_tasks.techniques.attribution_family import ATTRIBUTION_RENDERINGS, METHODS, RAW, clean_pass, renderer

BASES = (*METHODS, "gradient-x-input", "integrated-gradients")
SHORT = {"gradient-x-input": "gxi", "integrated-gradients": "ig"}  # in file names
# What SmoothGrad averages: a gradient (a rule's word: saliency's), Gradient x Input, or
# Integrated Gradients from a black image, with the options each honours here.
SMOOTHED = Slot(
    owner="smooth-grad",
    option="method",
    verb="average",
    given=("target", "size", "batch_size"),
    techniques={
        "saliency": ("method",),
        "gradient-x-input": ("method",),
        "integrated-gradients": ("method", "steps", "rule"),
    },
    words={rule: ("saliency", {"method": rule}) for rule in METHODS},
)


def smoothed(value: str | Method) -> Method:
    """The method averaged (text or a :class:`Method`) as a :class:`Method`."""
    return SMOOTHED.parse(value)


def _rule_only(method: Method) -> str | None:
    """The rule's word of a method that is a gradient and nothing more (``guided``), else None."""
    if method.technique.name == "saliency" and set(method.options) <= {"method"}:
        return method.options.get("method", "vanilla")
    return None


def described(value: str | Method) -> str:
    """The method as the pictures' facts and headers say it: as given (``guided``,
    ``integrated-gradients --steps 32``); a Python object as its text, a gradient by its rule."""
    if isinstance(value, str):
        return value
    return _rule_only(value) or value.text


def method_token(value: str | Method) -> str:
    """The method in file names: ``guided``, ``gxi``, ``ig``, ``ig-steps32``."""
    if isinstance(value, str) and value in BASES:
        return SHORT.get(value, value)
    method = smoothed(value)
    rule = _rule_only(method)
    if rule is not None:
        return rule
    return method.token_as(SHORT.get(method.technique.name, method.technique.name))


def base_attribution(model, base: str | Method, steps: int, batch_size: int):
    """The attribution SmoothGrad averages, as ``fn(inputs, targets, owners)``: a
    gradient under a backward rule, Gradient x Input or Integrated Gradients from a
    black image (``steps``: its path points unless the method gives its own)."""
    from cnnvis_tasks.mechanisms.attribution import gradient_x_input, integrated_gradients, rule_gradient

    method = smoothed(base)
    name, options = method.technique.name, method.options
    gradient = rule_gradient(model.module, options.get("method", "vanilla"))
    if name == "saliency":
        return lambda inputs, targets, _owners: gradient(inputs, targets)
    if name == "gradient-x-input":
        return lambda inputs, targets, _owners: gradient_x_input(gradient, inputs, targets)
    steps, rule = options.get("steps", steps), options.get("rule", "gausslegendre")

    def integrated(inputs, targets, _owners):
        import torch

        black = model.normalize(torch.zeros_like(inputs))
        return integrated_gradients(gradient, inputs, black, targets, steps=steps, rule=rule, batch_size=batch_size)

    return integrated


def compute(
    model,
    images,
    targets=None,
    *,
    method: str | Method = "vanilla",
    samples: int = 50,
    noise: float = 0.15,
    squared: bool = False,
    steps: int = 16,
    batch_size: int = 16,
    seed: int = 0,
    **_options: Any,
) -> Result:
    from cnnvis_tasks.mechanisms.attribution import smooth_grad

    x = model.normalize(images)
    chosen, _scores, probabilities = clean_pass(model.module, x, targets)
    base = base_attribution(model, method, steps, batch_size)
    averaged = smoothed(method)
    integrated = averaged.technique.name == "integrated-gradients"
    # An Integrated Gradients copy runs its own path points in batches: one copy at a time.
    copies = 1 if integrated else batch_size
    maps = smooth_grad(base, x, chosen, samples=samples, noise=noise, squared=squared, seed=seed, batch_size=copies)
    facts = {"method": described(method), "samples": samples, "noise": noise, "squared": squared, "seed": seed}
    if integrated:
        facts["steps"] = averaged.options.get("steps", steps)
    return Result("smooth-grad", maps=maps, targets=chosen, probabilities=probabilities, facts=facts)


TECHNIQUE = Technique(
    name="smooth-grad",
    cost=Cost(copies=True, passes=option_passes("samples")),
    order=92,
    title="SmoothGrad",
    summary="An attribution averaged over noisy copies of the image (Smilkov et al. 2017).",
    description="The mean of an attribution (the vanilla, guided or deconvnet gradient, Gradient x Input, or "
    "Integrated Gradients) over copies of the image with Gaussian noise added, whose "
    "standard deviation is a fraction of the image's value range; with --squared, the mean of its square "
    "(SmoothGrad-Squared). The noise is drawn from --seed, the same for every image.",
    reference="Smilkov et al. 2017, SmoothGrad: removing noise by adding noise",
    options=(
        Option(
            "method",
            METHOD,
            "vanilla",
            "The attribution averaged: a gradient (vanilla, guided backpropagation, deconvnet), Gradient x Input, "
            "or Integrated Gradients from a black image (gxi and ig in file names), the last two with their own "
            "flags, quoted: 'integrated-gradients --steps 32 --rule trapezoid', 'gradient-x-input --method guided'.",
            choices=BASES,
            repeatable=True,
            config_default=["vanilla", "guided"],
            metavar="[vanilla|guided|deconv|gradient-x-input|integrated-gradients] [FLAGS]",
            check=SMOOTHED.problem,
            label=described,
            token=method_token,
        ),
        Option("samples", INT, 50, "Noisy copies per image (each a forward and backward pass).", minimum=1),
        Option(
            "noise", FLOAT, 0.15, "The noise's standard deviation as a fraction of the image's max - min.", minimum=0
        ),
        Option("squared", BOOL, False, "Average the attribution's square (SmoothGrad-Squared).", negative="mean"),
        Option(
            "steps",
            INT,
            16,
            "Path points per copy for --method integrated-gradients (unless it gives its own --steps).",
            minimum=1,
        ),
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
