"""What a technique is: its description (:class:`Technique`), renderings and what it reads from a shared pass."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cnnvis_tasks.technique.cost import GRADIENT, Cost
from cnnvis_tasks.technique.options import Option

if TYPE_CHECKING:
    from cnnvis_tasks.technique.reduction import Reduction
    from cnnvis_tasks.technique.result import Rendered, Result
    from cnnvis_tasks.technique.table import Table


@dataclass(frozen=True)
class Rendering:
    """One picture a technique makes of each row (``--out-NAME``; ``--out`` when it is the only one)."""

    name: str
    help: str


@dataclass(frozen=True)
class ModelRows:
    """How each model's config block names that model's rows.

    ``product`` (the usual): each listed option is a list, and every combination
    is a row (``layers: [a, b], filters: [3, all]``).  ``either``: each listed
    option is a list and each value is a row of its own, at least one value in
    all (kernels: ``layers`` or ``parameters``).  ``pairs``: one list under
    ``key`` of objects with every listed option (``filters: [{layer, filter}]``).
    """

    mode: str = "product"
    key: str | None = None


# A layer option's value that asks the technique to choose (the CAM family); in PassNeeds,
# resolved by the technique's PassNeeds.resolve_layer once the model is loaded.
AUTO_LAYER = "auto"


@dataclass(frozen=True)
class PassNeeds:
    """What one setting of a technique reads from a forward and backward shared with
    others (``cnnvis-tasks shared-pass``, :mod:`cnnvis_tasks.mechanisms.shared_pass`):
    the gradient of the target logit with respect to the input, the activations of
    ``features``, and the activations and gradients of ``gradients``.  A name the
    technique resolves once the model is loaded (``AUTO_LAYER``: a CAM's automatic
    choice) is resolved by ``resolve_layer(model_module, name)``; None: names are used as given."""

    input_gradient: bool = False
    features: tuple[str, ...] = ()
    gradients: tuple[str, ...] = ()
    resolve_layer: Callable[[Any, str], str] | None = None

    @property
    def backward(self) -> bool:
        """Whether it needs the backward (and so a target class per image)."""
        return self.input_gradient or bool(self.gradients)


@dataclass(frozen=True)
class Technique:
    """Everything about one technique; see the module doc."""

    name: str  # one spelling: command, result folder, gallery anchor; the config key with "_"
    order: int  # position in the gallery (the reference gallery's order, in tens)
    title: str  # gallery heading and report category
    summary: str  # one line: the command list and the gallery
    description: str  # what the picture shows: command help and the gallery section
    reference: str  # where the method comes from (paper), or ""
    options: tuple[Option, ...]
    renderings: tuple[Rendering, ...]
    raw: str  # what --raw writes, per row
    compute: Callable[..., Result]
    render: Callable[..., Rendered]
    reads_images: bool = True
    runs_model: bool = True  # False: reads weights only (kernels): one thread, no GPU
    # its maps rank the input's pixels for a target class (saliency and CAM families): the trust
    # metrics (techniques/metrics.py) can score it
    attribution: bool = False
    # the per-image inputs it reads besides the pixels (cnnvis_tasks.io.columns: "box"): compute
    # takes each as its column's keyword (a batch of values on the input), the command has
    # its --NAME, image lists and the plan carry it
    columns: tuple[str, ...] = ()
    # the numbers it measures per row make a table (a cnnvis_tasks.technique.table.Table; the
    # metrics'): the run's CSV files, its pictures and the gallery's tables follow from it
    table: Table | None = None
    # it reduces the data set instead of drawing each image (cnnvis_tasks.technique.reduction: the
    # channel examples): a job writes one file (--out) for its chunk, one reduce job per model and
    # setting merges them into a folder the gallery reads
    reduction: Reduction | None = None
    item: str | None = None  # techniques without images: the option whose values are the rows' items
    model_rows: ModelRows = ModelRows()
    config_required: tuple[str, ...] = ()  # config keys (besides models) that must be given
    config_extra: Mapping[str, dict[str, Any]] = field(default_factory=dict)  # config-only keys: their schemas
    job_options: Callable[[Mapping[str, Any], Mapping[str, Any]], dict[str, Any]] | None = None
    caption: Callable[[Mapping[str, Any]], list[str]] | None = None  # extra caption lines from a picture's facts
    caption_first: bool = False  # extra lines before the standard ones (the layer Grad-CAM chose)
    reports_steps: bool = False  # compute reports optimisation steps (progress, snapshots)
    cost: Cost = GRADIENT  # what one image costs, for a job's mem_mb and runtime (workflow.costs)
    # A shared pass (cnnvis-tasks shared-pass): given one setting's options (parsed, with
    # the repeatable ones' values), what it reads from the pass, or why it cannot share it
    # (a str: "--method guided changes the backward"); and from_pass(model, pass, images,
    # **options) -> the Result compute would give, from a mechanisms.shared_pass.Pass.
    shares_pass: Callable[[Mapping[str, Any]], PassNeeds | str] | None = None
    from_pass: Callable[..., Result] | None = None

    @property
    def reads_boxes(self) -> bool:
        return "box" in self.columns

    @property
    def config_key(self) -> str:
        return self.name.replace("-", "_")

    @property
    def module_name(self) -> str:
        return self.config_key

    def option(self, name: str) -> Option:
        for option in self.options:
            if option.name == name:
                return option
        raise KeyError(f"{self.name} has no option {name!r}")

    @property
    def repeatable(self) -> tuple[Option, ...]:
        """The options whose values make rows, in the order file names list them."""
        return tuple(option for option in self.options if option.repeatable)

    @property
    def several_renderings(self) -> bool:
        return len(self.renderings) > 1

    def output_flag(self, rendering: Rendering) -> str:
        return f"--out-{rendering.name}" if self.several_renderings else "--out"

    def setting_name(self, values: Mapping[str, Any]) -> str:
        """A row's repeatable option values as in file names: ``_blocks.10-filter45``."""
        return "-".join(option.token(values[option.name]) for option in self.repeatable if option.name in values)

    def setting_labels(self, values: Mapping[str, Any]) -> list[str]:
        return [option.label(values[option.name]) for option in self.repeatable if option.name in values]

    def defaults(self) -> dict[str, Any]:
        """Every option's default value, as ``compute`` takes it."""
        return {
            option.name: option.parse(option.default) if option.default is not None else None for option in self.options
        }
