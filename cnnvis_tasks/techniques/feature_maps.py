"""Feature maps (reference gallery row 1): the activation of a layer, one small
picture per channel, from one forward pass that stops after the layer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cnnvis_tasks.technique import (
    BATCH_SIZE,
    FORWARD,
    INT,
    SIZE,
    Option,
    PassNeeds,
    Rendered,
    Rendering,
    Result,
    Technique,
    layer_option,
)

GRID = Rendering("grid", "PNG grid of the first channels, each scaled to its own range.")


def compute(model, images, targets=None, *, layer: str, channels: int = 64, **_options: Any) -> Result:
    from cnnvis_tasks.mechanisms.capture import feature_maps

    maps = feature_maps(model.module, model.normalize(images), [layer])[layer]
    return _result(maps, layer, channels)


def _result(maps, layer: str, channels: int) -> Result:
    facts = {"layer": layer, "channels_shown": min(channels, maps.shape[1]), "shape": list(maps.shape[1:])}
    return Result("feature-maps", maps=maps, layer=layer, facts=facts)


def shares_pass(options: Mapping[str, Any]) -> PassNeeds:
    return PassNeeds(features=(options["layer"],))


def from_pass(model, shared, images, *, layer: str, channels: int = 64, **_options: Any) -> Result:
    """Feature maps from a shared pass (:mod:`cnnvis_tasks.mechanisms.shared_pass`)."""
    return _result(shared.activations[layer], layer, channels)


def render(result: Result, row: int, renderings: tuple[str, ...], options: dict[str, Any]) -> Rendered:
    from cnnvis_tasks import render as draw

    activation = result.maps[row]
    picture, constant = draw.channel_grid(activation, options["channels"])
    warnings = []
    if constant == min(options["channels"], activation.shape[0]):
        warnings.append(f"every shown channel of {result.layer} is constant; rendered black")
    return Rendered({GRID.name: (picture, {})}, warnings)


def caption(meta: Mapping[str, Any]) -> list[str]:
    return [f"{meta.get('channels_shown', '?')} of {meta['shape'][0]} channels"] if meta.get("shape") else []


TECHNIQUE = Technique(
    name="feature-maps",
    cost=FORWARD,
    order=10,
    title="Feature maps",
    summary="Activations of layers as channel grids (reference gallery row 1).",
    description="The activation of a layer, one small image per channel (one forward pass).",
    reference="",
    options=(
        layer_option("Module path (see: cnnvis-tasks layers); repeat for several layers.", required=True),
        Option("channels", INT, 64, "How many channels (the first ones) to show.", minimum=1),
        SIZE,
        BATCH_SIZE,
    ),
    renderings=(GRID,),
    raw="Raw activation per image (.npy, C x h x w float32).",
    compute=compute,
    render=render,
    caption=caption,
    shares_pass=shares_pass,
    from_pass=from_pass,
)
