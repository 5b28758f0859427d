"""Scoring one attribution method's maps on every axis the trust metrics have: the
computation behind :mod:`cnnvis_tasks.techniques.metrics` (which describes the options,
the table and the pictures).  The tensor work is in :mod:`cnnvis_tasks.mechanisms.faithfulness`."""

from __future__ import annotations

import math
from typing import Any

from cnnvis_tasks.technique import Result
from cnnvis_tasks.techniques.method_maps import explained_maps, explained_pixel_maps


def _finite(rows: list[list[float]]) -> list[list[float | None]]:
    """NaN (no correlation) as None: records are JSON."""
    return [[value if math.isfinite(value) else None for value in row] for row in rows]


def object_regions(boxes, masks, size: tuple[int, int]):
    """(N, H, W) float: each image's object, 1 on it and 0 off it, from its mask where it has
    one, else from its box; a row of NaN where it has neither (None: no image has either)."""
    import torch

    from cnnvis_tasks.mechanisms.localisation import box_masks

    if boxes is None and masks is None:
        return None
    n = (boxes if boxes is not None else masks).shape[0]
    device = (boxes if boxes is not None else masks).device
    regions = torch.full((n, *size), math.nan, dtype=torch.float64, device=device)
    if boxes is not None:
        has_box = ~boxes.isnan().any(dim=1)
        drawn = box_masks(boxes.nan_to_num(0.0), size).double()
        regions[has_box] = drawn[has_box]
    if masks is not None:
        has_mask = ~masks.isnan().flatten(1).any(dim=1)
        regions[has_mask] = masks[has_mask].to(device, torch.float64)
    return regions


def score_method(
    model,
    images,
    targets,
    *,
    explained,
    deletion_insertion,
    steps,
    road_steps,
    randomisation_stages,
    road,
    sensitivity_samples,
    sensitivity_radius,
    correlation_runs,
    correlation_subset,
    batch_size,
    seed,
    boxes,
    masks,
    step,
) -> Result:
    """The method's map of each image and every metric the flags ask for, as the metrics
    technique's result (see :mod:`cnnvis_tasks.techniques.metrics`); ``step`` names each
    step for the time budget."""
    import dataclasses

    import torch

    from cnnvis_tasks.mechanisms import faithfulness
    from cnnvis_tasks.mechanisms.map_complexity import sparseness
    from cnnvis_tasks.mechanisms.time_budget import check_time_budget

    step(f"the {explained.label} map")
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
        step("deletion and insertion")
        found = faithfulness.deletion_insertion(model.module, x, chosen, pixel_maps, steps=steps, batch_size=batch_size)
        for kind in ("deletion", "insertion"):
            curves[kind] = found[kind]
            numbers[f"{kind}_auc"] = found[f"{kind}_auc"]
    if road:
        step("ROAD")
        fractions = [k / (road_steps + 1) for k in range(1, road_steps + 1)]
        found = faithfulness.road_combined(
            model.module, x, chosen, pixel_maps, fractions=fractions, seed=seed, batch_size=batch_size
        )
        curves["road_morf"], curves["road_lerf"] = found["most"], found["least"]
        numbers["road"] = found["combined"]
    if correlation_runs:
        step("faithfulness correlation")
        values = x[0].numel()
        found = faithfulness.faithfulness_correlation(
            model.module,
            x,
            chosen,
            pixel_maps,
            runs=correlation_runs,
            subset=min(correlation_subset, values),
            seed=seed,
            batch_size=batch_size,
        )
        numbers["faithfulness_correlation"] = found["correlation"]

    def maps_on(changed_model, inputs):
        check_time_budget()  # once per randomisation stage and per group of noisy copies
        result = explained_maps(explained, changed_model, inputs, chosen_for(inputs), batch_size, seed)
        shown = result.display if result.display is not None else result.maps
        return faithfulness.as_pixel_map(shown, size, reduce)

    def chosen_for(inputs):
        return chosen.repeat(inputs.shape[0] // chosen.shape[0])

    if randomisation_stages:
        step("model randomisation")
        stages = faithfulness.cascade_stages(model.module, randomisation_stages)
        correlations = faithfulness.randomisation(
            lambda module: maps_on(dataclasses.replace(model, module=module), images),
            model.module,
            stages,
            seed=seed,
            reference=pixel_maps,
        )
        curves["randomisation"] = correlations.T  # (N, stages)
        # a map that the randomised model makes constant (an all-zero CAM) has no rank
        # correlation (NaN): the mean is over the stages that have one
        numbers["randomisation"] = correlations.nanmean(dim=0)
    if sensitivity_samples:
        step("sensitivity")
        # the noise is in the model's input space: x + noise is the image + noise * std
        std = torch.tensor(model.std, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)

        def maps_of_noisy(noisy, _targets):
            copies = noisy.shape[0] // x.shape[0]
            noise = noisy - x.repeat(copies, 1, 1, 1)
            return maps_on(model, images.repeat(copies, 1, 1, 1) + noise * std)

        found = faithfulness.sensitivity(
            maps_of_noisy,
            x,
            chosen,
            pixel_maps,
            samples=sensitivity_samples,
            radius=sensitivity_radius,
            seed=seed,
            batch_size=batch_size,
        )
        numbers["max_sensitivity"], numbers["avg_sensitivity"] = found["max"], found["mean"]
    numbers["sparseness"] = sparseness(pixel_maps)
    if boxes is not None:
        boxes = boxes.to(pixel_maps.device)
        shares = faithfulness.localisation(pixel_maps, boxes.nan_to_num(0.0))
        # an image without a box (NaN coordinates) or whose box the crop left out has no share
        numbers["localisation"] = torch.where(boxes.isnan().any(dim=1), math.nan, shares)
    if masks is not None:
        numbers["mask_share"] = mask_share(pixel_maps, masks.to(pixel_maps.device))
    regions = object_regions(boxes, None if masks is None else masks.to(pixel_maps.device), size)
    if regions is not None:
        numbers["pointing_game"] = faithfulness.pointing_game(pixel_maps, regions)
        numbers["rank_accuracy"] = faithfulness.rank_accuracy(pixel_maps, regions)
    step("writing")
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
