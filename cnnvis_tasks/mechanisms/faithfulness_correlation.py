"""Faithfulness correlation (Bhatt et al. 2020): does the attribution a random set of input
values holds predict how much the score falls when they are removed?

For each image, ``runs`` times: ``subset`` input values (over channels and pixels, the
map's value of a pixel standing for each of its channels) are chosen at random and set to
a baseline (``black``: the image's smallest value); the fall of the target logit, and the
sum of the map over the chosen values.  The score is the Pearson correlation of the two
over the runs (higher: more faithful).  This is Quantus's ``FaithfulnessCorrelation``
with its defaults (logits, "black", Pearson; the map broadcast over the channels).

The copies go through the model in chunks of at most ``batch_size`` under
``torch.inference_mode()`` (:func:`.attribution.copy_chunks`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from cnnvis_tasks.mechanisms.attribution import copy_chunks
from cnnvis_tasks.mechanisms.layout import forward_layout
from cnnvis_tasks.mechanisms.metric_maps import check_maps, target_scores

BASELINES = ("black", "white", "mean")


def random_subsets(images: int, values: int, subset: int, runs: int, seed: int) -> Tensor:
    """(N, runs, subset) int64 indices into an image's flattened values, each run's without
    repeats, uniform over the sets; each image's from its own generator seeded with
    ``seed`` (an image's subsets do not depend on its batch)."""
    if not 1 <= subset <= values:
        raise ValueError(f"the subset must hold 1 to {values} input values, got {subset}")
    out = torch.empty(images, runs, subset, dtype=torch.int64)
    for image in range(images):
        generator = torch.Generator().manual_seed(seed)
        for run in range(runs):
            # the `subset` smallest of i.i.d. uniform keys: a uniformly random set, at the cost of one pass
            out[image, run] = torch.rand(values, generator=generator).topk(subset, largest=False).indices
    return out


def baseline_values(inputs: Tensor, baseline: str) -> Tensor:
    """(N,) the value each image's chosen values are set to: its smallest (``black``),
    largest (``white``) or mean value over channels and pixels."""
    flat = inputs.detach().flatten(1)
    if baseline == "black":
        return flat.amin(dim=1)
    if baseline == "white":
        return flat.amax(dim=1)
    if baseline == "mean":
        return flat.mean(dim=1)
    raise ValueError(f"unknown baseline {baseline!r}; expected one of {BASELINES}")


def pearson(first: Tensor, second: Tensor) -> Tensor:
    """(N,) float64 Pearson correlation of each row pair of (N, K); NaN where a row is constant."""
    a = first.double() - first.double().mean(dim=1, keepdim=True)
    b = second.double() - second.double().mean(dim=1, keepdim=True)
    scale = a.norm(dim=1) * b.norm(dim=1)
    correlation = (a * b).sum(dim=1) / scale
    return torch.where(scale > 0, correlation.clamp(-1.0, 1.0), torch.full_like(correlation, torch.nan))


@torch.inference_mode()
def faithfulness_correlation(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    maps: Tensor,
    *,
    runs: int = 32,
    subset: int = 224,
    baseline: str = "black",
    seed: int = 0,
    batch_size: int = 16,
    subsets: Tensor | None = None,
) -> dict[str, Tensor]:
    """Bhatt et al.'s faithfulness correlation of ``maps`` (N, H, W at the inputs' size) for
    ``targets`` (N,) on ``inputs`` (N, C, H, W, the model's input space).

    ``subsets`` (N, runs, subset) replaces :func:`random_subsets`'s draw (a test gives a
    reference library the same).  Returns ``correlation`` (N,) and, per run, ``falls``
    (N, runs: the logit before minus after) and ``sums`` (N, runs: the map over the chosen
    values)."""
    check_maps(inputs, maps)
    n, channels, height, width = inputs.shape
    values = channels * height * width
    if runs < 2:
        raise ValueError("faithfulness correlation needs at least 2 runs")
    if subsets is None:
        subsets = random_subsets(n, values, subset, runs, seed)
    subsets = subsets.to(inputs.device)
    if subsets.shape[:2] != (n, runs):
        raise ValueError(f"subsets must be ({n}, {runs}, K), got {tuple(subsets.shape)}")
    fill = baseline_values(inputs, baseline)
    flat = inputs.detach().flatten(1)
    spread = maps.detach().double()[:, None].expand(n, channels, height, width).flatten(1)
    sums = spread.gather(1, subsets.flatten(1)).view(n, runs, -1).sum(dim=2)
    before = torch.cat(
        [
            target_scores(
                model(forward_layout(inputs[start : start + batch_size])).float(), targets[start:][:batch_size], "logit"
            )
            for start in range(0, n, max(1, batch_size))
        ]
    )
    after = torch.empty(n, runs, dtype=torch.float32, device=inputs.device)
    for owners, which in copy_chunks(n, runs, batch_size, inputs.device, pixels=height * width, forward_only=True):
        copies = flat[owners].clone()
        chosen = subsets[owners, which]
        copies.scatter_(1, chosen, fill[owners, None].expand_as(chosen).to(copies.dtype))
        logits = model(forward_layout(copies.view(-1, channels, height, width)))
        after[owners, which] = target_scores(logits.float(), targets[owners], "logit")
    falls = before[:, None] - after
    return {"correlation": pearson(sums, falls), "falls": falls, "sums": sums}
