"""Deep dream over an octave pyramid (reference gallery row 7): normalised
gradient steps on the L2 norm of a layer's activation, from the smallest octave
to the full size, carrying the detail each octave adds."""

from __future__ import annotations

from typing import Any

from cnnvis_tasks.technique import FLOAT, INT, SIZE, Cost, Option, Result, Technique, option_passes
from cnnvis_tasks.techniques.ascent_family import BATCH_SIZE, PICTURE_OUTPUT, SAVE_EVERY, ascent_result
from cnnvis_tasks.techniques.deep_dream import FILTER_OPTION, LAYER


def compute(
    model,
    images,
    targets=None,
    *,
    layer: str,
    filter=None,
    octaves: int,
    octave_scale: float,
    steps: int,
    lr: float,
    report: Any = None,
    **_options: Any,
) -> Result:
    from cnnvis_tasks.mechanisms.ascent import deep_dream
    from cnnvis_tasks.technique import SILENT

    outcome = deep_dream(
        model.module,
        images,
        layer,
        filter,
        mean=model.mean,
        std=model.std,
        octaves=octaves,
        octave_scale=octave_scale,
        steps_per_octave=steps,
        lr=lr,
        report=report or SILENT,
    )
    facts = {
        "layer": layer,
        "filter": "all" if filter is None else filter,
        "lr": lr,
        "octaves": octaves,
        "octave_scale": octave_scale,
    }
    return ascent_result("deep-dream-octaves", outcome, layer=layer, facts=facts)


TECHNIQUE = Technique(
    name="deep-dream-octaves",
    cost=Cost(passes=option_passes("steps", "octaves")),
    order=70,
    title="Deep dream with octaves",
    summary="Amplify what a layer sees in a photo, over an octave pyramid (reference gallery row 7).",
    description="Deep dream over an octave pyramid, detail carried from small to large scales.",
    reference="Mordvintsev et al. 2015, Inceptionism: Going Deeper into Neural Networks",
    options=(
        LAYER,
        FILTER_OPTION,
        Option("octaves", INT, 10, "Octave pyramid levels (1: no pyramid).", minimum=1),
        Option("octave_scale", FLOAT, 1.4, "Size ratio between octaves.", above=1),
        Option("steps", INT, 20, "Steps per octave.", minimum=1),
        Option("lr", FLOAT, 0.01, "Step size: x += lr / mean|g| * g, clipped to the valid range.", above=0),
        SIZE,
        BATCH_SIZE,
        SAVE_EVERY,
    ),
    compute=compute,
    **PICTURE_OUTPUT,
)
