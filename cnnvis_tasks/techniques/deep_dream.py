"""Deep dream, the reference gallery's plain version (row 6): Adam on the photo
itself to amplify what a layer (or one of its channels) responds to; no octave
pyramid (that is ``deep-dream-octaves``)."""

from __future__ import annotations

from typing import Any

from cnnvis_tasks.technique import (
    FILTER,
    FLOAT,
    INT,
    MODEL_LEVEL,
    SIZE,
    Cost,
    Option,
    Result,
    Technique,
    filter_label,
    filter_token,
    layer_option,
    option_passes,
)
from cnnvis_tasks.techniques.ascent_family import BATCH_SIZE, PICTURE_OUTPUT, SAVE_EVERY, ascent_result

LAYER = layer_option("Module path whose activation is amplified (see: cnnvis-tasks layers).", required=True)
FILTER_OPTION = Option(
    "filter",
    FILTER,
    "all",
    "One channel of the layer, or all channels.",
    repeatable=True,
    where=MODEL_LEVEL,
    config_default=["all"],
    metavar="N|all",
    label=filter_label,
    token=filter_token,
)


def compute(
    model, images, targets=None, *, layer: str, filter=None, steps: int, lr: float, report: Any = None, **_options: Any
) -> Result:
    from cnnvis_tasks.mechanisms.ascent import deep_dream_adam
    from cnnvis_tasks.technique import SILENT

    outcome = deep_dream_adam(
        model.module, images, layer, filter, mean=model.mean, std=model.std, steps=steps, lr=lr, report=report or SILENT
    )
    facts = {"layer": layer, "filter": "all" if filter is None else filter, "lr": lr}
    return ascent_result("deep-dream", outcome, layer=layer, facts=facts)


TECHNIQUE = Technique(
    name="deep-dream",
    cost=Cost(passes=option_passes("steps")),
    order=60,
    title="Deep dream",
    summary="Amplify what a layer sees in a photo, the plain way (reference gallery row 6).",
    description="A photo changed by gradient ascent (Adam on the mean activation) to amplify what a layer (or "
    "one filter) responds to.",
    reference="Mordvintsev et al. 2015, Inceptionism: Going Deeper into Neural Networks",
    options=(
        LAYER,
        FILTER_OPTION,
        Option("steps", INT, 200, "Adam steps.", minimum=1),
        Option("lr", FLOAT, 0.1, "Adam learning rate.", above=0),
        SIZE,
        BATCH_SIZE,
        SAVE_EVERY,
    ),
    compute=compute,
    **PICTURE_OUTPUT,
)
