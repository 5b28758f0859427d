"""Cascading model randomisation (Adebayo et al. 2018): the Spearman rank correlation
between the maps of the trained model and those of copies whose layers are
re-initialised in cascade from the head down.  A map that depends on what the model
learned decorrelates.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn


def average_ranks(values: Tensor) -> Tensor:
    """(N, M) float64 ranks 1..M of each row, tied values sharing their mean rank."""
    ranks = torch.empty(values.shape, dtype=torch.float64, device=values.device)
    for row, line in enumerate(values):
        _, inverse, counts = torch.unique(line, sorted=True, return_inverse=True, return_counts=True)
        ends = torch.cumsum(counts, 0).double()
        ranks[row] = (ends - (counts.double() - 1) / 2)[inverse]
    return ranks


def spearman(first: Tensor, second: Tensor) -> Tensor:
    """(N,) Spearman rank correlation of each pair of flattened maps, in float64
    (NaN where a map is constant)."""
    a = average_ranks(first.detach().flatten(1).double())
    b = average_ranks(second.detach().flatten(1).double())
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    return (a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1))


Stage = str | Sequence[str]


def _names(stage: Stage) -> list[str]:
    return [stage] if isinstance(stage, str) else list(stage)


def reinitialise(model: nn.Module, names: Sequence[str], seed: int) -> int:
    """Re-initialise every submodule of the modules ``names`` of ``model`` that has
    a ``reset_parameters`` (``_reset_parameters``: attention) with the global
    generators seeded with ``seed``, restored afterwards.  Returns how many tensors
    of parameters and buffers changed."""
    devices = sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})
    changed = 0
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for name in names:
            for module in model.get_submodule(name).modules():
                reset = getattr(module, "reset_parameters", None) or getattr(module, "_reset_parameters", None)
                if reset is None:
                    continue
                before = [t.clone() for t in (*module.parameters(recurse=False), *module.buffers(recurse=False))]
                with torch.no_grad():
                    reset()
                after = (*module.parameters(recurse=False), *module.buffers(recurse=False))
                changed += sum(not torch.equal(b, a) for b, a in zip(before, after))
    return changed


def randomisation(
    compute_map: Callable[[nn.Module], Tensor],
    model: nn.Module,
    stages: Sequence[Stage],
    *,
    seed: int = 0,
    absolute: bool = True,
    reference: Tensor | None = None,
) -> Tensor:
    """(len(stages), N) float64: Spearman correlation between ``compute_map(model)``
    (or ``reference``, the same maps when the caller has them already)
    and ``compute_map`` of a copy of ``model`` whose ``stages`` (module names, or lists
    of names, from the head down) are re-initialised in cascade: row k after stages
    0..k (Adebayo et al. 2018's cascading randomisation).  Stage k is re-initialised
    with seed ``seed + k`` (:func:`reinitialise`); ``model`` itself is never changed.

    ``absolute`` (default): correlate |maps|, as Adebayo et al.'s main figures do for
    gradients, whose sign flips easily; this is the stricter check (a map that only
    flips sign still counts as unchanged).  ``absolute=False``: the signed maps."""
    reference = (compute_map(model) if reference is None else reference).detach()
    randomised = copy.deepcopy(model)
    rows = []
    for k, stage in enumerate(stages):
        if not reinitialise(randomised, _names(stage), seed + k):
            raise ValueError(f"stage {stage!r} has no parameters to re-initialise")
        maps = compute_map(randomised).detach()
        if absolute:
            rows.append(spearman(reference.abs(), maps.abs()))
        else:
            rows.append(spearman(reference, maps))
    del randomised
    return torch.stack(rows)


def _owns_parameters(module: nn.Module) -> bool:
    return next(module.parameters(), None) is not None


def _blocks(module: nn.Module, prefix: str) -> list[tuple[str, nn.Module]]:
    """Parameter-owning children of ``module``, lists of blocks (Sequential, ModuleList) opened."""
    out = []
    for name, child in module.named_children():
        if not _owns_parameters(child):
            continue
        full = f"{prefix}{name}"
        if isinstance(child, (nn.Sequential, nn.ModuleList)):
            out.extend(_blocks(child, full + "."))
        else:
            out.append((full, child))
    return out


def cascade_stages(model: nn.Module, count: int = 5) -> list[list[str]]:
    """A default cascade of ``count`` stages (fewer if the model has fewer blocks),
    from the head down, for :func:`randomisation`.

    The model's *blocks* are its parameter-owning children, lists of blocks
    (``nn.Sequential``, ``nn.ModuleList``: ResNet's ``layer1``, EfficientNet's
    ``_blocks``/``features``, VGG's ``features``) opened into their members; while
    there are fewer than ``count`` blocks, the largest other block is opened too (a
    ViT's ``encoder``).  The last block (the classifier) is stage 0 alone; the others,
    from the top, are split into ``count - 1`` runs of consecutive blocks as equal in
    number as possible (the upper runs one longer).  Parameters a module holds
    directly (a ViT's position embedding) belong to no block and stay trained."""
    blocks = _blocks(model, "")
    while len(blocks) < count:
        openable = [(sum(p.numel() for p in m.parameters()), i) for i, (_, m) in enumerate(blocks) if _blocks(m, "")]
        if not openable:
            break
        _, index = max(openable)
        name, module = blocks[index]
        blocks[index : index + 1] = _blocks(module, name + ".")
    names = [name for name, _ in blocks][::-1]
    if not names:
        raise ValueError("the model has no parameters to re-initialise")
    head, rest = names[:1], names[1:]
    runs = min(count - 1, len(rest))
    if runs <= 0:
        return [head]
    sizes = [len(rest) // runs + (1 if k < len(rest) % runs else 0) for k in range(runs)]
    stages, start = [head], 0
    for size in sizes:
        stages.append(rest[start : start + size])
        start += size
    return stages
