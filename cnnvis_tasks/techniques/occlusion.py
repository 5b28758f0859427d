"""Occlusion (Zeiler and Fergus 2014): how much the target's logit drops when a
patch of the image is covered, the patch sliding over the image.  Needs only
forward passes, so it works on any model."""

from __future__ import annotations

import math
from typing import Any

from cnnvis_tasks.errors import CnnvisError
from cnnvis_tasks.technique import BATCH_SIZE, FLOAT, INT, SIZE, TARGET_CLASS, Cost, Option, Rendered, Result, Technique
from cnnvis_tasks.techniques.cam_family import ALPHA, COLORMAP, RENDERINGS, render_heat_map


def compute(
    model,
    images,
    targets=None,
    *,
    patch: int = 32,
    stride: int = 16,
    fill: float = 0.5,
    batch_size: int = 16,
    **_options: Any,
) -> Result:
    import torch

    from cnnvis_tasks.mechanisms.attribution import occlusion
    from cnnvis_tasks.techniques.attribution_family import clean_pass

    if stride > min(patch, *images.shape[-2:]):
        raise CnnvisError(f"--stride {stride} is larger than the patch ({patch} px): some pixels would stay uncovered")
    x = model.normalize(images)
    chosen, _scores, probabilities = clean_pass(model.module, x, targets)
    covered = model.normalize(torch.full_like(images[:1, :, :1, :1], fill))
    # the unoccluded scores again, in the occluded copies' memory layout: an occluded window
    # that changes nothing then drops the score by exactly zero, not by a rounding difference
    maps = occlusion(model.module, x, chosen, patch=patch, stride=stride, fill=covered, batch_size=batch_size)
    return Result(
        "occlusion",
        maps=maps,
        targets=chosen,
        probabilities=probabilities,
        inputs=images,
        facts={"patch": patch, "stride": stride, "fill": fill},
    )


def render(result: Result, row: int, renderings: tuple[str, ...], options: dict[str, Any]) -> Rendered:
    return render_heat_map(
        result.maps[row],
        result.inputs[row],
        renderings,
        options,
        "occluding changes nothing: the map is constant; rendered black",
    )


def patch_positions(options: dict, pixels: int) -> float:
    """The masked copies of one image: patch positions over a square of ``pixels``."""
    side = math.sqrt(max(pixels, 1))
    along = max(1, math.ceil((side - int(options["patch"])) / max(int(options["stride"]), 1)) + 1)
    return float(along * along)


TECHNIQUE = Technique(
    name="occlusion",
    cost=Cost(activation=2.0, work=1.0, copies=True, passes=patch_positions),
    order=93,
    title="Occlusion",
    summary="The drop in a class's logit when a sliding patch covers the image (Zeiler and Fergus 2014).",
    description="A patch of constant color slides over the image; each pixel shows the mean drop in the target "
    "class's logit over the patches that cover it (high: the model needs that region). Forward passes only, "
    "so it explains any model.",
    reference="Zeiler and Fergus 2014, Visualizing and understanding convolutional networks",
    options=(
        Option("patch", INT, 32, "The patch's side in pixels.", minimum=1),
        Option("stride", INT, 16, "Pixels the patch moves each step (at most --patch).", minimum=1),
        Option("fill", FLOAT, 0.5, "The patch's gray level in [0, 1] (0.5: mid gray).", minimum=0, maximum=1),
        TARGET_CLASS,
        COLORMAP,
        ALPHA,
        SIZE,
        BATCH_SIZE,
    ),
    renderings=RENDERINGS,
    raw="Raw map per image (.npy, H x W float32: the mean drop in the target logit).",
    compute=compute,
    render=render,
    attribution=True,
)
