"""What the class-activation-map techniques share: a layer (chosen
automatically by default), a target class, three renderings (gray map, heatmap,
overlay) and the raw map; each method is one channel weighting
(:mod:`cnnvis_tasks.mechanisms.cam`) and one call of :func:`cam_technique`.
A method without gradients gives a map of the activations instead (Eigen-CAM),
and one that re-runs the model gives the whole computation (Score-CAM)."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping
from typing import Any

from cnnvis_tasks.models.names import DEFAULT_COLORMAP, colormap_problem
from cnnvis_tasks.technique import (
    AUTO_LAYER,
    BATCH_SIZE,
    FLOAT,
    GRADIENT,
    SIZE,
    STRING,
    TARGET_CLASS,
    Cost,
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
    from cnnvis_tasks.mechanisms.cam import default_cam_layer

    if module not in _AUTO_LAYERS:
        _AUTO_LAYERS[module] = default_cam_layer(module)
    return _AUTO_LAYERS[module]


def resolve_layer(module: Any, layer: str) -> str:
    """A layer option's value as the layer it names in ``module`` (``auto``: :func:`automatic_layer`)."""
    return automatic_layer(module) if layer == AUTO else layer


def chosen_layer(module: Any, layer: str) -> tuple[str, list[str]]:
    """The layer explained, and what to say about it once (``Result.notes``): that it was chosen automatically."""
    chosen = resolve_layer(module, layer)
    return chosen, [f"layer {chosen} (chosen automatically)"] if layer == AUTO else []


def layer_caption(meta: Mapping[str, Any]) -> list[str]:
    return [f"layer {meta['layer']}"] if meta.get("layer") else []


CLASS_AGNOSTIC = "class-agnostic: no target class"


def class_agnostic_caption(meta: Mapping[str, Any]) -> list[str]:
    """A map of the activations alone explains no class: say so where the others name theirs."""
    return [*layer_caption(meta), CLASS_AGNOSTIC]


def render_heat_map(
    values: Any, image: Any, renderings: tuple[str, ...], options: Mapping[str, Any], degenerate_warning: str
) -> Rendered:
    """An H x W map at the image's resolution as the family's pictures: gray (min-max
    normalised), heatmap (``options["colormap"]``) and overlay on ``image`` (weight
    ``options["alpha"]``); ``degenerate_warning`` when the map is constant."""
    from cnnvis_tasks import render as draw

    map01, degenerate = draw.normalize01(values)
    colormap, alpha = options["colormap"], options["alpha"]
    pictures = {}
    for rendering in renderings:
        if rendering == "gray":
            pictures[rendering] = (draw.to_uint8(map01), {})
        elif rendering == "heatmap":
            pictures[rendering] = (draw.heatmap(map01, colormap), {"colormap": colormap})
        else:
            pictures[rendering] = (
                draw.overlay(image, map01, alpha, colormap),
                {"colormap": colormap, "alpha": alpha},
            )
    return Rendered(pictures, [degenerate_warning] if degenerate else [])


def _shares_pass(options: Mapping[str, Any]) -> PassNeeds:
    """A CAM from gradients reads its layer's activation and gradient (``auto``: resolved
    by :func:`resolve_layer`)."""
    return PassNeeds(gradients=(options["layer"],), resolve_layer=resolve_layer)


def _shares_features(options: Mapping[str, Any]) -> PassNeeds:
    """A CAM of the activations alone reads its layer's activation."""
    return PassNeeds(features=(options["layer"],), resolve_layer=resolve_layer)


def cam_technique(
    name: str,
    *,
    order: int,
    title: str,
    summary: str,
    description: str,
    reference: str,
    weighting: Callable | None = None,
    activation_map: Callable | None = None,
    cams: Callable | None = None,
    batch_size: Option = BATCH_SIZE,
    cost: Cost = GRADIENT,
) -> Technique:
    """A CAM technique made by exactly one of:

    * ``weighting(activations, gradients)``, both (N, C, h, w), returning (N, C) or
      (N, C, h, w) weights: a CAM from the target logit's gradient (shares a pass);
    * ``activation_map(activations)`` returning (N, h, w) maps: no gradient and no
      class (shares a pass's features);
    * ``cams(module, inputs, layer, targets, batch_size)`` returning a
      :class:`~cnnvis_tasks.mechanisms.cam.CamResult`: a method that re-runs the model
      (its ``batch_size`` option, given here, bounds each forward).
    """
    if sum(method is not None for method in (weighting, activation_map, cams)) != 1:
        raise ValueError(f"{name}: give exactly one of weighting, activation_map and cams")

    def compute(model, images, targets=None, *, layer: str = AUTO, **options: Any) -> Result:
        chosen, notes = chosen_layer(model.module, layer)
        inputs = model.normalize(images)
        if activation_map is not None:
            from cnnvis_tasks.mechanisms.capture import feature_maps

            maps = activation_map(feature_maps(model.module, inputs, [chosen])[chosen])
            return result(maps, None, None, chosen, images, notes)
        if cams is not None:
            outcome = cams(model.module, inputs, chosen, targets, options.get("batch_size", batch_size.default))
        else:
            from cnnvis_tasks.mechanisms.cam import class_activation_map

            outcome = class_activation_map(model.module, inputs, chosen, targets, weighting)
        return result(outcome.cams, outcome.targets, outcome.logits, chosen, images, notes)

    def result(maps, targets, logits, chosen: str, images, notes: list[str]) -> Result:
        from cnnvis_tasks.mechanisms.cam import upsample_cam
        from cnnvis_tasks.mechanisms.targets import target_probabilities

        return Result(
            name,
            maps=maps,
            targets=targets,
            probabilities=None if targets is None else target_probabilities(logits, targets),
            layer=chosen,
            inputs=images,
            display=upsample_cam(maps, tuple(images.shape[-2:])),
            facts={"layer": chosen},
            notes=notes,
        )

    def from_pass(model, shared, images, *, layer: str = AUTO, **_options: Any) -> Result:
        from cnnvis_tasks.mechanisms.cam import weighted_cam

        chosen, notes = chosen_layer(model.module, layer)
        if activation_map is not None:
            return result(activation_map(shared.activations[chosen]), None, None, chosen, images, notes)
        maps = weighted_cam(shared.activations[chosen], shared.gradients[chosen], weighting)
        return result(maps, shared.targets, shared.logits, chosen, images, notes)

    def render(result: Result, row: int, renderings: tuple[str, ...], options: dict[str, Any]) -> Rendered:
        return render_heat_map(
            result.display[row],
            result.inputs[row],
            renderings,
            options,
            f"the {title} map at {result.layer} is all zero; rendered black",
        )

    return Technique(
        name=name,
        order=order,
        title=title,
        summary=summary,
        description=description,
        reference=reference,
        options=(LAYER, *([] if activation_map else [TARGET_CLASS]), COLORMAP, ALPHA, SIZE, batch_size),
        renderings=RENDERINGS,
        raw="Raw map per image (.npy, h x w float32 at the layer's resolution, ReLU'd, not normalised).",
        compute=compute,
        render=render,
        caption=class_agnostic_caption if activation_map else layer_caption,
        caption_first=True,
        attribution=True,
        shares_pass=None if cams else _shares_features if activation_map else _shares_pass,
        from_pass=None if cams else from_pass,
        cost=cost,
    )
