"""What a technique computes (:class:`Result`), its pictures (:class:`Rendered`) and its progress (:class:`Report`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Result:
    """What a technique computes for a batch of N rows.

    ``maps`` is the raw result of each row (what ``--raw`` writes: a gradient, a
    map at the layer's resolution, an activation, a synthesised image).  The
    other fields say what it explains and hold the facts each picture records.
    """

    technique: str
    maps: Any  # Tensor (N, ...)
    targets: Any = None  # Tensor (N,) long: the class each row explains
    probabilities: Any = None  # Tensor (N,): the softmax probability of that class
    layer: str | None = None  # the layer explained (the automatic choice resolved)
    inputs: Any = None  # Tensor (N, 3, H, W) in [0, 1]: the images, for overlays
    display: Any = None  # Tensor (N, ...): the maps at the input's resolution, for pictures
    facts: dict[str, Any] = field(default_factory=dict)  # recorded with every row
    row_facts: list[dict[str, Any]] | None = None  # recorded with one row each (host values)
    row_numbers: dict[str, Any] = field(default_factory=dict)  # name -> Tensor (N,), recorded per row
    options: dict[str, Any] = field(default_factory=dict)  # the options it ran with
    # the technique's render function (Technique.render), set by whoever ran it: Result.picture
    render: Callable[..., Rendered] | None = field(default=None, repr=False, compare=False)
    first_rendering: str | None = None  # the technique's first rendering, the default of picture()
    # what the caller should say once (the runner: once per call, after the technique's name),
    # such as "layer features.7 (chosen automatically)"
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.maps.shape[0])

    def to_host(self) -> Result:
        """The same result with every tensor on the CPU, read from the device in
        as few copies as possible."""
        import torch

        numbers = dict(self.row_numbers)
        if self.targets is not None:
            numbers["__target"] = self.targets
        if self.probabilities is not None:
            numbers["__probability"] = self.probabilities
        host_numbers: dict[str, list[float]] = {}
        if numbers:
            # float64 holds class indices and float32 values exactly: one read for all
            stacked = torch.stack([value.detach().double().reshape(-1) for value in numbers.values()], dim=1)
            columns = list(zip(*stacked.cpu().tolist())) if len(stacked) else [[] for _ in numbers]
            host_numbers = {name: list(column) for name, column in zip(numbers, columns)}

        def cpu(value: Any) -> Any:
            return value.detach().cpu() if hasattr(value, "detach") else value

        return Result(
            technique=self.technique,
            maps=cpu(self.maps),
            targets=[int(v) for v in host_numbers.pop("__target")] if self.targets is not None else None,
            probabilities=host_numbers.pop("__probability") if self.probabilities is not None else None,
            layer=self.layer,
            inputs=cpu(self.inputs),
            display=cpu(self.display),
            facts=dict(self.facts),
            row_facts=self.row_facts,
            row_numbers=host_numbers,
            options=dict(self.options),
            render=self.render,
            first_rendering=self.first_rendering,
            notes=list(self.notes),
        )

    def record(self, row: int, class_name: Callable[[int], str] | None = None) -> dict[str, Any]:
        """The facts of one row (on the host: call :meth:`to_host` first)."""
        record = dict(self.facts)
        if self.row_facts is not None:
            record.update(self.row_facts[row])
        for name, values in self.row_numbers.items():
            record[name] = float(values[row])
        if self.targets is not None:
            index = int(self.targets[row])
            record["target"] = {"index": index, "name": class_name(index) if class_name else f"class {index}"}
        if self.probabilities is not None:
            record["probability"] = float(self.probabilities[row])
        return record

    def picture(self, row: int = 0, rendering: str | None = None) -> Any:
        """One picture of one row as an H x W x 3 uint8 array (``rendering``:
        the technique's first one by default)."""
        if self.render is None:
            raise ValueError(f"this {self.technique} result has no render function: make it with cnnvis_tasks.compute")
        name = rendering or self.first_rendering
        host = self.to_host()
        rendered = self.render(host, row, (name,), host.options)
        return rendered.pictures[name][0]


@dataclass
class Rendered:
    """Pictures of one row: rendering -> (H x W x 3 uint8 array, facts to record
    with it), plus warnings about the row (an all-zero map rendered black)."""

    pictures: dict[str, tuple[Any, dict[str, Any]]]
    warnings: list[str] = field(default_factory=list)


class Report:
    """What a long computation tells its caller: steps done, snapshots."""

    save_every: int = 0

    def step(self, step: int, total: int, objective: Any, stage: str = "") -> None:
        """``objective`` is a 0-d tensor: read its value only when it is shown."""

    def snapshot(self, step: int, pixels: Any) -> None:
        """Intermediate pictures (N, 3, H, W) in [0, 1], every ``save_every`` steps."""


SILENT = Report()
