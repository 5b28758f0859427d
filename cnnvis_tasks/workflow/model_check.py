"""Each model of the config, loaded once when the workflow is read, and the config's
layer names, filter and parameter indices and class indices checked against it, so
that a typo, a checkpoint that does not fit its architecture or a class list that
does not fit its head stops the run at once, naming the key, not inside a job an
hour later.

:func:`resolve_models` loads each model as its jobs will (same code) and writes what
it found, the model's classes and preprocessing, to ``RESULTS/models/NAME.json``,
the file every job of that model loads it from.  What was found is cached by the
model's description and its files' sizes and times, so a later start imports no
torch for it.  The layer checks build the architecture on the meta device.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cnnvis_tasks.errors import CnnvisError
from cnnvis_tasks.io.outputs import atomic_write, read_cache, write_cache
from cnnvis_tasks.models.spec import HF, MODULE, TORCHSCRIPT, ModelSpec, import_from_working_directory, read_spec_file
from cnnvis_tasks.workflow.config import ConfigError, enabled_techniques, model_spec

CHECK_VERSION = 4  # bump when what is checked changes
MODEL_FILE_PATTERN = "models/{model}.json"


def model_file(results: str, spec: ModelSpec) -> str:
    """Where the workflow writes a model's description for its jobs: named by its content,
    so that a later start with another config (a dry run, ``--config weights=random``)
    never changes the file a running or queued job loads."""
    digest = hashlib.sha1(spec.to_json().encode("utf-8")).hexdigest()[:12]
    return f"{results}/" + MODEL_FILE_PATTERN.format(model=f"{spec.name}-{digest}")


def readable_model_file(results: str, model: str) -> str:
    """The description of model ``model`` the last start found, for people to read."""
    return f"{results}/" + MODEL_FILE_PATTERN.format(model=model)


def model_inputs(spec: ModelSpec) -> list[str]:
    """The files a model is loaded from (its weights file; a transformers folder's files):
    a changed one re-runs the model's jobs and is loaded again at the start."""
    paths = [spec.weights_file] if spec.weights_file else []
    if spec.source == HF:
        folder = Path(spec.target).expanduser()
        paths += sorted(str(p) for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
    if spec.source == MODULE:
        paths += _module_source(spec.target.rsplit(":", 1)[0])
    return paths


def _module_source(name: str) -> list[str]:
    """The file of the user's module ``name`` (found by path only: nothing runs)."""
    import importlib.util
    import os

    import_from_working_directory()
    try:
        found = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return []
    return [found.origin] if found is not None and found.origin and os.path.isfile(found.origin) else []


def _fingerprints(spec: ModelSpec) -> list[Any]:
    """Sizes and times of the files a model is loaded from, and the versions of the
    libraries that build it: a change is loaded and checked again."""
    found: list[Any] = [_versions()]
    for path in model_inputs(spec):
        try:
            status = Path(path).stat()
            found.append([path, status.st_size, status.st_mtime_ns])
        except OSError:
            found.append([path, None])
    return found


@functools.cache
def _versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str | None] = {}
    for package in ("torch", "torchvision", "timm", "transformers"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = None
    return found


def _class_names(
    spec: ModelSpec, where: str, folder_root: str | None, folder_labels: Iterable[str] | None
) -> tuple[list[str] | None, str]:
    """The class names ``spec`` gives (read from a file or the class folders), and where they came from."""
    from cnnvis_tasks.models.class_lists import class_names

    if spec.classes is None:
        return None, ""
    source = spec.classes
    if isinstance(source, dict):
        described = f"the class folders of {folder_root}" if folder_root else "the labels' sorted names"
    elif isinstance(source, str):
        described = f"the class folders of {source}" if Path(source).is_dir() else source
    else:
        described = "the list given"
    try:
        return class_names(source, folder_root=folder_root, folder_labels=folder_labels), described
    except CnnvisError as error:
        raise ConfigError(f"config error: {where}.classes: {error}") from None


def _load_facts(spec: ModelSpec, classes: list[str] | None, described: str) -> ModelSpec:
    """``spec`` as its jobs will load it: classes (``classes``, else the model's own), mean,
    std and input size as found; a class list that does not fit the head is an error."""
    from dataclasses import replace

    from cnnvis_tasks.models.loading import load_model, standard_model_facts
    from cnnvis_tasks.models.spec import EMBEDDED, TORCHVISION

    if spec.source in (TORCHVISION, EMBEDDED) and spec.weights == "default":
        # the source's own weights always fit: read what they are from their metadata, and
        # load nothing (they may not be downloaded yet; the first job fetches them)
        return standard_model_facts(replace(spec, classes=tuple(classes) if classes else None))
    if spec.weights == "random":  # the head is built to the classes' number
        loaded = load_model(replace(spec, classes=tuple(classes) if classes else None), device="cpu")
    else:
        loaded = load_model(replace(spec, classes=None), device="cpu")
    if classes and loaded.outputs is not None and len(classes) != loaded.outputs:
        raise CnnvisError(f"{len(classes)} class names ({described}) but its head has {loaded.outputs} outputs")
    names = classes or loaded.categories
    return replace(
        spec,
        classes=tuple(names) if names else None,
        mean=tuple(loaded.mean),
        std=tuple(loaded.std),
        input_size=loaded.input_size,
    )


def resolve_models(
    config: dict[str, Any],
    results: str,
    *,
    folder_root: str | None = None,
    folder_labels: Iterable[str] | None = None,
    main_process: bool = True,
) -> tuple[dict[str, ModelSpec], bool]:
    """Each model of the config as its jobs load it (:class:`ModelSpec` with its class
    names, mean, std and input size found), written to :func:`model_file`, and whether
    any model was loaded (not cached).  A job Snakemake started elsewhere
    (``main_process`` False) loads nothing: it finds what the start found in the cache,
    else in :func:`readable_model_file`.  A model that cannot be loaded is a one-line
    :class:`ConfigError`."""
    cache_path = f"{results}/.cache/model-check.json"
    known = read_cache(cache_path)
    resolved: dict[str, ModelSpec] = {}
    loaded = False
    for name in config["models"]:
        spec = model_spec(config, name)
        classes, described = _class_names(spec, f"models.{name}", folder_root, folder_labels)
        key = json.dumps(["model", CHECK_VERSION, spec.as_dict(), classes, _fingerprints(spec)], sort_keys=True)
        if isinstance(known.get(key), dict):
            found = ModelSpec(**known[key])
        elif not main_process:
            try:
                found = read_spec_file(readable_model_file(results, name))
            except CnnvisError as error:
                raise ConfigError(
                    f"config error: models.{name}: {error} (written by the run that started this job)"
                ) from None
        else:
            try:
                found = _load_facts(spec, classes, described)
            except CnnvisError as error:
                raise ConfigError(
                    f"config error: models.{name}: {str(error).removeprefix(f'model {name}: ')}"
                ) from None
            known[key] = found.as_dict()
            loaded = True
        if main_process:
            text = found.to_json()
            _write_if_changed(model_file(results, found), text)
            _write_if_changed(readable_model_file(results, name), text)
        resolved[name] = found
    if loaded:
        write_cache(cache_path, known)
    return resolved, loaded


def _write_if_changed(path: str, text: str) -> None:
    """Write a model file only when its text changes: its time is what re-runs the model's jobs."""
    try:
        if Path(path).read_text(encoding="utf-8") == text:
            return
    except OSError:
        pass
    try:
        atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))
    except OSError as error:
        raise ConfigError(f"config error: results: cannot write {path}: {error}") from None


def questions(config: dict[str, Any]) -> dict[str, list[tuple[str, str, Any]]]:
    """Per model: (config key, kind, value) of each layer, (layer, filter), parameter
    index and class index the config names for it."""
    from cnnvis_tasks.workflow.settings import job_settings

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
                for config_key, text, inner in _inner_layers(technique, values):
                    found.append((f"{key}.{config_key} ({text!r})", "layer", inner))
                if values.get("parameter") is not None:
                    found.append((where, "parameter", int(values["parameter"])))
                targets = values.get("target")
                for target in targets if isinstance(targets, list) else [targets]:
                    if isinstance(target, int):
                        found.append((f"{key}.classes", "class", target))
            if isinstance(settings.get("target"), int):
                found.append((f"{key}.target", "class", settings["target"]))
    return {model: sorted(set(found), key=repr) for model, found in asked.items()}


def _inner_layers(technique: Any, values: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(config key, text, layer) of each layer a method inside names (the metrics'
    ``--explain 'grad-cam --layer features.28'``)."""
    from cnnvis_tasks.technique import METHOD
    from cnnvis_tasks.technique.method import Method, slot_of

    found = []
    for option in technique.options:
        text = values.get(option.name)
        if option.kind != METHOD or not isinstance(text, str):
            continue
        try:
            method = slot_of(technique, option.name).parse(text)
        except CnnvisError:
            continue  # the config check reports the text itself
        while method is not None:  # and in a method inside it
            layer = method.options.get("layer")
            if isinstance(layer, str) and layer != "auto":
                found.append((option.config_key, text, layer))
            method = next((v for v in method.options.values() if isinstance(v, Method)), None)
    return found


def _answers(spec: ModelSpec, asked: Iterable[tuple[str, str, Any]]) -> str | None:
    """The first problem with what is asked of model ``spec`` (resolved: its classes known), or None."""
    from cnnvis_tasks.mechanisms.tokens import required_input_size
    from cnnvis_tasks.models.layers import layer_table
    from cnnvis_tasks.models.loading import build_on_meta

    model = spec.name
    classes = len(spec.classes) if spec.classes else None
    if spec.source == TORCHSCRIPT:  # no named layers (the settings that need them are refused): classes only
        module = None
        modules, shapes, parameters = {}, {}, 0
        asked = [entry for entry in asked if entry[1] == "class"]
    else:
        if spec.may_be_pickled_model:  # its layers are those of the model in the file
            from cnnvis_tasks.models.loading import load_model

            module = load_model(spec).module
        else:
            module = build_on_meta(spec)
        modules = dict(module.named_modules())
        try:
            side = spec.input_size or required_input_size(module) or 224
            shapes = {name: shape for name, _kind, shape in layer_table(module, side)}
        except Exception:  # an op without a meta kernel: names only
            shapes = {}
        parameters = len(list(module.named_parameters()))
    for where, kind, value in asked:
        if kind == "layer" and value not in modules:
            from cnnvis_tasks.models.layers import get_module

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
        elif kind == "class" and classes is not None and not 0 <= value < classes:
            return f"config error: {where}: class index {value} out of range for {model} (0..{classes - 1})"
    return None


def check_models(config: dict[str, Any], models: dict[str, ModelSpec], cache: str | Path | None) -> None:
    """Raise a one-line :class:`ConfigError` for the first name or index no model has
    (``models``: as :func:`resolve_models` found them)."""
    known = read_cache(cache)
    changed = False
    for model, asked in questions(config).items():
        spec = models[model]
        key = json.dumps([CHECK_VERSION, spec.as_dict(), _fingerprints(spec), asked], default=list, sort_keys=True)
        if known.get(key) == "ok":
            continue
        problem = _answers(spec, asked)
        if problem:
            raise ConfigError(problem)
        known[key] = "ok"
        changed = True
    if cache and changed:
        write_cache(cache, known)
