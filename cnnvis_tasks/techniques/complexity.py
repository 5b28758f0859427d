"""Complexity: how concise an attribution method's map is, per image.

A map that puts its attribution on a few pixels is easier to read than one that
spreads it everywhere.  Each row measures one method (``--explain 'saliency
--method guided'``) on one image, on the map the trust metrics score (one value per
pixel, :func:`cnnvis_tasks.techniques.method_maps.channel_reduction`):

* sparseness (Chalasani et al. 2020): the Gini index of the map's absolute values,
  from 0 (every pixel the same) to 1 (one pixel holds everything), higher is more
  concise; computed as Quantus's ``Sparseness`` does (the map divided by its largest
  absolute value, 1e-7 added to every pixel);
* complexity (Bhatt et al. 2020): the entropy, in nats, of the share of the absolute
  attribution on each pixel, from 0 (one pixel) to log(pixels) (all the same), lower
  is more concise.

The numbers make the technique's table (``results/complexity.csv``, per method and
model in ``complexity-summary.csv``); each row's picture is the map as a heatmap.
"""

from __future__ import annotations

from typing import Any

from cnnvis_tasks.mechanisms.map_complexity import complexity, sparseness
from cnnvis_tasks.technique import (
    BATCH_SIZE,
    SIZE,
    TARGET_CLASS,
    Cost,
    Rendered,
    Rendering,
    Result,
    Technique,
)
from cnnvis_tasks.technique.method import Method, Slot
from cnnvis_tasks.technique.table import Measure, Table
from cnnvis_tasks.techniques.method_maps import explained_pixel_maps
from cnnvis_tasks.techniques.metrics import explain_option

__all__ = ["TECHNIQUE", "complexity", "sparseness"]

MEASURED = Slot(owner="complexity", option="explain", verb="measure", given=("target", "size", "batch_size"))


def compute(
    model,
    images,
    targets=None,
    *,
    explain: str | Method = "grad-cam",
    batch_size: int = 16,
    seed: int = 0,
    **_options: Any,
) -> Result:
    explained = MEASURED.parse(explain)
    base, pixel_maps, reduce = explained_pixel_maps(explained, model, images, targets, batch_size, seed)
    targets = [None] * images.shape[0] if base.targets is None else [int(t) for t in base.targets.tolist()]
    return Result(
        "complexity",
        maps=pixel_maps,
        targets=base.targets,
        probabilities=base.probabilities,
        inputs=images,
        facts={"method": explained.label, "explain": explained.text, "channels": reduce},
        row_facts=[{"method": explained.label, "explain": explained.text, "target": target} for target in targets],
        row_numbers={"sparseness": sparseness(pixel_maps), "complexity": complexity(pixel_maps)},
    )


def render(result: Result, row: int, renderings: tuple[str, ...], options: dict[str, Any]) -> Rendered:
    import numpy as np

    from cnnvis_tasks import render as draw

    values = np.abs(draw.as_array(result.maps[row]))
    map01, degenerate = draw.normalize01(values)
    warnings = (
        [f"the {result.facts['method']} map is all zero; rendered as the colormap's low end"] if degenerate else []
    )
    return Rendered({"heatmap": (draw.heatmap(map01), {})}, warnings)


# results/complexity.csv (per image, method and model), complexity-summary.csv (per method and model)
TABLE = Table(
    name="complexity",
    measures=(
        Measure("sparseness", "Sparseness (Gini)", higher_is_better=True, short="sparse"),
        Measure("complexity", "Complexity (entropy, nats)", higher_is_better=False, short="entropy"),
    ),
    identity=("model", "method", "explain", "image", "target"),
    group="method",
    heading="How concise each explanation is",
)


TECHNIQUE = Technique(
    name="complexity",
    cost=Cost(work=4.0, copies=True),
    order=115,
    title="How concise each explanation is",
    summary="Sparseness (Gini) and complexity (entropy) of attribution methods' maps per image.",
    description="How few pixels each method's map puts its attribution on: the Gini index of the map's absolute "
    "values (higher is more concise) and the entropy of their shares (lower is more concise). A concise map is "
    "easier to read; it is not therefore more faithful (see the trust metrics).",
    reference="Chalasani et al. 2020, Concise explanations of neural networks using adversarial training; Bhatt et "
    "al. 2020, Evaluating and aggregating feature-based model explanations",
    options=(
        explain_option(
            MEASURED,
            "The attribution method to measure: a technique of the saliency or CAM family and its own flags, one "
            "value each, e.g. 'grad-cam', 'saliency --method guided'. Its target class, size and batch size are this "
            "command's.",
        ),
        TARGET_CLASS,
        SIZE,
        BATCH_SIZE,
    ),
    renderings=(Rendering("heatmap", "the measured map (absolute values) as a heatmap"),),
    raw="the measured map, one value per pixel (N x H x W float32)",
    compute=compute,
    render=render,
    table=TABLE,
)
