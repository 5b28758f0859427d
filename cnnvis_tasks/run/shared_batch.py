"""One forward and one backward per batch, shared by the members of a pass (``cnnvis-tasks shared-pass``).

Each member's setting says what it reads from the pass (``Technique.shares_pass``:
a :class:`~cnnvis_tasks.technique.PassNeeds`); the model runs once with every
layer needed recorded, one backward per distinct set of targets gives the input
gradient and each layer's gradient (:mod:`cnnvis_tasks.mechanisms.shared_pass`),
and each member's ``Technique.from_pass`` makes of it the :class:`Result` its
``compute`` would.  Layer names are resolved by the technique
(``PassNeeds.resolve_layer``: a CAM's automatic layer), never here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from cnnvis_tasks.errors import CnnvisError

if TYPE_CHECKING:
    from cnnvis_tasks.io.columns import Geometry
    from cnnvis_tasks.run.members import Running
    from cnnvis_tasks.run.session import Session
    from cnnvis_tasks.technique import PassNeeds, Result


def _layers(module: Any, needs: PassNeeds, names: Sequence[str]) -> list[str]:
    """Layer names as the technique resolves them for the loaded model."""
    resolve = needs.resolve_layer
    return [resolve(module, name) if resolve is not None else name for name in names]


def shared_results(
    session: Session,
    runs: Sequence[Running],
    batch_images: list[int],
    pixels: Any,
    geometry: Mapping[int, Geometry],
    show_notes: Callable[[Running, Result], None],
) -> list[tuple[Running, Result, list[int]]]:
    """Every member's results for a batch from one shared pass: [(member, host result,
    its row positions)]; nothing is written here, so that a failure leaves nothing half done."""
    from cnnvis_tasks.mechanisms.shared_pass import BackwardRequest, shared_pass

    model = session.model
    layers: list[str] = []
    backwards: dict[tuple | None, dict[str, Any]] = {}  # target set -> what its backward gives
    work = []  # (member, setting, target set, wanted)
    for run in runs:
        for setting in run.settings:
            wanted = run.wanted(batch_images, setting)
            if not wanted:
                continue
            needs, key = setting.needs, None
            layers += _layers(model.module, needs, needs.features)
            if needs.backward:
                key = None if run.targets is None else tuple(run.batch_targets(batch_images))
                request = backwards.setdefault(key, {"input": False, "layers": []})
                request["input"] |= needs.input_gradient
                request["layers"] += _layers(model.module, needs, needs.gradients)
            work.append((run, setting, key, wanted))
    if not work:
        return []
    keys = list(backwards)
    requests = [
        BackwardRequest(
            targets=None if key is None else list(key),
            input_gradient=backwards[key]["input"],
            layers=tuple(dict.fromkeys(backwards[key]["layers"])),
        )
        for key in keys
    ]
    passes = shared_pass(model.module, model.normalize(pixels), layers, requests)
    everything = list(range(len(batch_images)))
    results = []
    for run, setting, key, wanted in work:
        one = passes[keys.index(key)] if key in backwards else passes[0]
        picked = [k for k, _ in wanted]
        inputs = pixels if picked == everything else pixels[picked]
        view = one if picked == everything else one.select(picked)
        columns = run.column_keywords(run.column_values([batch_images[k] for k in picked], geometry))
        result = run.technique.from_pass(model, view, inputs, **run.options, **setting.fixed, **columns)
        show_notes(run, result)
        host = result.to_host()
        if len(host) != len(wanted):
            raise CnnvisError(f"{run.technique.name} computed {len(host)} results for {len(wanted)} rows")
        results.append((run, host, [p for _, p in wanted]))
    return results
