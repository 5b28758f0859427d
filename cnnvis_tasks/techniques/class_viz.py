"""Class model visualisation (Simonyan et al. 2013; reference gallery row 4):
an image that maximises one class's logit minus a penalty, synthesised from a
random start by gradient ascent.  No image is read."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cnnvis_tasks.mechanisms.penalties import REGULARIZATIONS
from cnnvis_tasks.technique import CHOICE, COMMAND_ONLY, FLOAT, INT, Option, Result, Technique
from cnnvis_tasks.techniques.ascent_family import (
    ASCENT_COST,
    PICTURE_OUTPUT,
    SYNTHESIS_OPTIONS,
    ascent_result,
    steps_and_lr,
)

REGULARIZATION_LABELS = {"none": "no regularization", "l1": "L1 regularization", "l2": "L2 regularization"}
# The penalty weight of each regularization when none is given.  The reference gallery's L2 was
# Adam weight decay 0.01; L1 had no value there: 1e-4 visibly sparsifies a
# 400 x 600 image without washing out the class.
DEFAULT_PENALTIES = {"none": 0.0, "l1": 1e-4, "l2": 0.01}


def compute(
    model,
    images=None,
    targets=None,
    *,
    regularization,
    weight: float | None = None,
    width: int | None = None,
    height: int | None = None,
    steps: int | None = None,
    lr: float | None = None,
    robust: bool = True,
    seed: int = 0,
    report: Any = None,
    **_options: Any,
) -> Result:
    """``targets`` are class indices, one per row; ``regularization`` one per row or one for all."""
    import torch

    from cnnvis_tasks.io.images import synthesis_size
    from cnnvis_tasks.mechanisms.ascent import class_visualization
    from cnnvis_tasks.technique import SILENT, broadcast

    targets = [int(t) for t in targets]
    regularizations = broadcast(
        [regularization] if isinstance(regularization, str) else regularization,
        len(targets),
        "regularizations",
        "targets",
    )
    weights = [DEFAULT_PENALTIES[r] if weight is None else float(weight) for r in regularizations]
    steps, lr = steps_and_lr(steps, lr, robust)
    height, width = synthesis_size(model.input_size, width, height)
    outcome = class_visualization(
        model.module,
        targets,
        regularizations,
        weights,
        mean=model.mean,
        std=model.std,
        height=height,
        width=width,
        steps=steps,
        lr=lr,
        robust=robust,
        seed=seed,
        report=report or SILENT,
    )
    return ascent_result(
        "class-viz",
        outcome,
        targets=torch.tensor(targets),
        facts={"robust": robust, "lr": lr, "size": [height, width]},
        row_facts=[{"regularization": r, "weight": w} for r, w in zip(regularizations, weights)],
    )


def job_options(settings: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """The config's penalty for this job's regularization, as --weight."""
    weight = settings.get("penalty", {}).get(values["regularization"])
    return {} if weight is None else {"weight": weight}


TECHNIQUE = Technique(
    name="class-viz",
    cost=ASCENT_COST,
    order=40,
    title="Class model visualisation",
    summary="An image that maximises a class's logit (reference gallery row 4).",
    description="An image that maximises one class score (gradient ascent), by regularization.",
    reference="Simonyan et al. 2013, Deep Inside Convolutional Networks: Visualising Image Classification Models "
    "and Saliency Maps",
    options=(
        Option(
            "target",
            INT,
            None,
            "Class index to visualise; repeat for several.",
            minimum=0,
            repeatable=True,
            per_row=True,
            together=True,
            plural="classes",
            required=True,
            metavar="INDEX",
            label=lambda c: f"class {c}",
            token=lambda c: f"class{c}",
        ),
        Option(
            "regularization",
            CHOICE,
            "none",
            "Penalty on the image; repeat for several.",
            choices=REGULARIZATIONS,
            repeatable=True,
            per_row=True,
            config_default=list(REGULARIZATIONS),
            label=lambda r: REGULARIZATION_LABELS[r],
        ),
        Option(
            "weight",
            FLOAT,
            None,
            "Penalty weight lambda.",
            minimum=0,
            where=COMMAND_ONLY,
            default_text="none 0, l1 1e-4, l2 0.01 (the reference gallery's weight decay)",
        ),
        *SYNTHESIS_OPTIONS,
    ),
    compute=compute,
    **PICTURE_OUTPUT,
    reads_images=False,
    item="target",
    config_required=("classes",),
    config_extra={
        "penalty": {
            "description": "Penalty weight lambda per regularization (unset - the command's default).",
            "type": "object",
            "additionalProperties": False,
            "default": {},
            "properties": {name: {"type": "number", "minimum": 0} for name in REGULARIZATIONS},
        }
    },
    job_options=job_options,
)
