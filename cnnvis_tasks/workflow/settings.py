"""The settings of a technique's jobs: which option values each job gets.

A *setting* is one value of every repeatable option (a layer, a method, a
filter), except those marked ``together``, whose values share a job.  A model's
config block names its own rows (its layers, kernels' parameters, filter-viz's
pairs); the technique's block the rest.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

from cnnvis_tasks.technique import COMMAND_ONLY, MODEL_LEVEL, Technique


def picture_key(technique: Technique, setting: str, rendering: str) -> str:
    """A picture's column in the gallery's tables: its setting and rendering (either may be absent)."""
    return "-".join(part for part in (setting, rendering if technique.several_renderings else "") if part)


def _model_rows(technique: Technique, model_settings: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The rows one model's block names: option name -> value."""
    options = [option for option in technique.options if option.where == MODEL_LEVEL]
    mode = technique.model_rows.mode
    if mode == "pairs":
        return [
            {option.name: pair[option.name] for option in options}
            for pair in model_settings[technique.model_rows.key or "pairs"]
        ]
    if mode == "either":
        return [{option.name: value} for option in options for value in model_settings.get(option.config_key, [])]
    lists = [[(option.name, value) for value in model_settings[option.config_key]] for option in options]
    return [dict(combo) for combo in itertools.product(*lists)]


def job_settings(technique: Technique, settings: Mapping[str, Any], model_settings: Mapping[str, Any]) -> list[dict]:
    """One dict per job: a value of every repeatable option, and the whole list of
    each ``together`` option (its values share the job)."""
    level = [option for option in technique.repeatable if option.where != MODEL_LEVEL]
    apart = [[(o.name, value) for value in settings[o.config_key]] for o in level if not o.together]
    together = {o.name: list(settings[o.config_key]) for o in level if o.together}
    rows = []
    for model_row in _model_rows(technique, model_settings):
        for combo in itertools.product(*apart):
            rows.append(dict(combo) | model_row | together)
    return rows


def single_options(
    technique: Technique, settings: Mapping[str, Any], job: Mapping[str, Any]
) -> tuple[list[tuple[str, Any]], list[tuple[str, Any]]]:
    """The technique's single-valued options of a job, in the order of its description:
    (those that decide the results, those that do not).  A per-image option set to
    ``label`` (the target) is left out: each image gets its own."""
    deciding: list[tuple[str, Any]] = []
    runtime: list[tuple[str, Any]] = []
    values = {
        o.name: settings[o.config_key]
        for o in technique.options
        if o.where not in (COMMAND_ONLY, MODEL_LEVEL) and not o.repeatable
    }
    if technique.job_options:
        values.update(technique.job_options(settings, job))
    for option in technique.options:
        value = values.get(option.name)
        if value is None or (option.per_image and value == "label"):
            continue
        (deciding if option.affects_results else runtime).append((option.name, value))
    return deciding, runtime


def repeated_options(technique: Technique, values: Mapping[str, Any], skip: str | None = None) -> list[tuple[str, Any]]:
    """The repeatable options' values of a setting, in the order of the description
    (a ``together`` option: each of its values)."""
    found = []
    for option in technique.repeatable:
        if option.name not in values or option.name == skip:
            continue
        value = values[option.name]
        found += [(option.name, item) for item in value] if isinstance(value, list) else [(option.name, value)]
    return found


def labelled_target(technique: Technique, settings: Mapping[str, Any]) -> bool:
    """Whether the technique explains each image's label (``target: label``)."""
    return any(option.per_image and settings.get(option.config_key) == "label" for option in technique.options)
