"""Filter visualisation (reference gallery row 5): an image that maximises the
mean activation of one channel of an intermediate layer.  No image is read."""

from __future__ import annotations

from typing import Any

from cnnvis_tasks.technique import (
    FLOAT,
    INT,
    MODEL_LEVEL,
    ModelRows,
    Option,
    Result,
    Technique,
    layer_option,
)
from cnnvis_tasks.techniques.ascent_family import (
    ASCENT_COST,
    PICTURE_OUTPUT,
    SYNTHESIS_OPTIONS,
    ascent_result,
    steps_and_lr,
)


def compute(
    model,
    images=None,
    targets=None,
    *,
    layer: str,
    filter,
    weight_decay: float = 1e-6,
    width: int | None = None,
    height: int | None = None,
    steps: int | None = None,
    lr: float | None = None,
    robust: bool = True,
    seed: int = 0,
    report: Any = None,
    **_options: Any,
) -> Result:
    """``filter``: a channel index per row (or one)."""
    from cnnvis_tasks.io.images import synthesis_size
    from cnnvis_tasks.mechanisms.ascent import filter_visualization
    from cnnvis_tasks.technique import SILENT

    filters = [int(f) for f in (filter if isinstance(filter, (list, tuple)) else [filter])]
    steps, lr = steps_and_lr(steps, lr, robust)
    height, width = synthesis_size(model.input_size, width, height)
    outcome = filter_visualization(
        model.module,
        layer,
        filters,
        mean=model.mean,
        std=model.std,
        height=height,
        width=width,
        steps=steps,
        lr=lr,
        weight_decay=weight_decay,
        robust=robust,
        seed=seed,
        report=report or SILENT,
    )
    facts = {"layer": layer, "robust": robust, "weight_decay": weight_decay, "lr": lr, "size": [height, width]}
    return ascent_result("filter-viz", outcome, layer=layer, facts=facts, row_facts=[{"filter": f} for f in filters])


TECHNIQUE = Technique(
    name="filter-viz",
    cost=ASCENT_COST,
    order=50,
    title="Filter visualisation",
    summary="An image that maximises one filter (reference gallery row 5).",
    description="An image that maximises the mean activation of one filter of a layer.",
    reference="Erhan et al. 2009; Olah et al. 2017, Feature Visualization (robust mode)",
    options=(
        layer_option("Module path (see: cnnvis-tasks layers).", required=True),
        Option(
            "filter",
            INT,
            None,
            "Channel index of the layer; repeat for several.",
            minimum=0,
            repeatable=True,
            per_row=True,
            required=True,
            where=MODEL_LEVEL,
            metavar="N",
            label=lambda f: f"filter {f}",
            token=lambda f: f"filter{f}",
        ),
        Option("weight_decay", FLOAT, 1e-6, "L2 penalty on the image (the reference gallery's).", minimum=0),
        *SYNTHESIS_OPTIONS,
    ),
    compute=compute,
    **PICTURE_OUTPUT,
    reads_images=False,
    item="filter",
    model_rows=ModelRows("pairs", key="filters"),
)
