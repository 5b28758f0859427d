"""What the class-activation-map techniques share: a layer (chosen
automatically by default), a target class, three renderings (gray map, heatmap,
overlay) and the raw map; each method is one channel weighting
(:mod:`cnnvis_tasks.mechanisms.cam`) and one call of :func:`cam_technique`."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping
from typing import Any

from ..names import DEFAULT_COLORMAP, colormap_problem
from ..technique import (
    AUTO_LAYER,
    BATCH_SIZE,
    FLOAT,
    SIZE,
    STRING,
    TARGET_CLASS,
    Option,
    PassNeeds,
    Rendered,
    Rendering,
    Result,
    Technique,
    layer_option,
)

AUTO = AUTO_LAYER  # "auto"
LAYER = layer_option(
    "Module path to explain at (see: cnnvis-tasks layers); 'auto': the last layer with spatial extent before "
    "global pooling, reported.",
    default=AUTO,
    config_default=[AUTO],
)
COLORMAP = Option("colormap", STRING, DEFAULT_COLORMAP, "Matplotlib colormap for the heatmaps.", check=colormap_problem)
ALPHA = Option("alpha", FLOAT, 0.5, "Heatmap weight in the overlay.", minimum=0, maximum=1)
RENDERINGS = (
    Rendering("gray", "the map, upsampled to the image, normalised to [0, 1]"),
    Rendering("heatmap", "the map coloured with --colormap"),
    Rendering("overlay", "the coloured map over the image"),
)

# The automatic layer of each model (a trace of the whole forward pass: computed once per model).
_AUTO_LAYERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def automatic_layer(module: Any) -> str:
    from ..mechanisms.cam import default_cam_layer

    if module not in _AUTO_LAYERS:
        _AUTO_LAYERS[module] = default_cam_layer(module)
    return _AUTO_LAYERS[module]


def _caption(meta: Mapping[str, Any]) -> list[str]:
    return [f"layer {meta['layer']}"] if meta.get("layer") else []


def _shares_pass(options: Mapping[str, Any]) -> PassNeeds:
    """A CAM from gradients reads its layer's activation and gradient (``auto``: resolved
    by the caller as :func:`automatic_layer` resolves it)."""
    return PassNeeds(gradients=(options["layer"],))


def cam_technique(
    name: str, *, order: int, title: str, summary: str, description: str, reference: str, weighting: Callable
) -> Technique:
    """A CAM technique whose channel weights are ``weighting(activations, gradients)``,
    both (N, C, h, w), returning (N, C)."""

    def compute(model, images, targets=None, *, layer: str = AUTO, **_options: Any) -> Result:
        from ..mechanisms.cam import class_activation_map

        chosen = automatic_layer(model.module) if layer == AUTO else layer
        outcome = class_activation_map(model.module, model.normalize(images), chosen, targets, weighting)
        return result(outcome.cams, outcome.targets, outcome.logits, chosen, images)

    def result(cams, targets, logits, chosen: str, images) -> Result:
        from ..mechanisms.cam import upsample_cam
        from ..mechanisms.targets import target_probabilities

        return Result(
            name,
            maps=cams,
            targets=targets,
            probabilities=target_probabilities(logits, targets),
            layer=chosen,
            inputs=images,
            display=upsample_cam(cams, tuple(images.shape[-2:])),
            facts={"layer": chosen},
        )

    def from_pass(model, shared, images, *, layer: str = AUTO, **_options: Any) -> Result:
        from ..mechanisms.cam import weighted_cam

        chosen = automatic_layer(model.module) if layer == AUTO else layer
        cams = weighted_cam(shared.activations[chosen], shared.gradients[chosen], weighting)
        return result(cams, shared.targets, shared.logits, chosen, images)

    def render(result: Result, row: int, renderings: tuple[str, ...], options: dict[str, Any]) -> Rendered:
        from .. import render as draw

        map01, degenerate = draw.normalize01(result.display[row])
        colormap, alpha = options["colormap"], options["alpha"]
        pictures = {}
        for rendering in renderings:
            if rendering == "gray":
                pictures[rendering] = (draw.to_uint8(map01), {})
            elif rendering == "heatmap":
                pictures[rendering] = (draw.heatmap(map01, colormap), {"colormap": colormap})
            else:
                pictures[rendering] = (
                    draw.overlay(result.inputs[row], map01, alpha, colormap),
                    {"colormap": colormap, "alpha": alpha},
                )
        warnings = [f"the {title} map at {result.layer} is all zero; rendered black"] if degenerate else []
        return Rendered(pictures, warnings)

    return Technique(
        name=name,
        order=order,
        title=title,
        summary=summary,
        description=description,
        reference=reference,
        options=(LAYER, TARGET_CLASS, COLORMAP, ALPHA, SIZE, BATCH_SIZE),
        renderings=RENDERINGS,
        raw="Raw map per image (.npy, h x w float32 at the layer's resolution, ReLU'd, not normalised).",
        compute=compute,
        render=render,
        caption=_caption,
        caption_first=True,
        shares_pass=_shares_pass,
        from_pass=from_pass,
    )
