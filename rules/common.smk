# Helpers for the rules in the other .smk files: configuration checks, the image
# list and its chunks, paths, command lines, and what the gallery and the final
# target collect.  Only functions and settings here; the rules are elsewhere.

import hashlib
import json
import math
import os
import re
import shlex
import sys

import jsonschema
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

SCHEMA = f"{workflow.basedir}/config/schema.yaml"

# The techniques in the order of the seed gallery: config key -> folder in results/.
TECHNIQUES = {
    "feature_maps": "feature-maps",
    "kernels": "kernels",
    "saliency": "saliency",
    "class_viz": "class-viz",
    "filter_viz": "filter-viz",
    "deep_dream": "deep-dream",
    "deep_dream_octaves": "deep-dream-octaves",
    "grad_cam": "grad-cam",
}


# --- configuration ------------------------------------------------------------------


def _where(path):
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _allowed_keys(schema):
    return sorted(schema.get("properties", {}))


def _describe(error):
    """One line naming the config key, what is wrong, and what is allowed."""
    where = _where(error.absolute_path)
    if error.validator == "additionalProperties" and error.validator_value is False:
        allowed = _allowed_keys(error.schema)
        unexpected = sorted(set(error.instance) - set(allowed))
        keys = ", ".join(f"{_where(list(error.absolute_path) + [key])}" for key in unexpected)
        return f"unknown config key {keys}; allowed under {where}: {', '.join(allowed) or 'nothing'}"
    if error.validator == "enum":
        return f"config key {where}: {error.instance!r} is not allowed; allowed values: {', '.join(map(str, error.validator_value))}"
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
        return f"config key {where}: {error.instance!r} is not allowed; allowed: {' or '.join(options) or 'see config/schema.yaml'}"
    if error.validator == "required":
        return f"config key {where}: {error.message}"
    if error.validator == "minProperties":
        return f"config key {where}: must not be empty"
    return f"config key {where}: {error.message}"


def check_config(config):
    """Validate against the schema (defaults filled in), then check names that
    only the installed packages know: models and colormaps."""
    with open(SCHEMA, encoding="utf-8") as handle:
        schema = yaml.safe_load(handle)
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        best = jsonschema.exceptions.best_match(errors)
        raise WorkflowError(f"config error: {_describe(best)}")
    validate(config, SCHEMA)  # fills in the defaults

    from cnnvis_tasks.models import known_models
    from cnnvis_tasks.render import colormap_names
    import difflib

    known = known_models()
    for name in config["models"]:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise WorkflowError(f"config error: unknown model {name!r} under models; {hint}allowed: {', '.join(known)}")
    for technique, settings in config["techniques"].items():
        for name in settings["models"]:
            if name not in config["models"]:
                raise WorkflowError(
                    f"config error: techniques.{technique}.models.{name}: model {name!r} is not declared under models; "
                    f"declared: {', '.join(config['models'])}"
                )
    cam = config["techniques"].get("grad_cam")
    if cam and cam["colormap"] not in colormap_names():
        raise WorkflowError(
            f"config error: techniques.grad_cam.colormap: unknown colormap {cam['colormap']!r}; "
            f"allowed: {', '.join(colormap_names())}"
        )
    for name, settings in config["models"].items():
        weights = config["weights"] or settings["weights"]
        if weights not in ("default", "random") and not os.path.isfile(weights):
            raise WorkflowError(f"config error: models.{name}.weights: {weights!r} is neither default, random nor a file")


# With --configfile, use only the files given (config.yaml is not merged underneath).
if not workflow.overwrite_configfiles:
    configfile: "config.yaml"


check_config(config)

RESULTS = config["results"].rstrip("/")
THREADS = config["threads"]
DEVICE = config["device"]
SEED = config["seed"]

# Jobs run the cnnvis-tasks command of the Python environment Snakemake runs in,
# whether or not that environment is activated.
_bin = os.path.dirname(sys.executable)
_path = os.environ.get("PATH", "")
if os.path.isfile(os.path.join(_bin, "cnnvis-tasks")) and _bin not in _path.split(os.pathsep):
    os.environ.update(PATH=os.pathsep.join([_bin, _path]))


def _uses_gpu(device):
    if device.startswith("cuda"):
        return True
    if device == "auto":
        import torch

        return torch.cuda.is_available()
    return False


GPU = 1 if _uses_gpu(DEVICE) else 0


def technique(key):
    """The settings of an enabled technique, or None."""
    settings = config["techniques"].get(key)
    return settings if settings and settings.get("enabled", True) else None


def model_weights(model):
    return config["weights"] or config["models"][model]["weights"]


def weights_input(wildcards):
    """A weights file is an input of every job that uses it (a new file re-runs them)."""
    weights = model_weights(wildcards.model)
    return [weights] if weights not in ("default", "random") else []


def model_args(model):
    """The model options that change results (so they belong in params)."""
    return ["--model", model, "--weights", model_weights(model), "--seed", str(SEED)]


def optional(option, value):
    return [] if value is None else [option, str(value)]


def quote(args):
    return " ".join(shlex.quote(str(a)) for a in args)


def one_of(values):
    """A wildcard constraint matching exactly these values."""
    return "|".join(re.escape(str(v)) for v in values) or "(?!)"


wildcard_constraints:
    model="[^/]+",


# The command line of every compute job (the technique's arguments come from
# params, so a settings change re-runs exactly that technique).
COMPUTE = "cnnvis-tasks {params.command} {params.args} --device {params.device} --threads {threads} > {log} 2>&1"


# --- images and chunks --------------------------------------------------------------

from cnnvis_tasks.cli.dataset import check_images, list_images
from cnnvis_tasks.errors import CnnvisError

try:
    _source = config["images"]
    IMAGE_PATHS = list_images(folder=_source.get("folder"), pattern=_source.get("glob"),
                              manifest=_source.get("manifest"), extensions=_source["extensions"])
    # Decoding every image is cheap and cached (size, mtime), so it is done here,
    # when the workflow is read: bad images never enter a chunk (see README).
    IMAGE_STATUS = check_images(IMAGE_PATHS, cache=f"{RESULTS}/.cache/image-check.json")
except CnnvisError as error:
    raise WorkflowError(f"config error: images: {error}") from None

IMAGES = {r["name"]: r["path"] for r in IMAGE_STATUS}
GOOD_IMAGES = [r["name"] for r in IMAGE_STATUS if r["status"] == "ok"]
BAD_IMAGES = {r["name"]: r["reason"] for r in IMAGE_STATUS if r["status"] != "ok"}

# Chunks: an image's chunk is a stable hash of its name modulo the chunk count, so
# adding or removing an image changes only its own chunk.  The count is pinned by
# chunk_count, else the next power of two of images / chunk_size (when that grows,
# each chunk splits in two).
if config["chunk_count"]:
    CHUNK_COUNT = config["chunk_count"]
else:
    CHUNK_COUNT = 2 ** math.ceil(math.log2(max(1, math.ceil(len(IMAGES) / config["chunk_size"]))))


def chunk_of(name):
    return int(hashlib.sha1(name.encode("utf-8")).hexdigest(), 16) % CHUNK_COUNT


CHUNKS = {}
for _name in GOOD_IMAGES:
    CHUNKS.setdefault(f"chunk{chunk_of(_name):03d}of{CHUNK_COUNT:03d}", []).append(_name)
CHUNKS = dict(sorted(CHUNKS.items()))


def image_args(names):
    args = []
    for name in names:
        args += ["--image", IMAGES[name]]
    return args


# --- what the final target and the gallery collect -----------------------------------

ALL_TARGETS = []
GALLERY_TABLES = []


def in_results(path):
    """A path under results/ as the gallery sees it (relative to results/)."""
    return os.path.relpath(path, RESULTS)


def per_image_table(section, model, columns):
    """A gallery table with one row per image; columns: (key, label, path with {image})."""
    GALLERY_TABLES.append({
        "section": section, "table": model, "per_image": True,
        "columns": [{"key": key, "label": label, "path": in_results(path)} for key, label, path in columns],
    })


def grid_table(section, model, rows):
    """A gallery table of image-independent pictures; rows: (key, label, [(key, label, path)])."""
    GALLERY_TABLES.append({
        "section": section, "table": model, "per_image": False,
        "rows": [{"key": key, "label": label,
                  "cells": [{"key": k, "label": l, "path": in_results(p)} for k, l, p in cells]}
                 for key, label, cells in rows],
    })


def per_image_targets(pattern, **wildcards):
    """``pattern`` (with {image}) for every usable image."""
    return [pattern.format(image=name, **wildcards) for name in GOOD_IMAGES]


# --- command lines and outputs of each technique -------------------------------------
# Each *_args(names) returns a params function: the whole argument list of one job
# (model, images of its chunk, settings, one output option per image), so that a
# change to any of it re-runs that job.  Each *_outputs(names) lists a chunk job's
# outputs, one per image and rendering, marked for `snakemake --report`.

REGULARIZATION_LABELS = {"none": "no regularization", "l1": "L1 regularization", "l2": "L2 regularization"}


def feature_maps_args(names):
    settings = technique("feature_maps")

    def args(wildcards):
        folder = f"{RESULTS}/{wildcards.model}/feature-maps"
        line = model_args(wildcards.model) + image_args(names) + [
            "--layer", wildcards.layer, "--channels", settings["channels"],
            "--size", settings["size"], "--batch-size", settings["batch_size"],
        ]
        for name in names:
            line += ["--out", f"{folder}/{name}/{wildcards.layer}.png"]
            if settings["raw"]:
                line += ["--raw", f"{folder}/{name}/{wildcards.layer}.npy"]
        return quote(line)

    return args


def feature_maps_outputs(names):
    outputs = [report(f"{RESULTS}/{{model}}/feature-maps/{name}/{{layer}}.png", category="1. Feature maps",
                      subcategory="{model}", labels={"image": name, "layer": "{layer}"}) for name in names]
    if technique("feature_maps")["raw"]:
        outputs += [f"{RESULTS}/{{model}}/feature-maps/{name}/{{layer}}.npy" for name in names]
    return outputs


def kernel_names(model_settings):
    """Kernels of one model as named in paths: layer paths, then 'param<K>'."""
    return list(model_settings["layers"]) + [f"param{index}" for index in model_settings["parameters"]]


def kernels_args(wildcards):
    settings = technique("kernels")
    kernel = wildcards.kernel
    if kernel in settings["models"][wildcards.model]["layers"]:
        which = ["--layer", kernel]
    else:
        which = ["--parameter", kernel.removeprefix("param")]
    stem = f"{RESULTS}/{wildcards.model}/kernels/{kernel}"
    line = model_args(wildcards.model) + which + ["--count", settings["count"], "--out", f"{stem}.png"]
    if settings["raw"]:
        line += ["--raw", f"{stem}.npy"]
    return quote(line)


def saliency_args(names):
    settings = technique("saliency")

    def args(wildcards):
        folder = f"{RESULTS}/{wildcards.model}/saliency"
        line = model_args(wildcards.model) + image_args(names) + [
            "--method", wildcards.method, "--target", settings["target"],
            "--size", settings["size"], "--batch-size", settings["batch_size"],
        ]
        for name in names:
            for rendering in settings["renderings"]:
                line += [f"--out-{rendering}", f"{folder}/{name}/{wildcards.method}-{rendering}.png"]
            if settings["raw"]:
                line += ["--raw", f"{folder}/{name}/{wildcards.method}.npy"]
        return quote(line)

    return args


def saliency_outputs(names):
    settings = technique("saliency")
    outputs = [report(f"{RESULTS}/{{model}}/saliency/{name}/{{method}}-{rendering}.png", category="3. Saliency maps",
                      subcategory="{model}", labels={"image": name, "method": "{method}", "rendering": rendering})
               for name in names for rendering in settings["renderings"]]
    if settings["raw"]:
        outputs += [f"{RESULTS}/{{model}}/saliency/{name}/{{method}}.npy" for name in names]
    return outputs


def ascent_args(settings):
    """Options shared by class-viz and filter-viz."""
    return (["--width", settings["width"], "--height", settings["height"], "--batch-size", settings["batch_size"],
             "--robust" if settings["robust"] else "--plain"]
            + optional("--steps", settings["steps"]) + optional("--lr", settings["lr"]))


def class_viz_args(wildcards):
    settings = technique("class_viz")
    folder = f"{RESULTS}/{wildcards.model}/class-viz"
    reg = wildcards.regularization
    line = model_args(wildcards.model) + ["--regularization", reg] + optional("--weight", settings["penalty"].get(reg))
    line += ascent_args(settings)
    for index in settings["classes"]:
        line += ["--target", index, "--out", f"{folder}/class{index}-{reg}.png"]
        if settings["raw"]:
            line += ["--raw", f"{folder}/class{index}-{reg}.npy"]
    return quote(line)


def class_viz_outputs():
    settings = technique("class_viz")
    outputs = [report(f"{RESULTS}/{{model}}/class-viz/class{index}-{{regularization}}.png",
                      category="4. Class model visualisation", subcategory="{model}",
                      labels={"class": str(index), "regularization": "{regularization}"})
               for index in settings["classes"]]
    if settings["raw"]:
        outputs += [f"{RESULTS}/{{model}}/class-viz/class{index}-{{regularization}}.npy" for index in settings["classes"]]
    return outputs


def filter_viz_args(wildcards):
    settings = technique("filter_viz")
    stem = f"{RESULTS}/{wildcards.model}/filter-viz/{wildcards.layer}-filter{wildcards.filter}"
    line = model_args(wildcards.model) + ["--layer", wildcards.layer, "--filter", wildcards.filter,
                                          "--weight-decay", settings["weight_decay"], "--out", f"{stem}.png"]
    line += ascent_args(settings) + (["--raw", f"{stem}.npy"] if settings["raw"] else [])
    return quote(line)


def filter_viz_outputs():
    outputs = [report(f"{RESULTS}/{{model}}/filter-viz/{{layer}}-filter{{filter}}.png", category="5. Filter visualisation",
                      subcategory="{model}", labels={"layer": "{layer}", "filter": "{filter}"})]
    if technique("filter_viz")["raw"]:
        outputs.append(f"{RESULTS}/{{model}}/filter-viz/{{layer}}-filter{{filter}}.npy")
    return outputs


def filter_token(value):
    """A deep-dream filter as it appears in file names: 'filter45' or 'all'."""
    return "all" if str(value) == "all" else f"filter{int(value)}"


def filter_label(token):
    return "all channels" if token == "all" else f"filter {token.removeprefix('filter')}"


def deep_dream_args(key, names):
    """deep_dream: the seed's Adam version (no pyramid); deep_dream_octaves: normalised steps over octaves."""
    settings = technique(key)

    def args(wildcards):
        folder = f"{RESULTS}/{wildcards.model}/{TECHNIQUES[key]}"
        token = wildcards.filter
        line = model_args(wildcards.model) + image_args(names) + [
            "--layer", wildcards.layer, "--filter", "all" if token == "all" else token.removeprefix("filter"),
            "--size", settings["size"], "--batch-size", settings["batch_size"],
        ] + optional("--steps", settings["steps"]) + optional("--lr", settings["lr"])
        if key == "deep_dream_octaves":
            line += ["--optimizer", "normalized", "--octaves", settings["octaves"], "--octave-scale", settings["octave_scale"]]
        else:
            line += ["--optimizer", "adam", "--octaves", 1]
        for name in names:
            line += ["--out", f"{folder}/{name}/{wildcards.layer}-{token}.png"]
            if settings["raw"]:
                line += ["--raw", f"{folder}/{name}/{wildcards.layer}-{token}.npy"]
        return quote(line)

    return args


def deep_dream_outputs(key, names):
    folder = f"{RESULTS}/{{model}}/{TECHNIQUES[key]}"
    category = "7. Deep dream with octaves" if key == "deep_dream_octaves" else "6. Deep dream"
    outputs = [report(f"{folder}/{name}/{{layer}}-{{filter}}.png", category=category, subcategory="{model}",
                      labels={"image": name, "layer": "{layer}", "filter": "{filter}"}) for name in names]
    if technique(key)["raw"]:
        outputs += [f"{folder}/{name}/{{layer}}-{{filter}}.npy" for name in names]
    return outputs


def grad_cam_args(names):
    settings = technique("grad_cam")

    def args(wildcards):
        folder = f"{RESULTS}/{wildcards.model}/grad-cam"
        layer = [] if wildcards.layer == "auto" else ["--layer", wildcards.layer]
        line = model_args(wildcards.model) + image_args(names) + layer + [
            "--target", settings["target"], "--colormap", settings["colormap"], "--alpha", settings["alpha"],
            "--size", settings["size"], "--batch-size", settings["batch_size"],
        ]
        for name in names:
            for rendering in settings["renderings"]:
                line += [f"--out-{rendering}", f"{folder}/{name}/{wildcards.layer}-{rendering}.png"]
            if settings["raw"]:
                line += ["--raw", f"{folder}/{name}/{wildcards.layer}.npy"]
        return quote(line)

    return args


def grad_cam_outputs(names):
    settings = technique("grad_cam")
    outputs = [report(f"{RESULTS}/{{model}}/grad-cam/{name}/{{layer}}-{rendering}.png", category="8. Grad-CAM",
                      subcategory="{model}", labels={"image": name, "layer": "{layer}", "rendering": rendering})
               for name in names for rendering in settings["renderings"]]
    if settings["raw"]:
        outputs += [f"{RESULTS}/{{model}}/grad-cam/{name}/{{layer}}.npy" for name in names]
    return outputs


def layers_of(settings, key="layers"):
    """Every layer a technique uses, across its models (for wildcard constraints)."""
    return sorted({layer for model in settings["models"].values() for layer in model[key]})


def image_source_args():
    source = config["images"]
    if source.get("folder"):
        return ["--folder", source["folder"]]
    if source.get("glob"):
        return ["--glob", source["glob"]]
    return ["--manifest", source["manifest"]]


def bad_image_input(wildcards):
    return IMAGES[wildcards.image]


def gallery_spec(wildcards):
    """A function, so that the spec's '{image}' placeholders are not taken for wildcards."""
    return json.dumps({"tables": GALLERY_TABLES}, sort_keys=True)
