"""A technique's options: their kinds, their one parser, the options several techniques share.

Imports neither torch nor click.
"""

from __future__ import annotations

import difflib
import math
import numbers
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

# Kinds of option values.  Each maps to a JSON schema (config) and a click type (CLI);
# Option.parse converts and checks a value of any of them, from any edge.
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
# An attribution method another technique computes inside itself (the trust metrics'
# --explain, SmoothGrad's --method): text ('grad-cam --layer X') or a
# cnnvis_tasks.technique.method.Method, checked by the option's ``check``, and kept as given.
METHOD = "method"
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")
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
    choices: tuple[str, ...] = ()  # CHOICE: the values allowed; METHOD: the usual ones, as examples
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
        """One value from any edge (a config value, command-line text, a Python keyword)
        as ``compute`` takes it: converted to its kind (targets and filters: ``top1`` and
        ``all`` become None), within its range, passing its ``check``; else a ValueError
        saying what is wrong in one line.  None (not given: the default) stays None, and
        a parsed value parses to itself."""
        if value is None:
            return None
        value = self._converted(value)
        if value is None:
            return None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            low = self.above if self.above is not None else self.minimum
            too_low = low is not None and (value <= low if self.above is not None else value < low)
            if too_low or (self.maximum is not None and value > self.maximum):
                raise ValueError(f"{value} is not in the range {self.range_text}")
        problem = self.check(value) if self.check is not None else None
        if problem:
            raise ValueError(problem)
        return value

    @property
    def range_text(self) -> str:
        """The allowed range as click's help shows it: ``x>=1``, ``0<=x<=4096``, ``x>0``."""
        low = self.above if self.above is not None else self.minimum
        low_op = "<" if self.above is not None else "<="
        if low is None:
            return f"x<={self.maximum}"
        if self.maximum is None:
            return f"x{'>' if self.above is not None else '>='}{low}"
        return f"{low}{low_op}x<={self.maximum}"

    def _converted(self, value: Any) -> Any:
        """``value`` as this option's kind (no range or check)."""
        kind = self.kind
        if kind == TARGET:
            return parse_target(value)
        if kind == FILTER:
            return parse_filter(value)
        if kind == INT:
            return _integer(value)
        if kind == FLOAT:
            return _real(value)
        if kind == BOOL:
            text = str(value).strip().lower()
            if isinstance(value, bool) or text in _TRUE + _FALSE:
                return value if isinstance(value, bool) else text in _TRUE
            raise ValueError(f"{_shown(value)} is not true or false")
        if kind == METHOD and self.check is not None:
            return value  # text or an object: its check parses it (kept as given)
        if not isinstance(value, str):
            what = "a module path" if kind == LAYER else "text"
            raise ValueError(f"{_shown(value)} is not {what}")
        if not value.strip():
            raise ValueError("an empty value")
        if kind == CHOICE and value not in self.choices:
            close = difflib.get_close_matches(value, self.choices, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ValueError(f"{value!r} is not one of {', '.join(self.choices)}{hint}")
        if kind == LAYER and not re.match(LAYER_PATTERN, value):
            raise ValueError(f"{value!r} is not a module path (letters, digits and _ . - only)")
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
        elif self.kind == METHOD and self.choices:  # a method as text; its choices are examples
            schema = {"type": "string", "minLength": 1, "examples": list(self.choices)}
        else:  # STRING, METHOD (a method as text: the technique's own flags follow its name)
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


# --- values shared by several techniques -----------------------------------------


def _shown(value: Any) -> str:
    """A value in an error: text and numbers as they are, anything else by its type (never a
    tensor's or a module's repr)."""
    if isinstance(value, (str, int, float)):
        return repr(value)
    return f"a {type(value).__name__}"


def _integer(value: Any) -> int:
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            raise ValueError(f"{value!r} is not an integer") from None
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and float(value).is_integer():
        return int(value)  # 8.0 from a YAML file or JSON
    if not isinstance(value, (bool, numbers.Real)) and hasattr(value, "__index__"):
        return int(value.__index__())  # a 0-d integer tensor or array
    raise ValueError(f"{_shown(value)} is not an integer")


def _real(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a number")
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise ValueError(f"{_shown(value)} is not a number") from None
    if math.isnan(number):
        raise ValueError(f"{_shown(value)} is not a number")
    return number


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
