"""The workflow's configuration: its schema, made from the techniques, and its checks.

``schema.yaml`` beside this module holds the workflow's own keys (images,
results, chunks, device, models, gallery); each technique's block under
``techniques:`` is made from its description (:func:`technique_schema`).
:func:`check_config` validates a config against the whole, fills in the
defaults, and checks what only the installed packages know (model names,
colormaps); every problem is one line naming the key and what is allowed.

Imports neither torch nor snakemake.
"""

from __future__ import annotations

import copy
import functools
import os
from collections.abc import Iterable
from importlib import resources
from typing import Any

import jsonschema
import yaml
from jsonschema import validators

from cnnvis_tasks.errors import CnnvisError
from cnnvis_tasks.models.names import model_name_problem
from cnnvis_tasks.models.spec import EMBEDDED, HF, TORCHSCRIPT, TORCHVISION, ModelSpec, spec_from_config
from cnnvis_tasks.technique import COMMAND_ONLY, MODEL_LEVEL, Option, Technique
from cnnvis_tasks.techniques import all_techniques


class ConfigError(ValueError):
    """A config the workflow cannot run: one line naming the key."""


def _list_schema(option: Option, *, non_empty: bool = True) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "array",
        "items": option.json_schema(),
        "uniqueItems": True,
        "description": option.help,
    }
    if non_empty:
        schema["minItems"] = 1
    if option.config_default is not None:
        schema["default"] = list(option.config_default)
    return schema


def _model_schema(technique: Technique) -> dict[str, Any]:
    """The schema of one model's block under the technique."""
    options = [option for option in technique.options if option.where == MODEL_LEVEL]
    schema: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": {}}
    mode = technique.model_rows.mode
    if mode == "pairs":
        key = technique.model_rows.key or "pairs"
        item = {
            "type": "object",
            "additionalProperties": False,
            "required": [o.name for o in options],
            "properties": {o.name: o.json_schema() for o in options},
        }
        schema["properties"][key] = {
            "type": "array",
            "minItems": 1,
            "items": item,
            "description": f"({', '.join(o.name for o in options)}) combinations.",
        }
        schema["required"] = [key]
    elif mode == "either":
        schema["properties"] = {o.config_key: _list_schema(o, non_empty=False) for o in options}
        schema["anyOf"] = [{"required": [o.config_key], "properties": {o.config_key: {"minItems": 1}}} for o in options]
    else:
        schema["properties"] = {o.config_key: _list_schema(o) for o in options}
        required = [o.config_key for o in options if o.required]
        if required:
            schema["required"] = required
    if not options:
        schema["description"] = "Nothing to set per model for this technique (give {})."
    return schema


def _option_schema(option: Option) -> dict[str, Any]:
    if option.repeatable:
        return _list_schema(option)
    schema = option.json_schema()
    schema.setdefault("description", option.help)
    if option.default is not None or option.nullable:
        schema["default"] = option.default
    return schema


# Keys every technique's block has (a default must be inline, not behind a $ref, to be filled in).
_ENABLED = {
    "type": "boolean",
    "default": True,
    "description": "Set to false to leave the technique out without deleting its settings.",
}
_RAW = {"type": "boolean", "default": False, "description": "Also write the raw array (.npy) beside each picture."}
_MAX_PIXELS = {
    "type": ["integer", "null"],
    "minimum": 1,
    "default": None,
    "description": "The largest image, in pixels after resizing, this technique takes, when lower than the "
    "workflow's max_pixels (null: the workflow's); a larger one fails alone, with the reason.",
}


def technique_max_pixels(config: dict[str, Any], settings: dict[str, Any]) -> int:
    """The largest input a technique's jobs take: its own ``max_pixels`` where lower than the
    workflow's (a technique may refuse more images, never take ones the workflow refuses)."""
    own = settings.get("max_pixels")
    return min(own, config["max_pixels"]) if own else config["max_pixels"]


def technique_schema(technique: Technique) -> dict[str, Any]:
    """The JSON schema of a technique's block under ``techniques:``."""
    properties: dict[str, Any] = {
        "enabled": dict(_ENABLED),
        "models": {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": _model_schema(technique),
            "description": "The models this technique runs on, each with its own settings.",
        },
    }
    for option in technique.options:
        if option.where not in (COMMAND_ONLY, MODEL_LEVEL):
            properties[option.config_key] = _option_schema(option)
    if technique.several_renderings:
        names = [rendering.name for rendering in technique.renderings]
        properties["renderings"] = {
            "type": "array",
            "items": {"type": "string", "enum": names},
            "minItems": 1,
            "uniqueItems": True,
            "default": names,
            "description": "Pictures to write.",
        }
    if technique.reduction is not None:  # the reduce's own options (the channel atlas's tile size)
        for option in technique.reduction.options:
            properties[option.config_key] = _option_schema(option)
    else:
        properties["raw"] = dict(_RAW)
    if technique.reads_images:
        properties["max_pixels"] = dict(_MAX_PIXELS)
    properties.update(copy.deepcopy(dict(technique.config_extra)))
    return {
        "description": f"{technique.title}: {technique.description}",
        "type": "object",
        "additionalProperties": False,
        "required": ["models", *technique.config_required],
        "properties": properties,
    }


@functools.cache
def _full_schema() -> dict[str, Any]:
    schema = yaml.safe_load(resources.files(__package__).joinpath("schema.yaml").read_text(encoding="utf-8"))
    schema["properties"]["techniques"]["properties"] = {t.config_key: technique_schema(t) for t in all_techniques()}
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema


def full_schema() -> dict[str, Any]:
    """The whole config schema: the workflow's keys and every technique's block."""
    return copy.deepcopy(_full_schema())


# --- validation -------------------------------------------------------------------


def _with_defaults(validator_class):
    """A validator that fills in each missing property's default while it validates."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema:
                    instance.setdefault(name, copy.deepcopy(subschema["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    return validators.extend(validator_class, {"properties": set_defaults})


_FillingValidator = _with_defaults(jsonschema.Draft202012Validator)


def _where(path: Iterable[Any]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def describe(error: jsonschema.ValidationError) -> str:
    """One line naming the config key, what is wrong, and what is allowed."""
    where = _where(error.absolute_path)
    if error.validator == "additionalProperties" and error.validator_value is False:
        allowed = sorted(error.schema.get("properties", {}))
        unexpected = sorted(set(error.instance) - set(allowed))
        keys = ", ".join(_where([*error.absolute_path, key]) for key in unexpected)
        return f"unknown config key {keys}; allowed under {where}: {', '.join(allowed) or 'nothing'}"
    if error.validator == "enum":
        return (
            f"config key {where}: {error.instance!r} is not allowed; "
            f"allowed values: {', '.join(map(str, error.validator_value))}"
        )
    if error.validator == "const":
        return f"config key {where}: {error.instance!r} is not allowed; allowed value: {error.validator_value!r}"
    if error.validator in ("oneOf", "anyOf"):
        if list(error.absolute_path) == ["images"]:
            return "config key images: give exactly one of folder, glob or manifest"
        options = []
        for sub in error.validator_value:
            if "const" in sub:
                options.append(repr(sub["const"]))
            elif "type" in sub:
                bound = f" >= {sub['minimum']}" if "minimum" in sub else ""
                options.append(f"{sub['type']}{bound}")
            elif "required" in sub:
                options.append(" and ".join(sub["required"]))
        return (
            f"config key {where}: {error.instance!r} is not allowed; "
            f"allowed: {' or '.join(options) or 'see cnnvis-tasks config-schema'}"
        )
    if error.validator == "pattern":
        return f"config key {where}: {error.instance!r} is not allowed; it must match {error.validator_value}"
    if error.validator == "minProperties":
        return f"config key {where}: must not be empty"
    if error.validator == "type" and error.validator_value == "boolean" and isinstance(error.instance, str):
        # Snakemake's --config reads only True and False as booleans
        hint = f", or {where}=True / False with --config" if len(error.absolute_path) == 1 else ""
        return f"config key {where}: {error.instance!r} is not a boolean; write true or false in a config file{hint}"
    return f"config key {where}: {error.message}"


def validate(config: dict[str, Any]) -> dict[str, Any]:
    """Validate ``config`` against :func:`full_schema` and fill in the defaults (in place)."""
    schema = _full_schema()
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        best = jsonschema.exceptions.best_match(errors)
        raise ConfigError(f"config error: {_option_problem(best) or describe(best)}")
    _FillingValidator(schema).validate(config)
    return config


def _option_problem(error: jsonschema.ValidationError) -> str | None:
    """A schema error on one value of a technique's option (``techniques.T.OPTION``,
    ``techniques.T.OPTIONS[i]``, ``techniques.T.models.M.OPTIONS[i]``) in the words of
    the option's own parser, :meth:`Option.parse`: those of the command line and the
    Python verb.  None for any other error, or a value the parser takes."""
    path = list(error.absolute_path)
    if len(path) < 3 or path[0] != "techniques" or not isinstance(path[1], str):
        return None
    techniques = {technique.config_key: technique for technique in all_techniques()}
    technique, rest = techniques.get(path[1]), path[2:]
    if technique is None:
        return None
    level = MODEL_LEVEL if rest[0] == "models" and len(rest) > 2 else None
    if level and technique.model_rows.mode == "pairs":
        return None  # objects of several options each
    rest = rest[2:] if level else rest
    options = {o.config_key: o for o in technique.options if (o.where == MODEL_LEVEL) == bool(level)}
    option = options.get(rest[0]) if rest and isinstance(rest[0], str) else None
    one_value = len(rest) == (2 if option is not None and option.repeatable else 1)
    if option is None or not one_value or (len(rest) == 2 and not isinstance(rest[1], int)):
        return None
    try:
        option.parse(error.instance)
    except ValueError as problem:
        return f"config key {_where(path)}: {problem}"
    return None


def enabled_techniques(config: dict[str, Any]) -> list[tuple[Technique, dict[str, Any]]]:
    """(technique, its settings) for every technique the config runs, in gallery order."""
    chosen = config["techniques"]
    return [
        (t, chosen[t.config_key])
        for t in all_techniques()
        if t.config_key in chosen and chosen[t.config_key].get("enabled", True)
    ]


def model_weights(config: dict[str, Any], model: str) -> str:
    return config["weights"] or config["models"][model]["weights"]


def model_spec(config: dict[str, Any], model: str) -> ModelSpec:
    """The config's ``models.MODEL`` entry as a :class:`ModelSpec` (``--config weights=...`` applied)."""
    try:
        return spec_from_config(model, config["models"][model], config["weights"])
    except CnnvisError as error:
        raise ConfigError(f"config error: models.{model}: {error}") from None


def _model_problem(config: dict[str, Any], name: str, check_names: bool) -> str | None:
    """What is wrong with model ``name``'s entry that a look at the files and names shows."""
    spec = model_spec(config, name)
    where = f"config error: models.{name}"
    if spec.source in (TORCHVISION, EMBEDDED) and check_names and not spec.may_be_pickled_model:
        problem = model_name_problem(spec.target)
        if problem:
            return f"{where}.arch: {problem}; or timm:NAME, hf:FOLDER, module:pkg.mod:function, torchscript"
    if spec.source == HF and not os.path.isfile(os.path.join(os.path.expanduser(spec.target), "config.json")):
        return f"{where}.arch: {spec.target!r} is not a transformers model folder (no config.json in it)"
    weights = spec.weights
    if spec.source == TORCHSCRIPT and weights in ("default", "random"):
        return f"{where}.weights: arch torchscript loads a torch.jit archive: give its file as weights"
    if weights not in ("default", "random") and not os.path.isfile(weights):
        return f"{where}.weights: {weights!r} is neither default, random nor a file"
    if isinstance(spec.classes, str) and not os.path.exists(spec.classes):
        return f"{where}.classes: {spec.classes!r}: no such file"
    return None


def check_config(config: dict[str, Any], *, check_model_names: bool = True) -> dict[str, Any]:
    """Validate (defaults filled in), then check the names that only the installed
    packages know: models (imports torchvision, seconds: ``check_model_names``
    False skips it where the main process already did) and each technique option's
    values, by the option's own parser (:meth:`Option.parse`: its check of colormaps,
    of the trust metrics' and SmoothGrad's methods, in the command's and Python's words)."""
    validate(config)
    for name in config["models"]:
        problem = _model_problem(config, name, check_model_names)
        if problem:
            raise ConfigError(problem)
    for technique, settings in enabled_techniques(config):
        key = technique.config_key
        for name in settings["models"]:
            if name not in config["models"]:
                raise ConfigError(
                    f"config error: techniques.{key}.models.{name}: model {name!r} is not declared under models; "
                    f"declared: {', '.join(config['models'])}"
                )
        for option in technique.options:  # every value through its option's parser (methods, colormaps)
            if option.where in (COMMAND_ONLY, MODEL_LEVEL):
                continue
            values = settings.get(option.config_key)
            many = option.repeatable and isinstance(values, list)
            for index, value in enumerate(values if many else [values]):
                try:
                    option.parse(value)
                except ValueError as error:
                    where = _where(["techniques", key, option.config_key, *([index] if many else [])])
                    raise ConfigError(f"config error: config key {where}: {error}") from None
    _check_module_trees(config)
    return config


def _check_module_trees(config: dict[str, Any]) -> None:
    """A TorchScript archive has no named layers: the settings that need them are refused."""
    from cnnvis_tasks.models.spec import needs_module_tree
    from cnnvis_tasks.workflow.settings import job_settings

    for technique, settings in enabled_techniques(config):
        for name, per_model in settings["models"].items():
            if model_spec(config, name).source != TORCHSCRIPT:
                continue
            for values in job_settings(technique, settings, per_model):
                why = needs_module_tree(technique, {**settings, **values})
                if why:
                    raise ConfigError(
                        f"config error: techniques.{technique.config_key}.models.{name}: {technique.name} cannot run "
                        f"on a TorchScript archive ({name}): {why}; load the model from its architecture and a "
                        "state dict instead"
                    )
