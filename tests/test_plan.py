"""The workflow's plan without Snakemake: config checks, chunks, jobs, outputs, the
gallery's tables, and a new technique followed everywhere from its description."""

from __future__ import annotations

import copy
import shlex
from pathlib import Path

import click
import pytest
import yaml

from cnnvis_tasks.cli import cli
from cnnvis_tasks.models.spec import ModelSpec
from cnnvis_tasks.technique import INT, Option, Rendered, Rendering, Result, Technique, layer_option
from cnnvis_tasks.techniques import all_techniques
from cnnvis_tasks.workflow.config import ConfigError, check_config, full_schema, technique_schema, validate
from cnnvis_tasks.workflow.plan import chunk_count, chunk_of, make_chunks, make_plan

REPO = Path(__file__).resolve().parent.parent
NAMES = ["astronaut", "chelsea", "coffee", "rocket"]


def status(names=NAMES, bad=()):
    return [
        {
            "name": name,
            "path": f"images/{name}.png",
            "status": "failed" if name in bad else "ok",
            "reason": "broken" if name in bad else None,
        }
        for name in names
    ]


def shipped(name="config.yaml", **changes):
    config = yaml.safe_load((REPO / name).read_text())
    config.update(changes)
    return check_config(config, check_model_names=False)


def parse(job):
    """The job's command line as its command parses it: every option exists and every value fits."""
    command = cli.commands[job.arguments[0]]
    return command.make_context(job.arguments[0], list(job.arguments[1:]) + ["--device", job.device])


# --- the config ----------------------------------------------------------------------


def test_each_option_default_is_the_schema_default():
    """One default per option: the command's and the config's come from the description."""
    techniques = full_schema()["properties"]["techniques"]["properties"]
    for technique in all_techniques():
        block = techniques[technique.config_key]["properties"]
        assert technique_schema(technique)["properties"] == block
        for option in technique.options:
            if option.where == "technique" and not option.repeatable:
                assert block[option.name].get("default") == option.default, (technique.name, option.name)
            elif option.repeatable and option.where == "technique":
                assert block[option.config_key].get("default") == option.config_default


def test_defaults_are_filled_in_and_copies_are_not_shared():
    config = validate(
        {
            "models": {"vgg16": {}},
            "techniques": {
                "saliency": {"models": {"vgg16": {}}},
                "class_viz": {"classes": [1], "models": {"vgg16": {}}},
                "deep_dream": {"models": {"vgg16": {"layers": ["features.3"]}}},
            },
        }
    )
    techniques = config["techniques"]
    assert techniques["saliency"]["methods"] == ["vanilla", "guided", "deconv"]
    assert techniques["saliency"]["renderings"] == ["color", "gray"] and techniques["saliency"]["raw"] is False
    assert techniques["class_viz"]["regularizations"] == ["none", "l1", "l2"]
    assert techniques["class_viz"]["width"] == 224 and techniques["class_viz"]["steps"] is None
    assert (
        techniques["deep_dream"]["models"]["vgg16"]["filters"] == ["all"] and techniques["deep_dream"]["steps"] == 200
    )
    techniques["saliency"]["methods"].append("x")
    again = validate({"models": {"vgg16": {}}, "techniques": {"saliency": {"models": {"vgg16": {}}}}})
    assert again["techniques"]["saliency"]["methods"] == ["vanilla", "guided", "deconv"]


@pytest.mark.parametrize(
    "change, message",
    [
        (
            {"techniques": {"saliency": {"models": {"m": {}}, "methods": ["smooth"]}}},
            "techniques.saliency.methods[0]: 'smooth' is not one of vanilla, guided, deconv",  # Option.parse's words
        ),
        (
            {"techniques": {"feature_maps": {"models": {"m": {"layers": ["a;touch x"]}}}}},
            "techniques.feature_maps.models.m.layers[0]: 'a;touch x' is not a module path",
        ),
        (
            {"techniques": {"feature_maps": {"models": {"m": {}}}}},
            "techniques.feature_maps.models.m: 'layers' is a required property",
        ),
        (
            {"techniques": {"kernels": {"models": {"m": {}}}}},
            "techniques.kernels.models.m: {} is not allowed; allowed: layers or parameters",
        ),
        (
            {"techniques": {"class_viz": {"models": {"m": {}}}}},
            "techniques.class_viz: 'classes' is a required property",
        ),
        (
            {"techniques": {"grad_cam": {"models": {"m": {}}, "colormap": "jett"}}},
            "techniques.grad_cam.colormap: unknown colormap 'jett'",
        ),
        ({"techniques": {"grad_cam": {"models": {"other": {}}}}}, "model 'other' is not declared under models"),
        (
            {"verify_pictures": "true", "techniques": {"grad_cam": {"models": {"m": {}}}}},  # as --config gives it
            "verify_pictures: 'true' is not a boolean; write true or false in a config file, or "
            "verify_pictures=True / False with --config",
        ),
        (
            {"techniques": {"filter_viz": {"models": {"m": {"filters": [{"layer": "x"}]}}}}},
            "techniques.filter_viz.models.m.filters[0]: 'filter' is a required property",
        ),
    ],
)
def test_config_errors_name_the_key(change, message):
    config = {"models": {"m": {}}} | change
    with pytest.raises(ConfigError) as error:
        check_config(config, check_model_names=False)
    assert message in str(error.value)
    assert str(error.value).startswith("config error: ") and "\n" not in str(error.value)


# --- chunks ----------------------------------------------------------------------------


def test_chunks_are_stable_and_grow_by_splitting():
    assert chunk_count(1000, 256) == 4 and chunk_count(1025, 256) == 8 and chunk_count(3, 256) == 1
    assert chunk_count(1000, 256, pinned=5) == 5
    names = [f"image{i}" for i in range(200)]
    four, eight = make_chunks(names, 4), make_chunks(names, 8)
    for name in names:  # a chunk of 8 lies inside the chunk of 4 it split from
        assert chunk_of(name, 8) % 4 == chunk_of(name, 4)
    assert sum(len(v) for v in four.values()) == 200 and len(eight) == 8
    more = make_chunks([*names, "new"], 4)
    changed = [key for key in four if four[key] != more[key]]
    assert changed == [f"chunk{chunk_of('new', 4):03d}of004"]


# --- jobs --------------------------------------------------------------------------------


def test_every_job_of_both_configs_is_a_valid_command_line():
    for name in ("config.yaml", "config/seed.yaml"):
        plan = make_plan(shipped(name, chunk_size=2), status(), exists=None)
        assert len(plan.chunks) == 2
        for job in plan.jobs:
            context = parse(job)
            outputs = [o.path for o in job.outputs]
            assert len(set(outputs)) == len(outputs)
            assert shlex.split(job.command) == list(job.arguments)
            if job.chunk:
                assert context.params["images"] == tuple(Path(p) for p in job.images)
                assert set(job.images) == {f"images/{n}.png" for n in plan.chunks[job.chunk]}


def test_jobs_settings_paths_and_commands_of_the_default_gallery():
    plan = make_plan(shipped(share_passes=False), status(bad=("rocket",)), exists=None)
    assert plan.bad_images == {"rocket": "broken"} and plan.chunks == {"chunk000of001": NAMES[:3]}
    rules = {job.rule: job for job in plan.jobs}
    assert len(rules) == len(plan.jobs)  # one rule per job, each named apart
    assert {job.technique for job in plan.jobs} == {t.name for t in all_techniques()} | {"predictions"}
    saliency = rules["saliency_efficientnet_lite0_guided_chunk000of001"]
    assert [o.path for o in saliency.outputs[:3]] == [
        "results/records/efficientnet_lite0/saliency/guided/chunk000of001.json",  # the job's record, first
        "results/efficientnet_lite0/saliency/astronaut/guided-color.png",
        "results/efficientnet_lite0/saliency/astronaut/guided-gray.png",
    ]
    assert saliency.outputs[0].report is None
    assert saliency.outputs[1].report == {
        "category": "3. Saliency maps",
        "subcategory": "efficientnet_lite0",
        "labels": {"image": "astronaut", "method": "guided", "rendering": "color"},
    }
    assert saliency.log == "results/logs/efficientnet_lite0/saliency/guided/chunk000of001.log"
    params = parse(saliency).params
    assert params["method"] == ("guided",) and params["target"] == ("top1",) and params["size"] == 224
    assert len(params["out_color"]) == len(params["out_gray"]) == 3 and params["out_raw"] == ()
    assert params["keep_going"] and params["placeholders"] and str(params["record"]) == saliency.outputs[0].path
    assert "--batch-size" not in saliency.arguments and "--png-level" not in saliency.arguments
    assert saliency.runtime == (("batch_size", 16), ("png_level", 1))  # change them: nothing re-runs
    assert saliency.runtime_command == "--batch-size 16 --png-level 1"
    dream = rules["deep_dream_octaves_efficientnet_lite0__blocks_10_filter45_chunk000of001"]
    assert parse(dream).params["filter"] == ("45",) and parse(dream).params["octaves"] == 10
    assert dream.outputs[1].path == "results/efficientnet_lite0/deep-dream-octaves/astronaut/_blocks.10-filter45.png"
    class_viz = rules["class_viz_efficientnet_lite0_l1"]
    assert [o.path for o in class_viz.outputs[1:]] == [
        f"results/efficientnet_lite0/class-viz/class{c}-l1.png" for c in (52, 77, 231)
    ]
    assert parse(class_viz).params["target"] == (52, 77, 231) and class_viz.images == ()
    assert class_viz.log == "results/logs/efficientnet_lite0/class-viz/l1.log"
    filter_viz = rules["filter_viz_efficientnet_lite0__blocks_4_filter5"]
    assert filter_viz.outputs[1].path == "results/efficientnet_lite0/filter-viz/_blocks.4-filter5.png"
    predictions = rules["predictions_efficientnet_lite0_chunk000of001"]
    assert predictions.arguments[0] == "predict" and predictions.outputs[0].path == (
        "results/records/efficientnet_lite0/predictions/chunk000of001.csv"
    )
    assert parse(predictions).params["labels"] == ("", "", "")
    kernels = rules["kernels_efficientnet_lite0__conv_stem"]
    assert kernels.threads == 1 and kernels.device == "cpu" and kernels.gpu == 0  # reads weights only
    assert {job.threads for job in plan.jobs if job is not kernels} == {1}


def test_penalties_of_the_seed_config_reach_their_jobs():
    plan = make_plan(shipped("config/seed.yaml"), status(), exists=None)
    weights = {job.setting: parse(job).params["weight"] for job in plan.jobs if job.technique == "class-viz"}
    assert weights == {"none": None, "l1": None, "l2": 0.01}
    robust = {parse(job).params["robust"] for job in plan.jobs if job.technique in ("class-viz", "filter-viz")}
    assert robust == {False}


def test_gpu_and_weights_files_and_missing_outputs(tmp_path):
    weights = tmp_path / "lite.pth"
    weights.write_bytes(b"x")
    config = shipped(models={"efficientnet_lite0": {"weights": str(weights)}}, share_passes=False)
    # every file is there but one gray saliency map and the records (the summary asks for those)
    lost = "results/efficientnet_lite0/saliency/chelsea/vanilla-gray.png"
    plan = make_plan(
        config, status(["chelsea"]), gpu=True, exists=lambda path: path != lost and "/records/" not in path
    )
    job = next(job for job in plan.jobs if job.rule.startswith("saliency_efficientnet_lite0_vanilla"))
    model_file = job.arguments[2]
    assert job.weights == (model_file, str(weights)) and job.gpu == 1 and job.arguments[1] == "--model-file"
    assert model_file.startswith("results/models/efficientnet_lite0-") and model_file.endswith(".json")
    assert plan.records.count(job.outputs[0].path) == 1 and job.outputs[0].path.endswith("chunk000of001.json")
    assert plan.missing == [lost]  # `all` asks for it, so its job runs again


def test_gallery_tables_follow_the_settings():
    plan = make_plan(shipped(), status(), exists=None)
    tables = {(t["section"], t["table"]): t for t in plan.gallery_tables}
    drawn = [t.name for t in all_techniques() if t.reduction is None]  # a reduction has its own pages
    assert [t["section"] for t in plan.gallery_tables] == drawn
    cam = tables["grad-cam", "efficientnet_lite0"]
    assert [c["key"] for c in cam["columns"]] == ["auto-gray", "auto-heatmap", "auto-overlay"]
    assert cam["columns"][2] == {
        "key": "auto-overlay",
        "label": ["efficientnet_lite0", "layer auto", "overlay"],
        "path": "efficientnet_lite0/grad-cam/{image}/auto-overlay.png",
        "setting": "auto",  # its status column in summary.csv (the image pages' failures)
    }
    class_viz = tables["class-viz", "efficientnet_lite0"]
    assert [row["label"] for row in class_viz["rows"]] == ["class 52", "class 77", "class 231"]
    assert [cell["label"][1] for cell in class_viz["rows"][0]["cells"]] == [
        "no regularization",
        "L1 regularization",
        "L2 regularization",
    ]
    filters = tables["filter-viz", "efficientnet_lite0"]["rows"]
    assert len(filters) == 1 and [c["label"][1:] for c in filters[0]["cells"]] == [
        ["layer _blocks.4", "filter 5"],
        ["layer _blocks.10", "filter 25"],
    ]


# --- a new technique is one description -------------------------------------------------


def _brightest(model, images, targets=None, *, layer, scale, **_):
    """A toy technique: the largest activation of a layer per image, as a 1 x 1 map."""
    from cnnvis_tasks.mechanisms.capture import feature_maps

    maps = feature_maps(model.module, model.normalize(images), [layer])[layer]
    return Result(
        "brightest",
        maps=maps.amax(dim=(1, 2, 3))[:, None, None] * scale,
        layer=layer,
        facts={"layer": layer, "scale": scale},
    )


def _render(result, row, renderings, options):
    import numpy as np

    value = float(result.maps[row].clamp(0, 1))
    return Rendered({"square": (np.full((4, 4, 3), int(value * 255), dtype=np.uint8), {})})


BRIGHTEST = Technique(
    name="brightest",
    order=95,
    title="Brightest",
    summary="The largest activation of a layer.",
    description="The largest activation of a layer, as a gray square.",
    reference="",
    options=(layer_option("Module path.", required=True), Option("scale", INT, 1, "A factor.", minimum=1)),
    renderings=(Rendering("square", "a gray square"),),
    raw="The value (.npy).",
    compute=_brightest,
    render=_render,
)


@pytest.fixture
def with_brightest(monkeypatch):
    import cnnvis_tasks.techniques as registry
    from cnnvis_tasks.workflow import config as workflow_config

    known = all_techniques() + (BRIGHTEST,)
    monkeypatch.setattr(registry, "all_techniques", lambda: known)
    monkeypatch.setattr(workflow_config, "all_techniques", lambda: known)
    monkeypatch.setattr("cnnvis_tasks.workflow.plan.all_techniques", lambda: known)
    monkeypatch.setattr("cnnvis_tasks.workflow.planner.all_techniques", lambda: known)
    monkeypatch.setattr(workflow_config, "_full_schema", lambda: _schema_with(known))
    monkeypatch.setattr("cnnvis_tasks.gallery.SECTION_TECHNIQUES", {t.name: t for t in known})
    yield BRIGHTEST


def _schema_with(known):
    from importlib import resources

    schema = yaml.safe_load(resources.files("cnnvis_tasks.workflow").joinpath("schema.yaml").read_text())
    schema["properties"]["techniques"]["properties"] = {t.config_key: technique_schema(t) for t in known}
    return schema


def test_a_new_technique_is_followed_everywhere_from_its_description(with_brightest, tmp_path):
    """Config schema, jobs, command line, gallery section and the Python verb follow from one description."""
    from click.testing import CliRunner

    import cnnvis_tasks as cv
    from cnnvis_tasks.cli.techniques import make_command
    from cnnvis_tasks.gallery import build_gallery

    config = shipped(
        techniques={"brightest": {"models": {"efficientnet_lite0": {"layers": ["_blocks.1"]}}, "scale": 2}}
    )
    assert config["techniques"]["brightest"]["raw"] is False
    plan = make_plan(config, status(["chelsea"]), exists=None)
    job, predictions = plan.jobs
    assert job.rule == "brightest_efficientnet_lite0__blocks_1_chunk000of001" and predictions.technique == "predictions"
    assert job.outputs[1].path == "results/efficientnet_lite0/brightest/chelsea/_blocks.1.png"
    assert job.outputs[1].report["category"] == f"{len(all_techniques()) + 1}. Brightest"
    command = make_command(BRIGHTEST)
    arguments = [*job.arguments[1:], "--device", "cpu", "-q"]
    arguments[arguments.index("images/chelsea.png")] = str(REPO / "images" / "chelsea.png")
    arguments[arguments.index(job.outputs[0].path)] = str(tmp_path / "record.json")
    arguments[arguments.index(job.outputs[1].path)] = str(tmp_path / "b.png")
    model_file = tmp_path / "model.json"  # the workflow writes it when it loads the model at its start
    model_file.write_text(ModelSpec(name="efficientnet_lite0", arch="efficientnet_lite0").to_json())
    arguments[arguments.index("--model-file") + 1] = str(model_file)
    result = CliRunner().invoke(command, arguments, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    from PIL import Image

    assert Image.open(tmp_path / "b.png").size == (4, 4)
    page = build_gallery(
        [
            {
                "section": "brightest",
                "table": "m",
                "row": "r",
                "column": "c",
                "src": "b.png",
                "status": "ok",
                "metadata": {},
            }
        ]
    )["index.html"]
    assert '<h2 id="brightest">Brightest</h2>' in page
    value = cv.compute(
        "brightest",
        cv.load_model(),
        cv.load_images([REPO / "images" / "chelsea.png"], size=32),
        layer="_blocks.1",
        scale=3,
    )
    assert value.maps.shape == (1, 1, 1) and value.facts == {"layer": "_blocks.1", "scale": 3}


def test_a_technique_module_is_named_after_its_technique():
    for technique in all_techniques():
        module = __import__(f"cnnvis_tasks.techniques.{technique.module_name}", fromlist=["TECHNIQUE"])
        assert module.TECHNIQUE is technique
    copied = copy.copy(BRIGHTEST)
    assert copied.config_key == "brightest" and copied.option("scale").flag == "--scale"
    assert isinstance(cli.commands["grad-cam"], click.Command)


def test_the_schema_states_the_package_s_pixel_budget_and_largest_size():
    from cnnvis_tasks.io.images import DEFAULT_MAX_PIXELS
    from cnnvis_tasks.io.outputs import DEFAULT_PNG_LEVEL
    from cnnvis_tasks.technique import MAX_SIZE

    schema = full_schema()
    assert schema["properties"]["max_pixels"]["default"] == DEFAULT_MAX_PIXELS
    assert schema["properties"]["png_level"]["default"] == DEFAULT_PNG_LEVEL
    assert schema["properties"]["techniques"]["properties"]["saliency"]["properties"]["size"]["maximum"] == MAX_SIZE


def test_a_technique_without_repeatable_options_names_its_files_by_rendering_alone():
    """Occlusion has no repeatable option, so no setting: IMAGE/gray.png and IMAGE/raw.npy
    in the workflow, STEM-gray.png from the command (not IMAGE/-gray.png, IMAGE/.npy)."""
    from cnnvis_tasks.cli.techniques import default_pattern
    from cnnvis_tasks.techniques import get_technique

    config = shipped(techniques={"occlusion": {"raw": True, "models": {"efficientnet_lite0": {}}}})
    plan = make_plan(config, status(), exists=None)
    (job,) = [job for job in plan.jobs if job.technique == "occlusion"]
    assert [o.path for o in job.outputs[1:5]] == [
        f"results/efficientnet_lite0/occlusion/astronaut/{name}" for name in ("gray.png", "heatmap.png", "overlay.png")
    ] + ["results/efficientnet_lite0/occlusion/astronaut/raw.npy"]
    assert str(parse(job).params["out_raw"][0]) == "results/efficientnet_lite0/occlusion/astronaut/raw.npy"
    assert default_pattern(get_technique("occlusion")) == "{path}-{rendering}.{ext}"
    assert default_pattern(get_technique("saliency")) == "{path}-{setting}-{rendering}.{ext}"
