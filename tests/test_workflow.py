"""The Snakemake workflow: configuration checks, dry runs of both configs, lint,
and real runs of a tiny config in a temporary copy (incremental re-runs, a killed
run, a bad image, the seed config on random weights)."""

from __future__ import annotations

import copy
import csv
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from PIL import Image

from cnnvis_tasks.techniques import all_techniques
from cnnvis_tasks.workflow.plan import chunk_of

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("CNNVIS_TEST_ARTIFACTS", REPO / "results" / "test-artifacts"))
WORKFLOW = ["Snakefile", "rules", "config", "config.yaml", "profiles", "envs"]
# The reference gallery's techniques, in its order (config/seed.yaml).
SEED_TECHNIQUES = [
    "feature_maps",
    "kernels",
    "saliency",
    "class_viz",
    "filter_viz",
    "deep_dream",
    "deep_dream_octaves",
    "grad_cam",
]

# Every technique, tiny: two images at 64 pixels, two chunks (chelsea.png in chunk 1,
# astronaut.png in chunk 0: see chunk_of), a few steps for the ascent techniques.
TINY = {
    "images": {"folder": "images"},
    "chunk_size": 1,
    "chunk_count": 2,
    # one job per technique, setting and chunk, so that a change re-runs exactly its own
    # (test_shared_pass runs the shared jobs of this layout)
    "share_passes": False,
    "threads": 1,
    "device": "cpu",
    "models": {"efficientnet_lite0": {"weights": "default"}},
    "techniques": {
        "feature_maps": {"size": 64, "channels": 16, "models": {"efficientnet_lite0": {"layers": ["_blocks.1"]}}},
        "kernels": {"count": 9, "raw": True, "models": {"efficientnet_lite0": {"layers": ["_conv_stem"]}}},
        "saliency": {"size": 64, "methods": ["vanilla", "guided"], "raw": True, "models": {"efficientnet_lite0": {}}},
        "class_viz": {
            "classes": [1],
            "regularizations": ["none", "l2"],
            "width": 32,
            "height": 32,
            "steps": 2,
            "models": {"efficientnet_lite0": {}},
        },
        "filter_viz": {
            "width": 32,
            "height": 32,
            "steps": 2,
            "models": {"efficientnet_lite0": {"filters": [{"layer": "_blocks.2", "filter": 1}]}},
        },
        "deep_dream": {
            "size": 64,
            "steps": 2,
            "models": {"efficientnet_lite0": {"layers": ["_blocks.2"], "filters": [3]}},
        },
        "deep_dream_octaves": {
            "size": 64,
            "steps": 2,
            "octaves": 2,
            "models": {"efficientnet_lite0": {"layers": ["_blocks.2"], "filters": ["all"]}},
        },
        "grad_cam": {
            "size": 64,
            "renderings": ["gray", "overlay"],
            "models": {"efficientnet_lite0": {"layers": ["auto"]}},
        },
    },
}


def make_copy(root: Path, images=("chelsea.png", "astronaut.png"), config: dict | None = None) -> Path:
    """The workflow files, some sample images and a config in a fresh folder."""
    root.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, root / name)
        elif source.exists():
            shutil.copy2(source, root / name)
    (root / "images").mkdir(exist_ok=True)
    for image in images:
        shutil.copy2(REPO / "images" / image, root / "images" / image)
    # the default config's manifest (the images' object boxes), for the images copied
    lines = (REPO / "images" / "objects.csv").read_text().splitlines()
    kept = [lines[0]] + [line for line in lines[1:] if line.split(",")[0] in images]
    (root / "images" / "objects.csv").write_text("\n".join(kept) + "\n")
    if config is not None:
        (root / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return root


def environment(tmp_path: Path) -> dict:
    env = dict(os.environ)
    env["CNNVIS_OFFLINE"] = "1"
    env["TORCH_HOME"] = str(tmp_path / "torch-home")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def snakemake(workdir: Path, *args: str, expect: int | None = 0, timeout: float = 900) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "snakemake", "--cores", "2", *args]
    result = subprocess.run(
        command, cwd=workdir, env=environment(workdir), capture_output=True, text=True, timeout=timeout
    )
    if expect is not None and result.returncode != expect:
        raise AssertionError(
            f"{' '.join(command)} exited {result.returncode}\n{result.stdout[-6000:]}\n{result.stderr[-6000:]}"
        )
    return result


# Every job is a rule of its own (cnnvis_tasks.workflow.plan), named by technique,
# model, setting and, for techniques that read images, chunk:
# "saliency_efficientnet_lite0_vanilla_chunk000of002", "class_viz_efficientnet_lite0_l2".
KEYS = "|".join(sorted([t.config_key for t in all_techniques()] + ["predictions"], key=len, reverse=True))
PER_IMAGE_RULE = re.compile(rf"^({KEYS})_.+_(chunk\d+of\d+)$")
TECHNIQUE_RULE = re.compile(rf"^({KEYS})_.+$")


def planned(workdir: Path, *args: str, by_rule: bool = False) -> dict[str, int]:
    """The jobs a dry run would run: ``{rule: count}`` (empty when nothing to do), with
    per-image jobs counted per technique and chunk ("saliency_chunk000of002": 2 for
    two methods) and other jobs per technique ("class_viz": 3), unless by_rule."""
    result = snakemake(workdir, "--dry-run", *args)
    text = result.stdout + result.stderr
    if "Nothing to be done" in text:
        return {}
    match = re.search(r"Job stats:\n.*?\n-+\s+-+\n(.*?)\ntotal", text, re.S)
    assert match, text[-4000:]
    jobs = {}
    for line in match.group(1).splitlines():
        name, count = line.split()
        per_image = None if by_rule else PER_IMAGE_RULE.match(name)
        technique = None if by_rule else TECHNIQUE_RULE.match(name)
        if per_image:
            assert int(count) == 1, f"a per-image rule has one job: {line}"
            name = f"{per_image.group(1)}_{per_image.group(2)}"
        elif technique:
            assert int(count) == 1, f"a rule has one job: {line}"
            name = technique.group(1)
        jobs[name] = jobs.get(name, 0) + int(count)
    return jobs


def pictures(results: Path) -> list[Path]:
    return sorted(p for p in results.rglob("*.png") if p.is_file() and "test-artifacts" not in p.parts)


def assert_complete_pictures(results: Path) -> None:
    """Every PNG decodes in full (no truncated or half-written file)."""
    for path in pictures(results):
        with Image.open(path) as image:
            image.load()


# --- configuration ----------------------------------------------------------------


def test_schema_accepts_both_configs_and_fills_defaults():
    import jsonschema

    from cnnvis_tasks.workflow.config import full_schema, validate

    schema = full_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    for name in ("config.yaml", "config/seed.yaml"):
        config = yaml.safe_load((REPO / name).read_text())
        errors = list(jsonschema.Draft202012Validator(schema).iter_errors(config))
        assert errors == [], f"{name}: {[e.message for e in errors]}"
    # the default gallery shows every technique, in the gallery's order; the seed config, its eight
    assert list(yaml.safe_load((REPO / "config.yaml").read_text())["techniques"]) == [
        t.config_key for t in all_techniques()
    ]
    assert list(yaml.safe_load((REPO / "config/seed.yaml").read_text())["techniques"]) == SEED_TECHNIQUES

    config = {
        "models": {"vgg16": {}},
        "techniques": {
            "saliency": {"models": {"vgg16": {}}},
            "grad_cam": {"models": {"vgg16": {}}},
            "deep_dream_octaves": {"models": {"vgg16": {"layers": ["features.34"]}}},
        },
    }
    validate(config)
    assert config["images"] == {"folder": "images", "extensions": config["images"]["extensions"]}
    assert config["results"] == "results" and config["weights"] is None and config["device"] == "auto"
    assert config["models"]["vgg16"] == {
        "weights": "default",
        "input_size": None,
        "arch_args": {},
        "trust_pickle": False,
    }
    assert config["gallery"] == {"title": "cnnvis gallery", "preview_rows": 20, "rows_per_page": 50, "max_images": 1000}
    saliency = config["techniques"]["saliency"]
    assert saliency["methods"] == ["vanilla", "guided", "deconv"] and saliency["renderings"] == ["color", "gray"]
    assert saliency["target"] == "top1" and saliency["size"] == 224 and saliency["raw"] is False
    assert config["techniques"]["grad_cam"]["models"]["vgg16"]["layers"] == ["auto"]
    octaves = config["techniques"]["deep_dream_octaves"]
    assert octaves["octaves"] == 10 and octaves["octave_scale"] == 1.4 and octaves["steps"] == 20
    assert octaves["models"]["vgg16"]["filters"] == ["all"]


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"chunksize": 4}, ["chunksize", "allowed under (top level)", "chunk_size"]),
        (
            {"techniques": {"salency": {"models": {"efficientnet_lite0": {}}}}},
            ["techniques.salency", "allowed under techniques", "feature_maps", "grad_cam"],
        ),
        (
            {"techniques": {"saliency": {"methods": ["vanilla", "smoothgrad"], "models": {"efficientnet_lite0": {}}}}},
            ["techniques.saliency.methods[1]", "smoothgrad", "vanilla, guided, deconv"],
        ),
        ({"models": {"vgg1": {}}}, ["unknown model 'vgg1'", "did you mean vgg19", "timm:NAME"]),
        (
            {"techniques": {"grad_cam": {"colormap": "jett", "models": {"efficientnet_lite0": {}}}}},
            ["techniques.grad_cam.colormap", "jett", "viridis"],
        ),
    ],
)
def test_a_wrong_config_stops_at_once_naming_the_key_and_allowed_values(tmp_path, change, expected):
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    if "techniques" in change:
        config["techniques"] = change["techniques"]
    elif "models" in change:
        config["models"] = change["models"]
        config["techniques"] = {"kernels": {"models": {"vgg1": {"layers": ["features.0"]}}}}
    else:
        config.update(change)
    workdir = make_copy(tmp_path / "wf", config=config)
    result = snakemake(workdir, "--dry-run", expect=1)
    text = result.stdout + result.stderr
    assert "config error" in text, text[-3000:]
    for part in expected:
        assert part in text, f"{part!r} not in:\n{text[-3000:]}"
    assert not (workdir / "results" / "index.html").exists()


# --- dry runs and lint ----------------------------------------------------------------


def test_dry_run_of_the_default_config_resolves_every_rule(tmp_path):
    workdir = make_copy(tmp_path / "wf", images=("chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg"))
    jobs = planned(workdir)
    # the techniques that share one forward and backward run in one shared-pass job
    shared = {"feature_maps", "grad_cam", "grad_cam_plus_plus", "xgrad_cam", "hires_cam", "layer_cam", "eigen_cam"}
    assert jobs.pop("shared_pass_efficientnet_lite0_chunk000of001") == 1
    for rule in (t.config_key for t in all_techniques()):
        own = any(name == rule or name.startswith(rule + "_chunk") for name in jobs)
        assert own != (rule in shared), f"{rule}: {jobs}"
    assert jobs["gallery"] == 1 and jobs["image_status"] == 1 and jobs["all"] == 1
    # four images in one chunk: one job per model and method, not per image (vanilla: in the shared pass)
    assert jobs["saliency_chunk000of001"] == 2
    no_sharing = yaml.safe_load((workdir / "config.yaml").read_text()) | {"share_passes": False}
    (workdir / "config.yaml").write_text(yaml.safe_dump(no_sharing, sort_keys=False))
    jobs = planned(workdir)
    for rule in (t.config_key for t in all_techniques()):
        assert any(name == rule or name.startswith(rule + "_chunk") for name in jobs), f"no {rule} job in {jobs}"
    assert jobs["saliency_chunk000of001"] == 3 and jobs["feature_maps_chunk000of001"] == 4


def test_dry_run_of_the_seed_config_resolves_every_rule(tmp_path):
    # as shipped (pretrained weights are not needed to plan); the slow test below
    # runs every one of these jobs with the weights overridden to random
    workdir = make_copy(tmp_path / "wf")
    jobs = planned(workdir, "--configfile", "config/seed.yaml")
    expected = {
        "shared_pass_vgg16_chunk000of001": 1,  # feature maps at 4 layers and vanilla saliency: one pass
        "kernels": 6,
        "saliency_chunk000of001": 2,
        "class_viz": 3,
        "filter_viz": 2,
        "deep_dream_chunk000of001": 2,
        "deep_dream_octaves_chunk000of001": 2,
        "grad_cam_chunk000of001": 1,
        "predictions_chunk000of001": 5,  # one per model
        "image_status": 1,
        "summary": 1,
        "class_summary": 1,
        "gallery": 1,
        "all": 1,
    }
    assert jobs == expected


def test_per_image_jobs_are_rules_without_wildcards_and_the_gallery_names_one_file_each(tmp_path):
    # What keeps the DAG of a large data set quick to build (bench/dataset.py, dry
    # run): every per-image output is a plain path, and the gallery depends on each
    # per-image job through one file, not one per picture.
    config = {**TINY, "chunk_size": 1}
    config.pop("chunk_count")
    workdir = make_copy(
        tmp_path / "wf", images=("chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg"), config=config
    )
    (workdir / "images" / "broken.png").write_text("not an image")  # left out, listed: no job
    jobs = planned(workdir, by_rule=True)
    per_image = [name for name in jobs if PER_IMAGE_RULE.match(name)]
    chunks = {PER_IMAGE_RULE.match(name).group(2) for name in per_image}
    names = ("chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg")
    assert chunks == {f"chunk{chunk_of(n, 8):03d}of008" for n in names}
    # per chunk: feature maps 1 layer, saliency 2 methods, deep dream 1 + 1, Grad-CAM 1, predictions
    assert len(per_image) == 7 * len(chunks) and all(jobs[name] == 1 for name in per_image)
    text = snakemake(workdir, "--dry-run").stdout
    summary = re.search(r"^rule summary:\n\s+input: (.*)$", text, re.M)
    gallery = re.search(r"^rule gallery:\n\s+input: (.*)$", text, re.M)
    assert summary and gallery, text[-3000:]
    # the summary: one record per job (the per-image ones, kernels, class_viz (2), filter_viz) and images.json;
    # the gallery: images.json, the summary and the class tables made from it (per-class.csv, confusion.csv,
    # a confusion picture per model)
    assert len(summary.group(1).split(", ")) == len(per_image) + 5, summary.group(1)
    assert len(gallery.group(1).split(", ")) == 5
    blocks = re.findall(r"^rule (\w+):\n((?:    .*\n)+)", text, re.M)
    compute = [name for name, _ in blocks if TECHNIQUE_RULE.match(name)]
    assert set(compute) >= set(per_image) and len(compute) == len(per_image) + 4
    assert [name for name, block in blocks if "wildcards:" in block] == []
    assert re.findall(r"^rule (\w+):\n((?:    .*\n)+)", "rule x:\n    wildcards: a=1\n", re.M)  # the check can fail


def test_lint_passes(tmp_path):
    """A copy of the workflow lints clean, as the repository does (tests/test_deployment.py):
    every rule names its conda environment (envs/), so the linter asks for nothing."""
    workdir = make_copy(tmp_path / "wf")
    result = snakemake(workdir, "--lint", expect=None)
    text = result.stdout + result.stderr
    titles = re.findall(r"^    \* (.+)$", text, re.M)
    assert titles == [], text[-6000:]
    assert "your workflow is in a good condition" in text, text[-3000:]  # the linter ran
    assert result.returncode == 0, text[-3000:]


# --- real runs -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The tiny config built once; tests below change it and bring it back."""
    workdir = make_copy(tmp_path_factory.mktemp("built") / "wf", config=TINY)
    started = time.monotonic()
    snakemake(workdir)
    print(f"tiny build: {time.monotonic() - started:.0f}s")
    return workdir


@pytest.mark.slow
def test_a_real_run_builds_every_output_and_the_gallery(built):
    results = built / "results"
    model = results / "efficientnet_lite0"
    for name in ("chelsea.png", "astronaut.png"):
        for path in (
            f"feature-maps/{name}/_blocks.1.png",
            f"saliency/{name}/vanilla-color.png",
            f"saliency/{name}/guided-gray.png",
            f"saliency/{name}/guided.npy",
            f"grad-cam/{name}/auto-overlay.png",
            f"deep-dream/{name}/_blocks.2-filter3.png",
            f"deep-dream-octaves/{name}/_blocks.2-all.png",
        ):
            assert (model / path).is_file(), path
    for path in (
        "kernels/_conv_stem.png",
        "kernels/_conv_stem.npy",
        "class-viz/class1-none.png",
        "class-viz/class1-l2.png",
        "filter-viz/_blocks.2-filter1.png",
    ):
        assert (model / path).is_file(), path
    assert (results / "logs" / "efficientnet_lite0" / "saliency" / "vanilla" / "chunk000of002.log").is_file()
    assert (results / "benchmarks" / "efficientnet_lite0" / "saliency" / "vanilla" / "chunk000of002.tsv").is_file()
    from cnnvis_tasks.io.outputs import read_metadata

    cam = read_metadata(model / "grad-cam/chelsea.png/auto-overlay.png")
    page = (results / "index.html").read_text()
    assert f"layer {cam['layer']}" in page  # the layer Grad-CAM chose, read from the picture
    assert "objective" in page and "p = " in page
    assert page.index('id="feature-maps"') < page.index('id="kernels"') < page.index('id="grad-cam"')
    summary = list(csv.DictReader(io.StringIO((results / "summary.csv").read_text())))
    assert [row["name"] for row in summary] == ["astronaut.png", "chelsea.png"]
    assert {row["efficientnet_lite0 saliency guided status"] for row in summary} == {"ok"}
    assert all(row["efficientnet_lite0 top-1 name"] for row in summary)
    assert_complete_pictures(results)


@pytest.mark.slow
def test_a_second_run_does_nothing(built):
    assert planned(built) == {}


@pytest.mark.slow
def test_a_deleted_picture_is_made_again_by_its_job_alone(built):
    # not the job's first output (the one the gallery names): `all` asks for it
    picture = built / "results" / "efficientnet_lite0" / "saliency" / "chelsea.png" / "guided-gray.png"
    picture.unlink()
    assert planned(built) == {"saliency_chunk001of002": 1, "summary": 1, "class_summary": 1, "gallery": 1, "all": 1}
    snakemake(built)
    assert picture.is_file() and planned(built) == {}


@pytest.mark.slow
def test_touching_one_image_reruns_exactly_its_jobs(built):
    assert chunk_of("chelsea.png", 2) == 1 and chunk_of("astronaut.png", 2) == 0
    chunk1 = {
        "feature_maps_chunk001of002": 1,
        "saliency_chunk001of002": 2,
        "grad_cam_chunk001of002": 1,
        "deep_dream_chunk001of002": 1,
        "deep_dream_octaves_chunk001of002": 1,
        "predictions_chunk001of002": 1,
        "image_status": 1,
        "summary": 1,
        "class_summary": 1,
        "gallery": 1,
        "all": 1,
    }
    image = built / "images" / "chelsea.png"
    later = time.time_ns() + 10**9
    os.utime(image, ns=(later, later))
    # Snakemake 9 compares checksums of inputs under 1 MB: a touch alone changes nothing ...
    assert planned(built) == {}
    # ... unless only times count: then exactly the jobs of the image's chunk re-run
    assert planned(built, "--max-checksum-file-size", "0") == chunk1
    # and so they do when the picture itself changes
    with Image.open(image) as picture:
        picture = picture.convert("RGB")
    picture.putpixel((0, 0), (0, 0, 0) if picture.getpixel((0, 0)) != (0, 0, 0) else (255, 255, 255))
    picture.save(image)
    assert planned(built) == chunk1
    snakemake(built)
    assert planned(built) == {}


@pytest.mark.slow
def test_changing_one_techniques_settings_reruns_exactly_that_technique(built):
    config_file = built / "config.yaml"
    original = config_file.read_text()
    config = yaml.safe_load(original)
    try:
        config["techniques"]["saliency"]["size"] = 48
        config_file.write_text(yaml.safe_dump(config, sort_keys=False))
        both = {
            "saliency_chunk000of002": 2,
            "saliency_chunk001of002": 2,
            "summary": 1,
            "class_summary": 1,
            "gallery": 1,
            "all": 1,
        }
        assert planned(built) == both
        config["techniques"]["class_viz"]["steps"] = 3
        config_file.write_text(yaml.safe_dump(config, sort_keys=False))
        assert planned(built) == both | {"class_viz": 2}
    finally:
        config_file.write_text(original)
    assert planned(built) == {}
    # what does not change a result re-runs nothing: the device, the threads, the batch size
    config = yaml.safe_load(original)
    config["techniques"]["saliency"]["batch_size"] = 3
    config_file.write_text(yaml.safe_dump(config | {"device": "auto", "threads": 2}, sort_keys=False))
    try:
        assert planned(built) == {}
    finally:
        config_file.write_text(original)


@pytest.mark.slow
def test_adding_an_image_reruns_only_its_chunk(built):
    assert chunk_of("rocket.jpg", 2) == 0  # shares chunk 0 with astronaut; chunk 1 (chelsea) stays as it is
    shutil.copy2(REPO / "images" / "rocket.jpg", built / "images" / "rocket.jpg")
    try:
        jobs = planned(built)
        assert jobs == {
            "feature_maps_chunk000of002": 1,
            "saliency_chunk000of002": 2,
            "grad_cam_chunk000of002": 1,
            "deep_dream_chunk000of002": 1,
            "deep_dream_octaves_chunk000of002": 1,
            "predictions_chunk000of002": 1,
            "image_status": 1,
            "summary": 1,
            "class_summary": 1,
            "gallery": 1,
            "all": 1,
        }
    finally:
        (built / "images" / "rocket.jpg").unlink()
    assert planned(built) == {}


@pytest.mark.slow
def test_the_built_gallery_opens_in_headless_chromium(built):
    from test_gallery import load_checker

    checker = load_checker()
    if checker.find_browser() is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium); the page check needs a real browser")
    result = checker.check_page(built / "results" / "index.html", screenshot=ARTIFACTS / "workflow-gallery.png")
    assert len(result["images"]) >= 20
    assert [image["src"] for image in result["images"] if not image["naturalWidth"]] == []
    assert result["errors"] == []


@pytest.mark.slow
def test_the_report_includes_the_marked_outputs(built, tmp_path):
    report = built / "report.zip"
    snakemake(built, "--report", str(report))
    import zipfile

    with zipfile.ZipFile(report) as archive:
        names = archive.namelist()
    assert any(name.endswith("vanilla-color.png") for name in names), names[:20]
    assert any(name.endswith("class1-l2.png") for name in names)
    # the classes' items: the per-class table, the confusion counts and each model's confusion picture
    assert any(name.endswith("per-class.csv") for name in names) and any(
        name.endswith("confusion.csv") for name in names
    )
    assert any(name.endswith("/efficientnet_lite0.png") for name in names), names  # confusion/MODEL.png
    report.unlink()


@pytest.mark.slow
def test_a_killed_run_restarts_and_completes_with_no_corrupt_file(tmp_path):
    workdir = make_copy(tmp_path / "wf", config=TINY)
    command = [sys.executable, "-m", "snakemake", "--cores", "2"]
    process = subprocess.Popen(
        command,
        cwd=workdir,
        env=environment(workdir),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    results = workdir / "results" / "efficientnet_lite0"
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and process.poll() is None:
            if results.exists() and len(pictures(results)) >= 3:
                break
            time.sleep(0.2)
        assert process.poll() is None, "the run finished before it could be killed"
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # snakemake and every job it started, at once
        process.wait()
    assert not (workdir / "results" / "index.html").exists()
    # The lock of the killed run stays behind: unlock, then run again (the default
    # profile re-runs the jobs that were cut off).
    snakemake(workdir, "--unlock")
    snakemake(workdir)
    assert planned(workdir) == {}
    assert_complete_pictures(workdir / "results")
    assert (workdir / "results" / "index.html").is_file()


@pytest.mark.slow
def test_a_bad_image_loses_only_itself_and_the_gallery_and_summary_list_it(tmp_path):
    workdir = make_copy(tmp_path / "wf", config=TINY)
    (workdir / "images" / "broken.png").write_text("this is not a picture\n")
    data = (REPO / "images" / "rocket.jpg").read_bytes()
    (workdir / "images" / "truncated.jpg").write_bytes(data[: len(data) // 3])
    snakemake(workdir)  # the run succeeds
    for name in ("broken.png", "truncated.jpg"):
        assert not (workdir / "results" / "efficientnet_lite0" / "saliency" / name).exists()
    for name in ("chelsea.png", "astronaut.png"):
        assert (workdir / "results" / "efficientnet_lite0" / "saliency" / name / "guided-gray.png").is_file()
        assert (workdir / "results" / "efficientnet_lite0" / "grad-cam" / name / "auto-gray.png").is_file()
    assert (workdir / "results" / "efficientnet_lite0" / "class-viz" / "class1-l2.png").is_file()
    status = {image["name"]: image for image in json.loads((workdir / "results" / "images.json").read_text())["images"]}
    assert status["broken.png"]["status"] == "failed"
    assert "not a recognised image file" in status["broken.png"]["reason"]
    assert status["truncated.jpg"]["status"] == "failed"
    page = (workdir / "results" / "index.html").read_text()
    assert "4 input images, 2 usable, 2 failed" in page
    assert f"failed: {status['broken.png']['reason']}" in page
    summary = {
        row["name"]: row for row in csv.DictReader(io.StringIO((workdir / "results" / "summary.csv").read_text()))
    }
    assert summary["broken.png"]["status"] == "failed" and summary["chelsea.png"]["status"] == "ok"
    assert_complete_pictures(workdir / "results")
    # strict_images: the same images stop the run at once, named
    (workdir / "config.yaml").write_text(yaml.safe_dump(TINY | {"strict_images": True}, sort_keys=False))
    result = snakemake(workdir, "--dry-run", expect=1)
    assert "strict_images: 2 images cannot be used: broken.png: cannot read image" in result.stdout + result.stderr


@pytest.mark.slow
def test_the_seed_config_runs_every_rule_on_random_weights(tmp_path):
    workdir = make_copy(tmp_path / "wf", images=("chelsea.png",))
    tiny = {
        "threads": 1,
        "device": "cpu",
        "techniques": {
            "feature_maps": {"size": 32},
            "saliency": {"size": 32},
            "class_viz": {"width": 32, "height": 32, "steps": 1},
            "filter_viz": {"width": 32, "height": 32, "steps": 1},
            "deep_dream": {"size": 32, "steps": 1},
            "deep_dream_octaves": {"size": 32, "steps": 1, "octaves": 2},
            "grad_cam": {"size": 32},
        },
    }
    (workdir / "tiny.yaml").write_text(yaml.safe_dump(tiny))
    snakemake(workdir, "--configfile", "config/seed.yaml", "tiny.yaml", "--config", "weights=random")
    results = workdir / "results" / "seed"
    from cnnvis_tasks.io.outputs import read_metadata

    expected = [
        "vgg16/feature-maps/chelsea.png/features.29.png",
        "alexnet/kernels/param6.png",
        "resnet50/kernels/param18.png",
        "densenet121/kernels/param26.png",
        "vgg16/saliency/chelsea.png/deconv-gray.png",
        "vgg16/class-viz/class231-l1.png",
        "vgg16/filter-viz/features.24-filter25.png",
        "vgg19/deep-dream/chelsea.png/features.34-filter45.png",
        "vgg19/deep-dream-octaves/chelsea.png/features.34-all.png",
        "vgg19/grad-cam/chelsea.png/features.35-overlay.png",
    ]
    for path in expected:
        assert (results / path).is_file(), path
        assert read_metadata(results / path)["weights"].startswith("random")
    assert read_metadata(results / "vgg16/class-viz/class231-l1.png")["robust"] is False
    assert (results / "index.html").is_file()
    assert_complete_pictures(results)


# --- real data sets -------------------------------------------------------------------


def class_folder_data_set(root: Path) -> Path:
    """A WordNet-ID folder and a class-name folder with colliding file names and names
    with braces, #, %, quotes, spaces and unicode; a folder whose name is no class;
    and files that are not usable images."""
    ds = root / "ds"
    coffee = Image.open(REPO / "images" / "coffee.png").convert("RGB")
    for name, source in (
        ("n02123045/001.png", REPO / "images" / "chelsea.png"),
        ("n02123045/brace{x} #1 %20 'q' ü.png", REPO / "images" / "chelsea.png"),
        ("espresso/001.png", REPO / "images" / "coffee.png"),
        ("misc/001.png", REPO / "images" / "rocket.jpg"),
    ):
        (ds / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, ds / name)
    coffee.save(ds / "espresso" / "001.jpg")
    (ds / "misc" / "broken.png").write_text("not an image")
    (ds / "misc" / "dangling.png").symlink_to(ds / "nowhere.png")
    os.mkfifo(ds / "misc" / "pipe.png")
    Image.new("RGB", (3, 3000), (90, 90, 90)).save(ds / "misc" / "tall.png")
    return ds


@pytest.mark.slow
def test_a_class_folder_data_set_with_labels_and_odd_names_runs_end_to_end(tmp_path):
    workdir = make_copy(tmp_path / "wf", images=())
    class_folder_data_set(workdir)
    config = {
        "images": {"folder": "ds"},
        "chunk_size": 2,
        "threads": 1,
        "device": "cpu",
        "models": {"efficientnet_lite0": {}},
        "techniques": {
            "saliency": {
                "size": 64,
                "methods": ["vanilla"],
                "renderings": ["gray"],
                "target": "label",
                "models": {"efficientnet_lite0": {}},
            },
            "grad_cam": {"size": 64, "renderings": ["overlay"], "models": {"efficientnet_lite0": {}}},
        },
    }
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    snakemake(workdir)
    results = workdir / "results"
    model = results / "efficientnet_lite0"
    assert (model / "saliency" / "n02123045" / "001.png" / "vanilla-gray.png").is_file()
    assert (model / "saliency" / "espresso" / "001.jpg" / "vanilla-gray.png").is_file()  # beside 001.png
    odd = next((model / "grad-cam" / "n02123045").glob("brace_x_ #1 %20 'q' ü.png-*"))
    assert (odd / "auto-overlay.png").is_file()
    summary = {row["name"]: row for row in csv.DictReader(io.StringIO((results / "summary.csv").read_text()))}
    # found when the workflow started: 'misc' names no class of the model, so the image is left out
    assert summary["misc/001.png"]["efficientnet_lite0 saliency vanilla status"] == "left out"
    reason = summary["misc/001.png"]["efficientnet_lite0 saliency vanilla reason"]
    assert "label 'misc' names no class of efficientnet_lite0" in reason
    assert summary["misc/tall.png"]["efficientnet_lite0 grad-cam auto status"] == "left out"
    assert summary["misc/broken.png"]["status"] == "failed"
    assert summary[str(Path("ds/misc/pipe.png"))]["status"] == "skipped"
    # the summary's accuracy is the model's on these labels, computed here on its own at the size the
    # techniques use (64), as the summary's predictions are
    from cnnvis_tasks.io.images import load_image
    from cnnvis_tasks.models.loading import load_model

    loaded = load_model("efficientnet_lite0")
    labelled = {"n02123045/001.png": 281, "espresso/001.png": 967, "espresso/001.jpg": 967}
    for name, label in labelled.items():
        import torch

        with torch.inference_mode():
            top1 = int(loaded.module(loaded.normalize(load_image(workdir / "ds" / name, 64)[None])).argmax())
        assert summary[name]["efficientnet_lite0 correct"] == ("yes" if top1 == label else "no"), name
    assert summary[name]["efficientnet_lite0 label class"] == "967"
    page = (results / "index.html").read_text()
    assert "labelled images right" in page and "a named pipe (FIFO), not a file" in page
    from test_gallery import load_checker

    checker = load_checker()
    if checker.find_browser() is not None:
        result = checker.check_page(results / "index.html", screenshot=ARTIFACTS / "data-set-gallery.png")
        assert [image["src"] for image in result["images"] if not image["naturalWidth"]] == []
        assert result["errors"] == [] and len(result["images"]) >= 8
    assert planned(workdir) == {}
    # a label CSV names the same images' classes
    (workdir / "labels.csv").write_text("path,label\nds/n02123045/001.png,tabby\nds/espresso/001.png,967\n")
    config["images"] = {"manifest": "labels.csv"}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    from cnnvis_tasks.workflow import load_plan

    os.chdir(workdir)
    try:
        plan = load_plan(copy.deepcopy(config), main_process=False)
    finally:
        os.chdir(REPO)
    assert plan.labels == {"ds/n02123045/001.png": "tabby", "ds/espresso/001.png": "967"}


@pytest.mark.slow
def test_nothing_a_config_value_holds_is_run_by_a_shell(tmp_path):
    config = {
        "images": {"folder": "images"},
        "threads": 1,
        "device": "cpu",
        "models": {"efficientnet_lite0": {}},
        "techniques": {"kernels": {"count": 4, "models": {"efficientnet_lite0": {"layers": ["_conv_stem"]}}}},
    }
    workdir = make_copy(tmp_path / "wf", images=("chelsea.png",), config=config)
    snakemake(workdir, "--config", "results=r; touch X; y")
    assert not (workdir / "X").exists() and (workdir / "r; touch X; y" / "index.html").is_file()
    config["techniques"]["kernels"]["models"]["efficientnet_lite0"]["layers"] = ["_blocks.1&touch$IFS'X'&"]
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(workdir, expect=1)
    assert "is not a module path" in result.stdout + result.stderr and not (workdir / "X").exists()
    config["techniques"]["kernels"]["models"]["efficientnet_lite0"]["layers"] = ["_conv_stem"]
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(workdir, "--dry-run", "--config", "results=/", expect=1)
    assert "the file system's root" in result.stdout + result.stderr
    assert not Path("/.cache/image-check.json").exists()


def test_device_cuda_without_a_gpu_stops_a_local_run_before_any_job(tmp_path):
    if Path("/dev/nvidia0").exists():
        pytest.skip("this machine has a GPU")
    workdir = make_copy(tmp_path / "wf", config=TINY)
    result = snakemake(workdir, "--config", "device=cuda", expect=1)
    assert "device: cuda, but this machine shows no CUDA GPU to Snakemake" in result.stdout + result.stderr
    assert not (workdir / "results" / "efficientnet_lite0").exists()
    assert "Nothing to be done" not in snakemake(workdir, "--dry-run", "--config", "device=cuda").stdout  # plans
