"""What a technique is: one description from which everything else follows.

A :class:`Technique` names a visualisation technique once (``saliency``,
``grad-cam``, ...) and says what it takes and what it makes: its options with
defaults and help, its renderings, whether it reads images, its gallery text,
and the two functions that do the work: ``compute`` (tensors to a
:class:`Result`) and ``render`` (one row of a result to pictures).  From it the
package derives

* the ``cnnvis-tasks NAME`` command (:mod:`cnnvis_tasks.cli.techniques`),
* the technique's block of the config schema (:mod:`cnnvis_tasks.workflow.config`),
* the workflow's jobs, their command lines and outputs (:mod:`cnnvis_tasks.workflow.plan`),
* its gallery section and report category (:mod:`cnnvis_tasks.gallery`),
* the Python verb :func:`cnnvis_tasks.compute`.

One call of a technique computes *rows*: one per image (or, for techniques
without images, one per value of the ``item`` option), times every combination
of the values of its repeatable options (several ``--layer``, ``--method``, ...).
The workflow gives each job one value of every repeatable option except those
marked ``together``, whose values share a job.

Imports neither torch nor click: the workflow reads these descriptions each
time it starts.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# Kinds of option values.  Each maps to a JSON schema (config) and a click type (CLI).
INT, FLOAT, BOOL, STRING, CHOICE, LAYER, TARGET, FILTER = (
    "int",
    "float",
    "bool",
    "string",
    "choice",
    "layer",
    "target",
    "filter",
)
# Module paths: no path separators, whitespace, shell or glob metacharacters.
LAYER_PATTERN = r"^[A-Za-z0-9_.\-]+$"

# Where the config holds an option: in the technique's block, in each model's
# block (a list per model), or nowhere (command line only).
TECHNIQUE_LEVEL, MODEL_LEVEL, COMMAND_ONLY = "technique", "model", "command"


def _plain(value: Any) -> str:
    return str(value)


@dataclass(frozen=True)
class Option:
    """One option of a technique: a keyword of ``compute``, a ``--flag`` of the
    command and (unless ``where`` is ``"command"``) a config key.

    ``repeatable`` options may be given several times; every value makes rows of
    its own (see the module doc), and in the config they are a list under
    ``plural``.  ``per_row`` ones reach ``compute`` as one value per row, so rows
    that differ only in them share a batch.  ``together`` ones share one
    workflow job for all their values.  ``per_image`` options (the target class)
    are given once for all images or once per image.
    """

    name: str
    kind: str
    default: Any = None
    help: str = ""
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    above: float | None = None  # an exclusive minimum
    repeatable: bool = False
    per_row: bool = False
    together: bool = False
    per_image: bool = False
    where: str = TECHNIQUE_LEVEL
    plural: str | None = None
    required: bool = False
    config_default: Any = None  # the config's default list for a repeatable option
    default_text: str | None = None  # the [default: ...] text when the default depends on other options
    negative: str | None = None  # a boolean's "off" flag: --robust/--plain
    nullable: bool = False  # the config may say null: the command's default applies
    metavar: str | None = None
    check: Callable[[Any], str | None] | None = None  # a value's problem in one line, or None (colormaps)
    affects_results: bool = True  # False: a change re-runs nothing in the workflow (batch size)
    label: Callable[[Any], str] = _plain  # a value in gallery headers ("layer _blocks.4")
    token: Callable[[Any], str] = _plain  # a value in file names ("filter45")

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def config_key(self) -> str:
        return (self.plural or self.name + "s") if self.repeatable else self.name

    def parse(self, value: Any) -> Any:
        """A command-line or config value as ``compute`` takes it (targets and
        filters: ``top1`` and ``all`` become None)."""
        if self.kind == TARGET:
            return parse_target(value)
        if self.kind == FILTER:
            return parse_filter(value)
        return value

    def json_schema(self) -> dict[str, Any]:
        """The JSON schema of one value."""
        schema: dict[str, Any]
        if self.kind == INT:
            schema = {"type": "integer"}
        elif self.kind == FLOAT:
            schema = {"type": "number"}
        elif self.kind == BOOL:
            schema = {"type": "boolean"}
        elif self.kind == CHOICE:
            schema = {"type": "string", "enum": list(self.choices)}
        elif self.kind == LAYER:
            schema = {
                "type": "string",
                "pattern": LAYER_PATTERN,
                "description": "A module path, as listed by `cnnvis-tasks layers --model M`.",
            }
        elif self.kind == TARGET:
            schema = {
                "oneOf": [
                    {"type": "integer", "minimum": 0},
                    {"type": "string", "enum": ["top1", "label"]},
                ],
                "description": 'Class to explain: "top1" (the model\'s prediction), "label" (each image\'s '
                "label: a manifest's label column or its class folder) or a class index.",
            }
        elif self.kind == FILTER:
            schema = {
                "oneOf": [{"type": "integer", "minimum": 0}, {"type": "string", "const": "all"}],
                "description": 'A channel index of the layer, or "all" channels.',
            }
        else:
            schema = {"type": "string", "minLength": 1}
        if self.minimum is not None:
            schema["minimum"] = self.minimum
        if self.maximum is not None:
            schema["maximum"] = self.maximum
        if self.above is not None:
            schema["exclusiveMinimum"] = self.above
        if self.nullable:
            schema["type"] = [schema["type"], "null"]
        return schema


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


# In PassNeeds.gradients: the layer Grad-CAM chooses automatically, resolved once the model is loaded.
AUTO_LAYER = "auto"


@dataclass(frozen=True)
class PassNeeds:
    """What one setting of a technique reads from a forward and backward shared with
    others (``cnnvis-tasks shared-pass``, :mod:`cnnvis_tasks.mechanisms.shared_pass`):
    the gradient of the target logit with respect to the input, the activations of
    ``features``, and the activations and gradients of ``gradients`` (``AUTO_LAYER``:
    Grad-CAM's automatic choice)."""

    input_gradient: bool = False
    features: tuple[str, ...] = ()
    gradients: tuple[str, ...] = ()

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
    # compute takes ``boxes``: each image's bounding box in input pixels, (N, 4) x0, y0, x1,
    # y1, NaN where it has none (the command's --box, an image list's box column)
    reads_boxes: bool = False
    item: str | None = None  # techniques without images: the option whose values are the rows' items
    model_rows: ModelRows = ModelRows()
    config_required: tuple[str, ...] = ()  # config keys (besides models) that must be given
    config_extra: Mapping[str, dict[str, Any]] = field(default_factory=dict)  # config-only keys: their schemas
    job_options: Callable[[Mapping[str, Any], Mapping[str, Any]], dict[str, Any]] | None = None
    caption: Callable[[Mapping[str, Any]], list[str]] | None = None  # extra caption lines from a picture's facts
    caption_first: bool = False  # extra lines before the standard ones (the layer Grad-CAM chose)
    reports_steps: bool = False  # compute reports optimisation steps (progress, snapshots)
    # A shared pass (cnnvis-tasks shared-pass): given one setting's options (parsed, with
    # the repeatable ones' values), what it reads from the pass, or why it cannot share it
    # (a str: "--method guided changes the backward"); and from_pass(model, pass, images,
    # **options) -> the Result compute would give, from a mechanisms.shared_pass.Pass.
    shares_pass: Callable[[Mapping[str, Any]], PassNeeds | str] | None = None
    from_pass: Callable[..., Result] | None = None

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
        from .techniques import get_technique

        technique = get_technique(self.technique)
        name = rendering or technique.renderings[0].name
        host = self.to_host()
        rendered = technique.render(host, row, (name,), host.options)
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


# --- values shared by several techniques -----------------------------------------


def parse_target(value: Any) -> int | str | None:
    """``top1`` (the model's prediction) is None; a number is a class index >= 0; any
    other text is a label (a WordNet ID or a class name), resolved once the model is loaded."""
    if value is None or str(value).strip().lower() in ("top1", "top-1"):
        return None
    if isinstance(value, float) and not value.is_integer():
        raise ValueError(f"{value!r} is neither 'top1' nor a class index")
    text = str(int(value) if isinstance(value, float) else value).strip()
    if not text:
        raise ValueError("an empty target: give 'top1', a class index or a label")
    if text.lstrip("-").isdigit():
        index = int(text)
        if index < 0:
            raise ValueError(f"class index must be >= 0, got {index}")
        return index
    return text


def parse_filter(value: Any) -> int | None:
    """``all`` channels is None; otherwise a channel index >= 0."""
    if value is None or str(value).lower() == "all":
        return None
    try:
        index = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is neither 'all' nor a channel index") from None
    if index < 0:
        raise ValueError(f"channel index must be >= 0, got {index}")
    return index


def filter_token(value: Any) -> str:
    """A filter in file names: ``filter45`` or ``all``."""
    index = parse_filter(value)
    return "all" if index is None else f"filter{index}"


def filter_label(value: Any) -> str:
    index = parse_filter(value)
    return "all channels" if index is None else f"filter {index}"


def layer_label(value: Any) -> str:
    return f"layer {value}"


def broadcast(values: Sequence[Any], count: int, what: str, per: str) -> list[Any]:
    """One value for all ``count`` items, or one per item."""
    values = list(values)
    if len(values) == 1:
        return values * count
    if len(values) != count:
        raise ValueError(f"got {count} {per} but {len(values)} {what}; give it once or once per {per.rstrip('s')}")
    return values


MAX_SIZE = 4096  # a larger shorter side is almost surely a mistake: 4096 x 4096 is 16.7 M pixels
SIZE = Option(
    "size",
    INT,
    224,
    f"Resize so the shorter side is SIZE, keeping the aspect ratio (0: original size; at most {MAX_SIZE}). "
    "A model of fixed input size (a ViT) takes the central square at its own size.",
    minimum=0,
    maximum=MAX_SIZE,
)
# Sizes a model of fixed input size (a ViT) decides: left at their defaults on the command
# line they reach the runner as None, so that only a size the user asked for is warned about.
SIZED_BY_MODEL = ("size", "width", "height")
BATCH_SIZE = Option("batch_size", INT, 16, "Images per forward pass.", minimum=1, affects_results=False)
TARGET_CLASS = Option(
    "target",
    TARGET,
    "top1",
    "Target class: 'top1' (the model's prediction), a class index, a WordNet ID or a class name; once for all "
    "images or once per image.",
    per_image=True,
    metavar="top1|INDEX|LABEL",
)


def layer_option(help: str, **overrides: Any) -> Option:
    """A repeatable ``--layer`` set per model in the config (``layers: [...]``)."""
    settings = {"repeatable": True, "where": MODEL_LEVEL, "metavar": "PATH", "label": layer_label}
    settings.update(overrides)
    return Option("layer", LAYER, help=help, **settings)


def slug(text: str) -> str:
    """``text`` reduced to characters safe in rule names."""
    return re.sub(r"\W+", "_", text)
