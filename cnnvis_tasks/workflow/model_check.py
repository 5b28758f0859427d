"""The config's layer names, filter and parameter indices and class indices,
checked against each model's architecture when the workflow is read, so that a
typo stops the run at once, naming the key, not inside a job an hour later.

The architecture is built on the meta device (no weights, no arithmetic); what
was asked of a model and found right is cached, so a later start imports no
torch for it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import CnnvisError
from ..outputs import read_cache, write_cache
from .config import ConfigError, enabled_techniques, model_weights

CHECK_VERSION = 2  # bump when what is checked changes


def questions(config: dict[str, Any]) -> dict[str, list[tuple[str, str, Any]]]:
    """Per model: (config key, kind, value) of each layer, (layer, filter), parameter
    index and class index the config names for it."""
    from .plan import job_settings

    asked: dict[str, list[tuple[str, str, Any]]] = {}
    for technique, settings in enabled_techniques(config):
        key = f"techniques.{technique.config_key}"
        for model in settings["models"]:
            found = asked.setdefault(model, [])
            where = f"{key}.models.{model}"
            for values in job_settings(technique, settings, settings["models"][model]):
                layer = values.get("layer")
                if layer is not None and layer != "auto":
                    found.append((where, "layer", layer))
                    if "filter" in values:
                        filters = values["filter"] if isinstance(values["filter"], list) else [values["filter"]]
                        found += [(where, "filter", (layer, f)) for f in filters if str(f) != "all"]
                explained = _explained_layer(values)
                if explained is not None:
                    found.append((f"{key}.methods ({values['explain']!r})", "layer", explained))
                if values.get("parameter") is not None:
                    found.append((where, "parameter", int(values["parameter"])))
                targets = values.get("target")
                for target in targets if isinstance(targets, list) else [targets]:
                    if isinstance(target, int):
                        found.append((f"{key}.classes", "class", target))
            if isinstance(settings.get("target"), int):
                found.append((f"{key}.target", "class", settings["target"]))
    return {model: sorted(set(found), key=repr) for model, found in asked.items()}


def _explained_layer(values: dict[str, Any]) -> str | None:
    """The layer a scored method's text names (``--explain 'grad-cam --layer features.28'``), if any."""
    text = values.get("explain")
    if not isinstance(text, str):
        return None
    from ..explained import parse_explained

    try:
        layer = parse_explained(text).options.get("layer")
    except CnnvisError:
        return None  # the config check reports the text itself
    return layer if isinstance(layer, str) and layer != "auto" else None


def _answers(model: str, asked: Iterable[tuple[str, str, Any]], check_classes: bool) -> str | None:
    """The first problem with what is asked of ``model``, or None."""
    from ..layers import layer_table
    from ..mechanisms.tokens import required_input_size
    from ..models import build_on_meta

    module = build_on_meta(model)
    modules = dict(module.named_modules())
    try:
        shapes = {name: shape for name, _kind, shape in layer_table(module, required_input_size(module) or 224)}
    except Exception:  # an op without a meta kernel: names only
        shapes = {}
    parameters = len(list(module.named_parameters()))
    classes = None
    last = None
    for child in module.modules():
        if type(child).__name__ == "Linear":
            last = child
    if last is not None:
        classes = last.out_features
    for where, kind, value in asked:
        if kind == "layer" and value not in modules:
            from ..layers import get_module

            try:
                get_module(module, value)
            except CnnvisError as error:
                return f"config error: {where}: {error} (model {model})"
        elif kind == "filter":
            layer, index = value
            shape = shapes.get(layer)
            if shape and len(shape) >= 1 and not 0 <= int(index) < shape[0]:
                return (
                    f"config error: {where}: filter {index} out of range for layer {layer!r} of {model}: "
                    f"valid 0..{shape[0] - 1}"
                )
        elif kind == "parameter" and not 0 <= value < parameters:
            return f"config error: {where}: parameter index {value} out of range for {model} (0..{parameters - 1})"
        elif kind == "class" and check_classes and classes is not None and not 0 <= value < classes:
            return f"config error: {where}: class index {value} out of range for {model} (0..{classes - 1})"
    return None


def check_models(config: dict[str, Any], cache: str | Path | None) -> None:
    """Raise a one-line :class:`ConfigError` for the first name or index no model has."""
    known = read_cache(cache)
    changed = False
    for model, asked in questions(config).items():
        weights = model_weights(config, model)
        check_classes = weights in ("default", "random")  # a weights file may have other classes
        key = json.dumps([CHECK_VERSION, model, check_classes, asked], default=list)
        if known.get(key) == "ok":
            continue
        problem = _answers(model, asked, check_classes)
        if problem:
            raise ConfigError(problem)
        known[key] = "ok"
        changed = True
    if cache and changed:
        write_cache(cache, known)
