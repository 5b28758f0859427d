# Helpers for the rules in the other .smk files: configuration checks, the image
# list and its chunks, paths, command lines, and what the gallery and the final
# target collect.  Only functions and settings here; the rules are elsewhere.

import functools
import glob
import hashlib
import json
import math
import os
import re
import shlex
import sys
import typing

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

    from cnnvis_tasks.names import colormap_names, colormap_problem, known_models, model_name_problem

    # Names of torchvision's models need torchvision (seconds to import): checked by
    # the Snakemake process the user started, not again in every job it starts.
    for name in config["models"] if workflow.is_main_process else []:
        problem = model_name_problem(name)
        if problem:
            raise WorkflowError(f"config error: models.{name}: {problem}; allowed: {', '.join(known_models())}")
    for technique, settings in config["techniques"].items():
        for name in settings["models"]:
            if name not in config["models"]:
                raise WorkflowError(
                    f"config error: techniques.{technique}.models.{name}: model {name!r} is not declared under models; "
                    f"declared: {', '.join(config['models'])}"
                )
    cam = config["techniques"].get("grad_cam")
    if cam and colormap_problem(cam["colormap"]):
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
    if device != "auto":
        return False
    # Importing torch takes seconds, on every Snakemake start (and every SLURM job):
    # ask it only where the machine shows an NVIDIA device at all.
    if os.environ.get("CUDA_VISIBLE_DEVICES") in ("", "-1") or not glob.glob(os.path.join(os.sep, "dev", "nvidia[0-9]*")):
        return False
    import torch

    return torch.cuda.is_available()


GPU = 1 if _uses_gpu(DEVICE) else 0


def technique(key):
    """The settings of an enabled technique, or None."""
    settings = config["techniques"].get(key)
    return settings if settings and settings.get("enabled", True) else None


def model_weights(model):
    return config["weights"] or config["models"][model]["weights"]


def weights_of(model):
    """A weights file is an input of every job that uses it (a new file re-runs them)."""
    weights = model_weights(model)
    return [weights] if weights not in ("default", "random") else []


def weights_input(wildcards):
    return weights_of(wildcards.model)


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

from cnnvis_tasks.image_list import check_images, list_images
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

# What the gallery (and so `all`) depends on: the outputs of the image-independent
# rules, and per-image jobs through add_targets.
TARGETS = []
MISSING_OUTPUTS = []
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


def chunk_rule_name(key, model, setting, chunk):
    """Each per-image job (a technique, model, setting and chunk of images) is a rule of
    its own, so that its outputs are plain paths without wildcards, which Snakemake
    matches at once."""
    return re.sub(r"\W+", "_", f"{key}_{model}_{setting}_{chunk}")


class PerImageJob(typing.NamedTuple):
    """A technique setting of one model; rules/per_image.smk runs it over each chunk."""

    key: str  # the technique's config key
    model: str
    setting: str  # layer, method, ... as in rule names and log folders
    command: str  # the cnnvis-tasks command
    job_of_chunk: typing.Callable  # image names -> (command-line arguments, outputs)


PER_IMAGE_JOBS = []
PER_IMAGE_RULES_MADE = False  # rules/per_image.smk sets it once it has made the rules


def per_image_job(key, model, setting, command, job_of_chunk):
    """Register one technique setting of one model; rules/per_image.smk makes a rule
    for each chunk of images.  Must run before that file is included."""
    if PER_IMAGE_RULES_MADE:
        raise WorkflowError(f"per_image_job({key!r}, ...) after rules/per_image.smk: include the file earlier")
    PER_IMAGE_JOBS.append(PerImageJob(key, model, setting, command, job_of_chunk))


def add_targets(outputs):
    """The gallery depends on a per-image job through its first output (the job writes
    the rest); naming every picture of tens of thousands of images would cost
    Snakemake seconds per thousand pictures.  Snakemake re-runs a job only for
    missing outputs that are asked for, so `all` also asks for the first missing one
    of the others, if any (not the gallery: its set of inputs must stay the same)."""
    TARGETS.append(str(outputs[0]))
    if workflow.is_main_process:  # a job started by Snakemake (on a cluster) builds no gallery
        missing = next((path for path in outputs[1:] if not os.path.exists(path)), None)
        if missing:
            MISSING_OUTPUTS.append(str(missing))


# --- command lines and outputs of each technique -------------------------------------
# A per-image job's command line names the model, the images of its chunk, the
# settings and one output option per file, so that a change to any of it re-runs that
# job; its outputs are the same files, pictures marked for `snakemake --report`.

REGULARIZATION_LABELS = {"none": "no regularization", "l1": "L1 regularization", "l2": "L2 regularization"}


def per_image_stem(key, model, setting, image):
    """Where a per-image job writes for one image, without the ending: the job's
    setting names the file (results/MODEL/TECHNIQUE/IMAGE/SETTING...).  With image
    "{image}" it is the pattern of a gallery column."""
    return f"{RESULTS}/{model}/{TECHNIQUES[key]}/{image}/{setting}"


def chunk_job(model, names, options, files_of):
    """(command-line arguments, outputs) of one per-image job.  files_of(name) lists
    (option, path, report labels or None) for every file written for that image."""
    line = model_args(model) + image_args(names) + options
    outputs = []
    for name in names:
        for option, path, labels in files_of(name):
            line += [option, path]
            outputs.append(path if labels is None else report(path, **labels))
    return quote(line), outputs


def feature_maps_job(model, layer, names):
    settings = technique("feature_maps")
    options = ["--layer", layer, "--channels", settings["channels"], "--size", settings["size"],
               "--batch-size", settings["batch_size"]]

    def files_of(name):
        stem = per_image_stem("feature_maps", model, layer, name)
        labels = {"category": "1. Feature maps", "subcategory": model, "labels": {"image": name, "layer": layer}}
        return [("--out", f"{stem}.png", labels)] + ([("--raw", f"{stem}.npy", None)] if settings["raw"] else [])

    return chunk_job(model, names, options, files_of)


def saliency_job(model, method, names):
    settings = technique("saliency")
    options = ["--method", method, "--target", settings["target"], "--size", settings["size"],
               "--batch-size", settings["batch_size"]]

    def files_of(name):
        stem = per_image_stem("saliency", model, method, name)
        files = [(f"--out-{rendering}", f"{stem}-{rendering}.png",
                  {"category": "3. Saliency maps", "subcategory": model,
                   "labels": {"image": name, "method": method, "rendering": rendering}})
                 for rendering in settings["renderings"]]
        return files + ([("--raw", f"{stem}.npy", None)] if settings["raw"] else [])

    return chunk_job(model, names, options, files_of)


def filter_token(value):
    """A deep-dream filter as it appears in file names: 'filter45' or 'all'."""
    return "all" if str(value) == "all" else f"filter{int(value)}"


def filter_label(token):
    return "all channels" if token == "all" else f"filter {token.removeprefix('filter')}"


def deep_dream_job(key, model, layer, token, names):
    """deep_dream: the seed's Adam version (no pyramid); deep_dream_octaves: normalised steps over octaves."""
    settings = technique(key)
    options = ["--layer", layer, "--filter", "all" if token == "all" else token.removeprefix("filter"),
               "--size", settings["size"], "--batch-size", settings["batch_size"]]
    options += optional("--steps", settings["steps"]) + optional("--lr", settings["lr"])
    if key == "deep_dream_octaves":
        options += ["--optimizer", "normalized", "--octaves", settings["octaves"], "--octave-scale", settings["octave_scale"]]
    else:
        options += ["--optimizer", "adam", "--octaves", 1]
    category = "7. Deep dream with octaves" if key == "deep_dream_octaves" else "6. Deep dream"

    def files_of(name):
        stem = per_image_stem(key, model, f"{layer}-{token}", name)
        labels = {"category": category, "subcategory": model, "labels": {"image": name, "layer": layer, "filter": token}}
        return [("--out", f"{stem}.png", labels)] + ([("--raw", f"{stem}.npy", None)] if settings["raw"] else [])

    return chunk_job(model, names, options, files_of)


def grad_cam_job(model, layer, names):
    settings = technique("grad_cam")
    options = ([] if layer == "auto" else ["--layer", layer]) + [
        "--target", settings["target"], "--colormap", settings["colormap"], "--alpha", settings["alpha"],
        "--size", settings["size"], "--batch-size", settings["batch_size"]]

    def files_of(name):
        stem = per_image_stem("grad_cam", model, layer, name)
        files = [(f"--out-{rendering}", f"{stem}-{rendering}.png",
                  {"category": "8. Grad-CAM", "subcategory": model,
                   "labels": {"image": name, "layer": layer, "rendering": rendering}})
                 for rendering in settings["renderings"]]
        return files + ([("--raw", f"{stem}.npy", None)] if settings["raw"] else [])

    return chunk_job(model, names, options, files_of)


# Image-independent techniques (one job per model and kernel, regularization or filter).


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
