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
  the mask; with either, the pointing game (Zhang et al. 2018: does the map's largest
  value lie on the object?) and relevance rank accuracy (Arras et al. 2022: the share of
  the K highest-ranked pixels on the object of K pixels), on the mask where the image
  has one, else on the box;
* faithfulness correlation (Bhatt et al. 2020): the Pearson correlation, over
  ``--correlation-runs`` random sets of ``--correlation-subset`` input values set to
  the image's smallest value, between the map's sum over each set and the fall of the
  target logit (higher is better);
* max- and average-sensitivity (Yeh et al. 2019, robustness): how far the map moves,
  relative to its norm, when uniform noise of ``--sensitivity-radius`` is added to the
  input, over ``--sensitivity-samples`` noisy copies (lower is better);
* sparseness (Chalasani et al. 2020, complexity): the Gini index of the map's absolute
  values (higher: more concise; as the complexity technique's).

The new axes equal Quantus's ``FaithfulnessCorrelation``, ``MaxSensitivity``,
``AvgSensitivity``, ``Sparseness``, ``PointingGame`` and ``RelevanceRankAccuracy`` with
their defaults (tests/test_trust_references.py).  ``--max-seconds`` bounds the time an
image may take: one over it fails alone, saying which step it was in.

The numbers go in the job's record (``results/metrics.csv`` collects them); the
picture of a row draws its curves.  The scoring is in
:mod:`cnnvis_tasks.techniques.trust_scores`, the tensor work in
:mod:`cnnvis_tasks.mechanisms.faithfulness`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from cnnvis_tasks.technique import (
    BATCH_SIZE,
    BOOL,
    FLOAT,
    INT,
    METHOD,
    SIZE,
    TARGET_CLASS,
    Cost,
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
    Option(
        "sensitivity_samples",
        INT,
        8,
        "Max- and average-sensitivity (robustness): noisy copies of each image, each explained again (0: none).",
        minimum=0,
    ),
    Option(
        "sensitivity_radius",
        FLOAT,
        0.2,
        "Sensitivity's noise: uniform in [-R, R] on every input value, in the model's input space (after "
        "normalisation; 0.2 is about 0.045 of the pixel range with ImageNet's statistics).",
        above=0.0,
    ),
    Option(
        "correlation_runs",
        INT,
        32,
        "Faithfulness correlation: random subsets of input values removed, one forward each (0: none).",
        minimum=0,
        check=lambda runs: "a correlation needs at least 2 runs (or 0: none)" if runs == 1 else None,
    ),
    Option(
        "correlation_subset",
        INT,
        224,
        "Faithfulness correlation: input values (over channels and pixels) each subset sets to the image's "
        "smallest value.",
        minimum=1,
    ),
    Option(
        "max_seconds",
        FLOAT,
        None,
        "Time budget per image for the method and its metrics; an image over it fails alone, saying which step it "
        "was in.",
        above=0.0,
        nullable=True,
        default_text="no budget",
    ),
    TARGET_CLASS,
    SIZE,
    BATCH_SIZE,
)


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
    sensitivity_samples: int = 8,
    sensitivity_radius: float = 0.2,
    correlation_runs: int = 32,
    correlation_subset: int = 224,
    max_seconds: float | None = None,
    batch_size: int = 16,
    seed: int = 0,
    boxes=None,
    masks=None,
    **_options: Any,
) -> Result:
    from cnnvis_tasks.mechanisms.time_budget import time_budget
    from cnnvis_tasks.techniques.trust_scores import score_method

    budget = None if max_seconds is None else max_seconds * images.shape[0]
    with time_budget(budget, per_image=max_seconds) as spent:
        return score_method(
            model,
            images,
            targets,
            explained=EXPLAINED.parse(explain),
            deletion_insertion=deletion_insertion,
            steps=steps,
            road_steps=road_steps,
            randomisation_stages=randomisation_stages,
            road=road,
            sensitivity_samples=sensitivity_samples,
            sensitivity_radius=sensitivity_radius,
            correlation_runs=correlation_runs,
            correlation_subset=correlation_subset,
            batch_size=batch_size,
            seed=seed,
            boxes=boxes,
            masks=masks,
            step=spent.step if spent is not None else (lambda _name: None),
        )


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
        # the new axes are optional columns: a run that turns one off keeps the columns it had
        Measure(
            "faithfulness_correlation",
            "Faithfulness correlation",
            higher_is_better=True,
            short="faithfulness",
            optional=True,
        ),
        # a low correlation: the map changes when the model does
        Measure("randomisation", "Randomisation correlation", higher_is_better=False, short="rand.", ranks=False),
        Measure(
            "max_sensitivity", "Max-sensitivity", higher_is_better=False, short="max sens.", ranks=False, optional=True
        ),
        Measure(
            "avg_sensitivity", "Avg-sensitivity", higher_is_better=False, short="avg sens.", ranks=False, optional=True
        ),
        Measure("sparseness", "Sparseness (Gini)", higher_is_better=True, short="sparse", ranks=False, optional=True),
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
        Measure("pointing_game", "Pointing game", higher_is_better=True, short="pointing", ranks=False, optional=True),
        Measure(
            "rank_accuracy",
            "Relevance rank accuracy",
            higher_is_better=True,
            short="rank acc.",
            ranks=False,
            optional=True,
        ),
    ),
    identity=("model", "method", "explain", "image", "target"),
    group="method",
    heading="Which method to trust",
    anchor="trust",
    pictures=(TablePicture("curves", "curves averaged over the images", _averaged_curves),),
)


def perturbation_passes(options: dict, _pixels: int) -> float:
    """Roughly how many batches' worth of copies one image's metrics send through the
    model, counting the method's own map as one: deletion and insertion, ROAD's two
    orders, faithfulness correlation's runs, the noisy maps of sensitivity."""
    return float(
        int(options["steps"])
        + 2 * int(options["road_steps"])
        + int(options["correlation_runs"]) / 2
        + int(options["sensitivity_samples"])
    )


TECHNIQUE = Technique(
    name="metrics",
    cost=Cost(work=6.0, copies=True, passes=perturbation_passes),
    order=110,
    title="Which explanation to trust",
    summary="Faithfulness, sanity, robustness, complexity and localisation of attribution methods per image: "
    "deletion, insertion, ROAD, faithfulness correlation, randomisation, sensitivity, sparseness, pointing game.",
    description="How well each method's map ranks the pixels the model needs: the target probability as the "
    "highest-ranked pixels are deleted (lower area is better) or inserted into a blurred copy (higher is better), "
    "ROAD's least- minus most-relevant-first imputation (higher is better), and the rank correlation of the map "
    "with the map on a model whose top layers are randomised (lower: the method explains the model), the "
    "correlation between the attribution of random sets of input values and the score's fall when they are removed "
    "(higher is better), how far the map moves under small input noise (lower is better) and its sparseness; and "
    "for an image with a bounding box or mask, the share of the map's positive attribution inside it, whether its "
    "peak lies on the object and the share of its top-ranked pixels that do.",
    reference="Petsiuk et al. 2018, RISE; Rong et al. 2022, A consistent and efficient evaluation strategy for "
    "attribution methods (ROAD); Adebayo et al. 2018, Sanity checks for saliency maps; Bhatt et al. 2020, "
    "Evaluating and aggregating feature-based model explanations; Yeh et al. 2019, On the (in)fidelity and "
    "sensitivity of explanations; Zhang et al. 2018, Top-down neural attention by excitation backprop; Arras et al. "
    "2022, CLEVR-XAI; Chalasani et al. 2020, Concise explanations of neural networks using adversarial training",
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
