"""Feature inversion (Mahendran and Vedaldi 2015): from a layer's activation of a
photo, synthesise an image with the same activation.  Early layers keep nearly
everything (the photo comes back); later ones keep what the network needs to
classify and lose the rest (colours, exact positions)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cnnvis_tasks.technique import FLOAT, INT, SIZE, Cost, Option, Result, Technique, layer_option, option_passes
from cnnvis_tasks.techniques.ascent_family import BATCH_SIZE, PICTURE_OUTPUT, ROBUST, SAVE_EVERY

DEFAULT_STEPS, DEFAULT_LR = 200, 0.05  # lr 0.1 ended higher after 60 robust steps on EfficientNet-Lite0
# The regularisers' weights (per-pixel means in units of B, see mechanisms/inversion.py).
# The 6-norm of a photo is 0.02-0.2 (bright ones the most), so 0.1 costs a valid image
# little while a pixel at 1.5 B costs 1.1: it keeps plain mode's pixels in range.  The
# photos' TV is 0.01-0.03, a plain-mode inversion's speckle about 0.2: at weight 2 the TV
# term matters against the relative error (0.05-0.3) and removes the speckle that deep
# layers leave unconstrained, while early layers still come back sharp.
DEFAULT_ALPHA_WEIGHT, DEFAULT_TV_WEIGHT = 0.1, 2.0


def compute(
    model,
    images,
    targets=None,
    *,
    layer: str,
    steps: int = DEFAULT_STEPS,
    lr: float = DEFAULT_LR,
    alpha_weight: float = DEFAULT_ALPHA_WEIGHT,
    tv_weight: float = DEFAULT_TV_WEIGHT,
    tv_beta: float = 2.0,
    robust: bool = True,
    seed: int = 0,
    report: Any = None,
    **_options: Any,
) -> Result:
    """One synthesised image per photo of ``images`` (pixel space, (N, 3, H, W))."""
    from cnnvis_tasks.mechanisms.inversion import feature_inversion
    from cnnvis_tasks.technique import SILENT

    outcome = feature_inversion(
        model.module,
        images,
        layer,
        mean=model.mean,
        std=model.std,
        steps=steps,
        lr=lr,
        alpha_weight=alpha_weight,
        tv_weight=tv_weight,
        tv_beta=tv_beta,
        robust=robust,
        seed=seed,
        report=report or SILENT,
    )
    facts = {
        "layer": layer,
        "steps": steps,
        "lr": lr,
        "robust": robust,
        "alpha_weight": alpha_weight,
        "tv_weight": tv_weight,
        "tv_beta": tv_beta,
    }
    numbers = {"loss_start": outcome.loss_start, "loss_end": outcome.loss_end, "relative_error": outcome.relative_error}
    return Result("feature-inversion", maps=outcome.images, layer=layer, facts=facts, row_numbers=numbers)


def caption(meta: Mapping[str, Any]) -> list[str]:
    lines = []
    if isinstance(meta.get("relative_error"), (int, float)):
        lines.append(f"relative error {meta['relative_error']:.3g}")
    start, end = meta.get("loss_start"), meta.get("loss_end")
    if isinstance(start, (int, float)) and isinstance(end, (int, float)):
        lines.append(f"loss {start:.3g} \u2192 {end:.3g}")
    return lines


TECHNIQUE = Technique(
    name="feature-inversion",
    cost=Cost(passes=option_passes("steps")),
    order=100,  # after the seed gallery (its last section, grad-cam, is 80), the CAM family and the attributions
    title="Feature inversion",
    summary="An image with the same activation at a layer as a photo.",
    description="An image synthesised to give the same activation at a layer as the photo (Adam on "
    "||phi(x) - phi(x0)||^2 / ||phi(x0)||^2 plus an alpha-norm and a total-variation penalty): what the layer "
    "keeps of the photo. Relative error: how far the activations still differ.",
    reference="Mahendran and Vedaldi 2015, Understanding Deep Image Representations by Inverting Them",
    options=(
        layer_option("Module path whose activation is inverted (see: cnnvis-tasks layers).", required=True),
        Option("steps", INT, DEFAULT_STEPS, "Adam steps.", minimum=1),
        Option("lr", FLOAT, DEFAULT_LR, "Adam learning rate.", above=0),
        Option(
            "alpha_weight",
            FLOAT,
            DEFAULT_ALPHA_WEIGHT,
            "Weight of the alpha-norm penalty mean|x / B|^6 (B: the largest valid normalised pixel).",
            minimum=0,
        ),
        Option(
            "tv_weight",
            FLOAT,
            DEFAULT_TV_WEIGHT,
            "Weight of the total-variation penalty mean ((dx^2 + dy^2) / B^2)^(beta / 2).",
            minimum=0,
        ),
        Option("tv_beta", FLOAT, 2.0, "Order beta of the total variation (2: smooth, 1: piecewise flat).", above=0),
        ROBUST,
        SIZE,
        BATCH_SIZE,
        SAVE_EVERY,
    ),
    compute=compute,
    caption=caption,
    **PICTURE_OUTPUT,
)
