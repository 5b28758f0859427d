"""Kernels (reference gallery row 2): a layer's raw convolution weights as a
grid, RGB when a filter has 3 input channels, else its first input channel in
gray.  Reads the weights only: no image, no forward pass."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cnnvis_tasks.technique import (
    INT,
    LAYER,
    MODEL_LEVEL,
    WEIGHTS_ONLY,
    ModelRows,
    Option,
    Rendered,
    Rendering,
    Result,
    Technique,
    layer_label,
)

GRID = Rendering("grid", "PNG grid of the first filters, each scaled to its own range.")


def compute(
    model,
    images=None,
    targets=None,
    *,
    layer: str | None = None,
    parameter: int | None = None,
    count: int = 25,
    **_options: Any,
) -> Result:
    from cnnvis_tasks.mechanisms.kernels import kernel_weights

    kernels = kernel_weights(model.module, layer=layer, parameter_index=parameter)
    weights = kernels.weights
    facts = {"parameter": kernels.name, "shape": list(weights.shape), "filters_shown": min(count, weights.shape[0])}
    return Result("kernels", maps=weights[None], layer=layer, facts=facts)


def render(result: Result, row: int, renderings: tuple[str, ...], options: dict[str, Any]) -> Rendered:
    from cnnvis_tasks import render as draw

    return Rendered({GRID.name: (draw.kernel_grid(result.maps[row], options["count"]), {})})


def caption(meta: Mapping[str, Any]) -> list[str]:
    if not meta.get("parameter"):
        return []
    shape = meta.get("shape")
    return [str(meta["parameter"]) + (f" ({' x '.join(str(s) for s in shape)})" if shape else "")]


TECHNIQUE = Technique(
    name="kernels",
    cost=WEIGHTS_ONLY,
    order=20,
    title="Kernels",
    summary="Convolution weights as a grid of filters (reference gallery row 2).",
    description="Raw convolution weights of a layer; RGB for filters with 3 input channels.",
    reference="",
    options=(
        Option(
            "layer",
            LAYER,
            None,
            "Module path of a conv layer (see: cnnvis-tasks layers); repeatable.",
            repeatable=True,
            where=MODEL_LEVEL,
            metavar="PATH",
            label=layer_label,
            config_default=[],
        ),
        Option(
            "parameter",
            INT,
            None,
            "Alternatively, the K-th entry of model.named_parameters() (the reference "
            "gallery's numbering); repeatable.",
            minimum=0,
            repeatable=True,
            where=MODEL_LEVEL,
            metavar="K",
            config_default=[],
            label=lambda k: f"parameter {k}",
            token=lambda k: f"param{k}",
        ),
        Option("count", INT, 25, "How many filters (the first ones) to show.", minimum=1),
    ),
    renderings=(GRID,),
    raw="Raw weights (.npy, out x in x kh x kw float32).",
    compute=compute,
    render=render,
    reads_images=False,
    runs_model=False,
    model_rows=ModelRows("either"),
    caption=caption,
)
