"""Trust metrics: how faithful an attribution method's maps are to the model, per image.

Each row scores one method (``--explain 'saliency --method guided'``; in Python a
:class:`cnnvis_tasks.technique.method.Method`) on one image: the method's map is computed for
the image's target class, then

* deletion and insertion (Petsiuk et al. 2018): the target probability as the
  most relevant pixels are removed, or put back into a blurred copy, in
  ``--steps`` steps; the area under each curve (deletion: lower is better;
  insertion: higher is better);
* ROAD (Rong et al. 2022): the change in the target logit when the most (MoRF)
  or least (LeRF) relevant fractions of the pixels are imputed from their
  neighbours (plus a little noise); the score is half the mean LeRF change minus
  the mean MoRF change, pytorch-grad-cam's ``ROADCombined`` (higher is better);
* model randomisation (Adebayo et al. 2018): the Spearman rank correlation of the
  map with the map on the model whose top layers are re-initialised, stage by
  stage from the head down (a method that explains the model has low
  correlations);
* localisation, for an image with a bounding box (a manifest's ``xmin``, ``ymin``,
  ``xmax``, ``ymax`` columns, or ``--box``): the share of the map's positive
  attribution inside the box (a plausibility check: it tells whether the map points
  at the object a person marked, not whether the model used it); and for an image with
  a segmentation mask (a manifest's ``mask`` column, or ``--mask``), the share inside
  the mask.

The numbers go in the job's record (``results/metrics.csv`` collects them); the
picture of a row draws its curves.  The tensor work is in
:mod:`cnnvis_tasks.mechanisms.faithfulness`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from cnnvis_tasks.technique import (
    BATCH_SIZE,
    BOOL,
    INT,
    METHOD,
    SIZE,
    TARGET_CLASS,
    Option,
    Rendered,
    Rendering,
    Result,
    Technique,
)
from cnnvis_tasks.technique.method import Method, Slot
from cnnvis_tasks.technique.table import Measure, Table, TablePicture

# A method scored: any technique whose maps rank the pixels, with its own options but
# those this job gives every method.
EXPLAINED = Slot(owner="metrics", option="explain", verb="score", given=("target", "size", "batch_size"))


def explain_option(slot: Slot, help: str) -> Option:
    """The repeatable option that names the attribution methods a technique measures, as
    ``slot`` parses them (config key ``methods``; file names and labels from the method)."""
    return Option(
        "explain",
        METHOD,
        "grad-cam",
        help,
        repeatable=True,
        plural="methods",
        config_default=["grad-cam"],
        check=slot.problem,
        label=lambda value: slot.parse(value).label,
        token=lambda value: slot.parse(value).token,
        metavar="'TECHNIQUE [FLAGS]'",
    )


EXPLAIN = explain_option(
    EXPLAINED,
    "The attribution method to score: a technique of the saliency or CAM family and its own flags, one value "
    "each, e.g. 'grad-cam', 'saliency --method guided', 'integrated-gradients --steps 16'. Its target class, "
    "size and batch size are this command's.",
)
OPTIONS = (
    EXPLAIN,
    Option(
        "deletion_insertion",
        BOOL,
        True,
        "Compute deletion and insertion (2 x STEPS forwards per image).",
        negative="no-deletion-insertion",
    ),
    Option("steps", INT, 16, "Deletion and insertion steps (pixels removed or inserted per step: 1/STEPS).", minimum=2),
    Option("road_steps", INT, 4, "ROAD fractions: 1/(N+1), ..., N/(N+1) of the pixels imputed.", minimum=1),
    Option(
        "randomisation_stages",
        INT,
        3,
        "Model randomisation: how many stages of layers, from the head down, are re-initialised in cascade (0: none).",
        minimum=0,
    ),
    Option("road", BOOL, True, "Compute ROAD (its imputation is CPU work).", negative="no-road"),
    TARGET_CLASS,
    SIZE,
    BATCH_SIZE,
)


def _finite(rows: list[list[float]]) -> list[list[float | None]]:
    """NaN (no correlation) as None: records are JSON."""
    return [[value if math.isfinite(value) else None for value in row] for row in rows]


# Maps that add up to the change in the score (x times a gradient): a pixel's signed sum
# over channels is its contribution.  Other three-channel maps are gradients, whose sign
# alone says little: their largest |value| per pixel, as their gray pictures show them.
ADDITIVE = ("gradient-x-input", "integrated-gradients")


def channel_reduction(explained) -> str:
    """How the metrics make one value per pixel of a method's three-channel map
    (:func:`cnnvis_tasks.mechanisms.faithfulness.as_pixel_map`): ``sum`` or ``max_abs``."""
    options = explained.values()
    name = explained.technique.name
    if name == "smooth-grad":
        from cnnvis_tasks.techniques.smooth_grad import smoothed

        name = smoothed(options["method"]).technique.name
    if name in ADDITIVE:
        return "sum"
    return "max_abs"


def _explained_maps(explained, model, images, targets, batch_size: int, seed: int):
    """The method's result on ``images`` for ``targets`` (None: top-1)."""
    options = {**explained.values(), "batch_size": batch_size, "seed": seed}
    options.pop("target", None)
    return explained.technique.compute(model, images, targets, **options)


def explained_pixel_maps(explained, model, images, targets, batch_size: int, seed: int):
    """The method's result on ``images`` for ``targets`` (None: top-1), its maps as one
    value per pixel at the input's size (:func:`channel_reduction`), and that reduction."""
    from cnnvis_tasks.mechanisms.faithfulness import as_pixel_map

    base = _explained_maps(explained, model, images, targets, batch_size, seed)
    reduce = channel_reduction(explained)
    shown = base.display if base.display is not None else base.maps
    return base, as_pixel_map(shown, tuple(images.shape[-2:]), reduce), reduce


def compute(
    model,
    images,
    targets=None,
    *,
    explain: str | Method = "grad-cam",
    deletion_insertion: bool = True,
    steps: int = 16,
    road_steps: int = 4,
    randomisation_stages: int = 3,
    road: bool = True,
    batch_size: int = 16,
    seed: int = 0,
    boxes=None,
    masks=None,
    **_options: Any,
) -> Result:
    import dataclasses

    import torch

    from cnnvis_tasks.mechanisms import faithfulness

    explained = EXPLAINED.parse(explain)
    base, pixel_maps, reduce = explained_pixel_maps(explained, model, images, targets, batch_size, seed)
    x = model.normalize(images)
    chosen = base.targets
    if chosen is None:  # a class-agnostic method (Eigen-CAM): scored for the top-1 class
        from cnnvis_tasks.techniques.attribution_family import clean_pass

        chosen, _scores, _probabilities = clean_pass(model.module, x, None)
    size = tuple(images.shape[-2:])
    numbers: dict[str, Any] = {}
    curves: dict[str, Any] = {}
    if deletion_insertion:
        found = faithfulness.deletion_insertion(model.module, x, chosen, pixel_maps, steps=steps, batch_size=batch_size)
        for kind in ("deletion", "insertion"):
            curves[kind] = found[kind]
            numbers[f"{kind}_auc"] = found[f"{kind}_auc"]
    if road:
        fractions = [k / (road_steps + 1) for k in range(1, road_steps + 1)]
        found = faithfulness.road_combined(
            model.module, x, chosen, pixel_maps, fractions=fractions, seed=seed, batch_size=batch_size
        )
        curves["road_morf"], curves["road_lerf"] = found["most"], found["least"]
        numbers["road"] = found["combined"]
    if randomisation_stages:
        stages = faithfulness.cascade_stages(model.module, randomisation_stages)

        def map_of(module):
            changed = dataclasses.replace(model, module=module)
            result = _explained_maps(explained, changed, images, chosen, batch_size, seed)
            shown = result.display if result.display is not None else result.maps
            return faithfulness.as_pixel_map(shown, size, reduce)

        correlations = faithfulness.randomisation(map_of, model.module, stages, seed=seed, reference=pixel_maps)
        curves["randomisation"] = correlations.T  # (N, stages)
        # a map that the randomised model makes constant (an all-zero CAM) has no rank
        # correlation (NaN): the mean is over the stages that have one
        numbers["randomisation"] = correlations.nanmean(dim=0)
    if boxes is not None:
        boxes = boxes.to(pixel_maps.device)
        shares = faithfulness.localisation(pixel_maps, boxes.nan_to_num(0.0))
        # an image without a box (NaN coordinates) or whose box the crop left out has no share
        numbers["localisation"] = torch.where(boxes.isnan().any(dim=1), math.nan, shares)
    if masks is not None:
        numbers["mask_share"] = mask_share(pixel_maps, masks.to(pixel_maps.device))
    n = images.shape[0]
    host = {name: _finite(value.detach().double().cpu().tolist()) for name, value in curves.items()}
    # per row, so that the job's record carries them to metrics.csv (Result.facts stay in the pictures)
    classes = [int(index) for index in chosen.tolist()]
    row_facts = [
        {
            "method": explained.label,
            "explain": explained.text,
            "target": classes[row],
            "curves": {name: values[row] for name, values in host.items()},
        }
        for row in range(n)
    ]
    if randomisation_stages:
        for facts in row_facts:
            facts["stages"] = [", ".join(stage) for stage in stages]
    return Result(
        "metrics",
        maps=pixel_maps,
        targets=chosen,
        probabilities=base.probabilities,
        inputs=images,
        facts={
            "method": explained.label,
            "explain": explained.text,
            "steps": steps,
            "road_steps": road_steps,
            "channels": reduce,
        },
        row_facts=row_facts,
        row_numbers=numbers,
    )


def mask_share(maps, masks):
    """(N,) the share of each (N, H, W) map's positive attribution inside its mask (1 in,
    0 out); NaN where a row has no mask (NaN), an empty one, or no positive attribution."""
    import torch

    positive = maps.detach().double().clamp_min(0)
    inside = masks.double().nan_to_num(0.0)
    total = positive.flatten(1).sum(dim=1)
    share = (positive * inside).flatten(1).sum(dim=1) / total
    defined = (total > 0) & (inside.flatten(1).sum(dim=1) > 0) & ~masks.isnan().flatten(1).any(dim=1)
    return torch.where(defined, share, torch.full_like(share, math.nan)).to(maps.dtype)


def render(result: Result, row: int, renderings: tuple[str, ...], options: dict[str, Any]) -> Rendered:
    from cnnvis_tasks import render as draw

    facts = result.row_facts[row] if result.row_facts else {}
    picture = draw.metric_curves(facts.get("curves", {}), title=str(result.facts.get("method", "")))
    return Rendered({"curves": (picture, {})})


def mean_curves(rows: Sequence[Any], model: str) -> dict[str, dict[str, list[float]]]:
    """Per method of ``model``, each curve of its rows (:class:`cnnvis_tasks.workflow.tables.TableRow`)
    averaged over its images (curves of one length only; a missing value, None, is left out
    of its point's mean)."""
    import warnings

    import numpy as np

    sums: dict[str, dict[str, list[list[float]]]] = {}
    for row in rows:
        if row.model != model:
            continue
        for name, values in row.measured.get("curves", {}).items():
            sums.setdefault(row.facts["method"], {}).setdefault(name, []).append(list(values))
    means: dict[str, dict[str, list[float]]] = {}
    for method, curves in sums.items():
        for name, lists in curves.items():
            length = len(lists[0])
            same = [[math.nan if v is None else v for v in values] for values in lists if len(values) == length]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # a stage no image has a correlation for
                mean = np.nanmean(np.asarray(same, dtype=np.float64), axis=0)
            means.setdefault(method, {})[name] = [float(v) if math.isfinite(v) else None for v in mean]
    return means


def _averaged_curves(rows: Sequence[Any], model: str):
    from cnnvis_tasks.render import method_curves

    return method_curves(mean_curves(rows, model), title=f"{model}: averaged over its images")


# results/metrics.csv (per image, method and model), metrics-summary.csv (per method and
# model) and metrics/MODEL-curves.png; the gallery's tables and the pictures' captions
TABLE = Table(
    name="metrics",
    measures=(
        Measure("deletion_auc", "Deletion AUC", higher_is_better=False, short="deletion", sorts=True),
        Measure("insertion_auc", "Insertion AUC", higher_is_better=True, short="insertion"),
        Measure("road", "ROAD (LeRF - MoRF)", higher_is_better=True, short="ROAD"),
        # a low correlation: the map changes when the model does
        Measure("randomisation", "Randomisation correlation", higher_is_better=False, short="rand.", ranks=False),
        Measure(
            "localisation",
            "Attribution in box",
            higher_is_better=True,
            short="in box",
            ranks=False,
            sorts=True,
            inside_object=True,
        ),
        Measure(
            "mask_share", "Attribution in mask", higher_is_better=True, short="in mask", ranks=False, optional=True
        ),
    ),
    identity=("model", "method", "explain", "image", "target"),
    group="method",
    heading="Which method to trust",
    anchor="trust",
    pictures=(TablePicture("curves", "curves averaged over the images", _averaged_curves),),
)


TECHNIQUE = Technique(
    name="metrics",
    order=110,
    title="Which explanation to trust",
    summary="Faithfulness and sanity of attribution methods per image: deletion, insertion, ROAD, randomisation, "
    "localisation.",
    description="How well each method's map ranks the pixels the model needs: the target probability as the "
    "highest-ranked pixels are deleted (lower area is better) or inserted into a blurred copy (higher is better), "
    "ROAD's least- minus most-relevant-first imputation (higher is better), and the rank correlation of the map "
    "with the map on a model whose top layers are randomised (lower: the method explains the model); and for an "
    "image with a bounding box, the share of the map's positive attribution inside it.",
    reference="Petsiuk et al. 2018, RISE; Rong et al. 2022, A consistent and efficient evaluation strategy for "
    "attribution methods (ROAD); Adebayo et al. 2018, Sanity checks for saliency maps",
    options=OPTIONS,
    renderings=(Rendering("curves", "the image's deletion, insertion, ROAD and randomisation curves"),),
    raw="The method's map at the input's resolution, as the metrics rank it (.npy, H x W float32).",
    compute=compute,
    render=render,
    table=TABLE,
    columns=("box", "mask"),
    # A metric runs the model on each image dozens of times (and a perturbation method,
    # Occlusion or Score-CAM, hundreds), so its jobs refuse large inputs sooner than the rest.
    config_extra={
        "max_pixels": {
            "type": ["integer", "null"],
            "minimum": 1,
            "default": 1_000_000,
            "description": "The largest image, in pixels after resizing, the metrics take, when lower than the "
            "workflow's max_pixels (null: the workflow's); a larger one fails alone, with the reason. Lower than "
            "the workflow's by default: each image goes through the model dozens of times.",
        }
    },
)
