"""The command line as a user meets it: help, exit codes, one-line errors."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import CAT
from PIL import Image

from cnnvis_tasks.cli import cli
from cnnvis_tasks.io.outputs import read_metadata
from cnnvis_tasks.models.loading import load_model
from cnnvis_tasks.techniques import technique_names

COMMANDS = ["models", "layers", "fetch-weights", "config-schema", *technique_names()]


def run(*args, expect=0):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == expect, result.output
    return result


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_explains_its_options(command):
    text = run(command, "--help").output
    assert "Usage:" in text
    for option in ("--help",):
        assert option in text
    if command in technique_names():
        for option in ("--model", "--weights", "--device", "--seed", "--threads"):
            assert option in text, f"{command} lacks {option}"
        assert "[default: efficientnet_lite0]" in text


def test_models_lists_offline_availability():
    text = run("models").output
    lines = {line.split()[0]: line for line in text.splitlines() if line.strip()}
    assert "yes" in lines["efficientnet_lite0"].split()
    assert "no" in lines["vgg16"].split() and "vgg16-397923af.pth" in lines["vgg16"]


def test_layers_shows_paths_types_and_shapes():
    text = run("layers", "--model", "resnet50").output
    rows = {line.split()[0]: line.split(None, 2)[1:] for line in text.splitlines()[1:]}
    assert rows["layer4.2.relu"][0] == "ReLU"
    assert rows["layer4"][1] == "2048 x 7 x 7"
    assert rows["fc"][1] == "1000"
    lite = run("layers").output
    assert "_blocks.15" in lite and "_conv_head" in lite


def test_fetch_weights_offline_and_embedded():
    result = run("fetch-weights", "resnet18", expect=1)
    assert "resnet18-f37072fd.pth" in result.output and "Traceback" not in result.output
    assert "nothing to fetch" in run("fetch-weights", "efficientnet_lite0").output


@pytest.fixture
def small_image(tmp_path):
    path = tmp_path / "img.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(path)
    return path


def _one_line_error(result, *fragments):
    assert "Traceback" not in result.output
    lines = [line for line in result.output.strip().splitlines() if line.startswith("Error")]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize(
    "args,fragments",
    [
        (["--image", "missing.png"], ["image not found", "missing.png"]),
        (["--model", "vgg61"], ["unknown model 'vgg61'", "vgg16"]),
        (["--target", "1000"], ["class index 1000 out of range", "0..999"]),
        (["--weights", "nope.pth"], ["nope.pth"]),
        (["--device", "cuda:7"], ["cuda:7"]),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, small_image, args, fragments):
    out = tmp_path / "out" / "s.png"
    base = {"--image": str(small_image), "--model": "resnet18", "--weights": "random", "--size": "32"}
    for key, value in zip(args[::2], args[1::2]):
        base[key] = value
    argv = ["saliency", "--out-gray", str(out)] + [item for pair in base.items() for item in pair]
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 1
    _one_line_error(result, *fragments)
    assert not out.exists() and not out.parent.exists()


def test_unreadable_image_and_unknown_layer(tmp_path, small_image):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    out = tmp_path / "o.png"
    result = CliRunner().invoke(cli, ["grad-cam", "--image", str(bad), "--out-gray", str(out)])
    assert result.exit_code == 1
    _one_line_error(result, "bad.jpg")
    result = CliRunner().invoke(
        cli, ["feature-maps", "--image", str(small_image), "--layer", "_blocks.155", "--out", str(out)]
    )
    assert result.exit_code == 1
    _one_line_error(result, "unknown layer '_blocks.155'", "_blocks.15")
    assert not out.exists()


def test_weights_that_do_not_match_are_one_line(tmp_path, small_image):
    path = tmp_path / "alex.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 11, 11)}, path)
    result = CliRunner().invoke(
        cli,
        [
            "kernels",
            "--model",
            "resnet18",
            "--weights",
            str(path),
            "--layer",
            "conv1",
            "--out",
            str(tmp_path / "k.png"),
        ],
    )
    assert result.exit_code == 1
    _one_line_error(result, "does not fit resnet18")


def test_mismatched_counts_are_usage_errors(tmp_path, small_image):
    result = CliRunner().invoke(
        cli,
        ["saliency", "--image", str(small_image), "--image", str(small_image), "--out-gray", str(tmp_path / "a.png")],
    )
    assert result.exit_code == 2
    assert "got 2 images but 1 --out-gray" in result.output
    result = CliRunner().invoke(cli, ["saliency", "--image", str(small_image)])
    assert result.exit_code == 2 and "nothing to write" in result.output


def test_debug_shows_the_traceback(small_image, tmp_path):
    result = CliRunner().invoke(
        cli,
        ["saliency", "--debug", "--image", str(small_image), "--model", "vgg61", "--out-gray", str(tmp_path / "x.png")],
    )
    assert result.exit_code != 0 and result.exception is not None
    assert type(result.exception).__name__ == "CnnvisError"


def test_saliency_writes_pictures_raw_and_facts(tmp_path):
    outs = {name: tmp_path / f"{name}.png" for name in ("color", "gray")}
    raw = tmp_path / "raw.npy"
    run(
        "saliency",
        "--image",
        CAT,
        "--method",
        "guided",
        "--out-color",
        outs["color"],
        "--out-gray",
        outs["gray"],
        "--raw",
        raw,
        "--quiet",
    )
    with Image.open(outs["color"]) as picture:
        assert picture.size == (337, 224) and picture.mode == "RGB"
    gradient = np.load(raw)
    assert gradient.shape == (3, 224, 337) and gradient.dtype == np.float32 and np.abs(gradient).max() > 0
    facts = read_metadata(outs["gray"])
    assert facts["technique"] == "saliency" and facts["method"] == "guided" and facts["model"] == "efficientnet_lite0"
    assert facts["target"]["name"] in {"tabby", "tiger cat", "Egyptian cat"} and 0 < facts["probability"] <= 1


def test_console_script_and_module_entry_points():
    for argv in ([str(Path(sys.executable).parent / "cnnvis-tasks")], [sys.executable, "-m", "cnnvis_tasks"]):
        result = subprocess.run(argv + ["--help"], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0 and "grad-cam" in result.stdout


def test_grad_cam_writes_each_rendering_and_reports_the_layer(tmp_path):
    outs = {kind: tmp_path / f"{kind}.png" for kind in ("gray", "heatmap", "overlay")}
    result = run(
        "grad-cam",
        "--image",
        CAT,
        "--target",
        "281",
        "--out-gray",
        outs["gray"],
        "--out-heatmap",
        outs["heatmap"],
        "--out-overlay",
        outs["overlay"],
        "--raw",
        tmp_path / "cam.npy",
        "--colormap",
        "viridis",
    )
    assert "layer _swish (chosen automatically)" in result.output
    for path in outs.values():
        with Image.open(path) as picture:
            assert picture.size == (337, 224)
    facts = read_metadata(outs["overlay"])
    assert facts["layer"] == "_swish" and facts["target"] == {"index": 281, "name": "tabby"} and facts["alpha"] == 0.5
    # The head at 1/32 of 224 x 337; Lite0 pads for 224 px inputs, so the width rounds down.
    assert np.load(tmp_path / "cam.npy").shape == (7, 10)
    gray = np.asarray(Image.open(outs["gray"]))
    assert gray.min() == 0 and gray.max() == 255


def test_feature_maps_several_layers_share_one_call(tmp_path):
    run(
        "feature-maps",
        "--image",
        CAT,
        "--layer",
        "_blocks.0",
        "--layer",
        "_conv_head",
        "--channels",
        "16",
        "--out",
        tmp_path / "{layer}.png",
        "--raw",
        tmp_path / "{layer}.npy",
        "--size",
        "64",
    )
    assert np.load(tmp_path / "_blocks.0.npy").shape == (16, 32, 48)
    assert np.load(tmp_path / "_conv_head.npy").shape == (1280, 2, 3)
    assert read_metadata(tmp_path / "_conv_head.png")["channels_shown"] == 16
    result = CliRunner().invoke(
        cli,
        [
            "feature-maps",
            "--image",
            str(CAT),
            "--layer",
            "_blocks.0",
            "--layer",
            "_bn1",
            "--out",
            str(tmp_path / "fixed.png"),
        ],
    )
    assert result.exit_code == 2 and "{layer}" in result.output


def test_kernels_by_parameter_index(tmp_path):
    run(
        "kernels",
        "--model",
        "alexnet",
        "--weights",
        "random",
        "--parameter",
        "0",
        "--out",
        tmp_path / "k.png",
        "--raw",
        tmp_path / "k.npy",
    )
    assert np.load(tmp_path / "k.npy").shape == (64, 3, 11, 11)
    assert read_metadata(tmp_path / "k.png")["parameter"] == "features.0.weight"


def _class_viz(path, *extra):
    # two classes x two regularizations: four pictures, each --out names its class's two
    return run(
        "class-viz",
        "--target",
        "1",
        "--target",
        "963",
        "--regularization",
        "none",
        "--regularization",
        "l2",
        "--width",
        "48",
        "--height",
        "32",
        "--steps",
        "4",
        "--out",
        path / "a-{regularization}.png",
        "--out",
        path / "b-{regularization}.png",
        "--threads",
        "1",
        *extra,
    )


def test_class_viz_is_reproducible_and_records_its_figures(tmp_path):
    first, second = tmp_path / "1", tmp_path / "2"
    _class_viz(first, "--save-every", "2")
    _class_viz(second, "--save-every", "2")
    assert sorted(p.name for p in first.glob("?-*.png")) == [
        "a-l2.png",
        "a-l2.step0002.png",
        "a-l2.step0004.png",
        "a-none.png",
        "a-none.step0002.png",
        "a-none.step0004.png",
        "b-l2.png",
        "b-l2.step0002.png",
        "b-l2.step0004.png",
        "b-none.png",
        "b-none.step0002.png",
        "b-none.step0004.png",
    ]
    for name in ("a-none.png", "b-l2.png", "a-l2.step0002.png", "b-none.step0004.png"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    assert read_metadata(first / "a-none.png")["regularization"] == "none"
    facts = read_metadata(first / "b-l2.png")
    assert facts["target"] == {"index": 963, "name": "pizza"} and facts["regularization"] == "l2"
    assert facts["weight"] == 0.01 and facts["steps"] == 4 and facts["lr"] == 0.05 and facts["robust"] is True
    assert facts["objective_end"] > facts["objective_start"] and 0 < facts["probability"] <= 1
    with Image.open(first / "a-l2.png") as picture:
        assert picture.size == (48, 32)


def test_progress_lines_when_not_a_terminal(tmp_path):
    result = _class_viz(tmp_path)
    assert "class-viz [" in result.output and "4/4" in result.output and "objective" in result.output
    assert "class-viz [" not in _class_viz(tmp_path, "--quiet").output


def test_filter_viz_and_deep_dream(tmp_path):
    run(
        "filter-viz",
        "--layer",
        "_blocks.3",
        "--filter",
        "2",
        "--filter",
        "5",
        "--plain",
        "--width",
        "32",
        "--height",
        "32",
        "--steps",
        "3",
        "--out",
        tmp_path / "f2.png",
        "--out",
        tmp_path / "f5.png",
        "--quiet",
    )
    facts = read_metadata(tmp_path / "f5.png")
    assert facts["filter"] == 5 and facts["lr"] == 0.1 and facts["objective_end"] > facts["objective_start"]
    run(
        "deep-dream-octaves",
        "--image",
        CAT,
        "--layer",
        "_blocks.5",
        "--filter",
        "all",
        "--octaves",
        "3",
        "--steps",
        "2",
        "--size",
        "64",
        "--out",
        tmp_path / "dream.png",
        "--raw",
        tmp_path / "dream.npy",
        "--quiet",
    )
    facts = read_metadata(tmp_path / "dream.png")
    assert facts["octaves_used"] == 3 and facts["steps"] == 6 and facts["filter"] == "all"
    dream = np.load(tmp_path / "dream.npy")
    assert dream.shape == (3, 64, 96) and dream.min() >= 0 and dream.max() <= 1
    result = CliRunner().invoke(
        cli,
        ["deep-dream", "--image", str(CAT), "--layer", "_blocks.5", "--filter", "x", "--out", str(tmp_path / "x.png")],
    )
    assert result.exit_code == 2 and "'x' is neither 'all' nor a channel index" in result.output


def test_all_zero_maps_render_black_with_a_warning_naming_the_image(tmp_path, small_image):
    state = load_model("resnet18", "random").module.state_dict()
    state["fc.weight"].zero_()  # every logit is now the bias: no gradient reaches the image
    weights = tmp_path / "flat.pth"
    torch.save(state, weights)
    common = ["--model", "resnet18", "--weights", str(weights), "--image", str(small_image), "--size", "32"]
    result = run("saliency", *common, "--out-gray", tmp_path / "s.png", "--out-color", tmp_path / "c.png")
    assert f"warning: {small_image}: the vanilla gradient is all zero; rendered black" in result.output
    result = run("grad-cam", *common, "--out-overlay", tmp_path / "o.png", "--out-gray", tmp_path / "g.png")
    assert f"warning: {small_image}: the Grad-CAM map at layer4.1 is all zero; rendered black" in result.output
    for name in ("s.png", "c.png", "g.png"):
        assert np.asarray(Image.open(tmp_path / name)).max() == 0, name
    assert not np.isnan(np.asarray(Image.open(tmp_path / "o.png"), dtype=float)).any()


def test_each_technique_command_is_made_from_its_description():
    from cnnvis_tasks.techniques import all_techniques

    for technique in all_techniques():
        command = cli.commands[technique.name]
        params = {param.name: param for param in command.params}
        for option in technique.options:
            param = params[option.name]
            assert param.help.startswith(option.help), (technique.name, option.name)
            if option.repeatable or option.per_image:
                assert param.multiple and param.default == (() if option.default is None else (option.default,))
            elif option.default is not None:
                assert param.default == option.default, (technique.name, option.name)
        flags = {flag for param in command.params for flag in getattr(param, "opts", [])}
        for rendering in technique.renderings:
            assert technique.output_flag(rendering) in flags
        if technique.reduction is not None:  # one file for all its images
            assert "--out" in flags and "--out-dir" not in flags
        else:
            assert {"--raw", "--out-dir", "--name", "--rendering"} <= flags
        assert ("--image" in flags) == technique.reads_images
        assert command.get_short_help_str(limit=200) == technique.summary
        assert technique.description.split()[0] in command.help
    # A command's own --help shows its whole description, not only the summary line.
    text = " ".join(run("saliency", "--help").output.split())
    assert "Gradient of the class score with respect to the input" in text


def test_help_lists_every_command_and_unknown_commands_get_suggestions():
    text = run("--help").output
    assert all(f"  {name} " in text for name in COMMANDS + ["check-images", "gallery"])
    result = run("salincy", expect=2)
    assert "No such command 'salincy'" in result.output and "saliency" in result.output.split("No such command")[1]


def test_folders_globs_and_out_dir_name_every_file(tmp_path):
    photos = tmp_path / "photos"
    (photos / "more").mkdir(parents=True)
    for name in ("b.png", "a cat.png"):
        Image.open(CAT).resize((48, 32)).save(photos / name)
    Image.open(CAT).resize((48, 32)).save(photos / "more" / "c.png")
    out = tmp_path / "out"
    # a folder is read with its subfolders; names keep the path below it
    run(
        "saliency",
        "--image",
        photos,
        "--out-dir",
        out,
        "--size",
        "32",
        "--method",
        "vanilla",
        "--method",
        "guided",
        "-q",
    )
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.png")) == sorted(
        f"{path}-{method}-{rendering}.png"
        for path in ("a cat", "b", "more/c")
        for method in ("vanilla", "guided")
        for rendering in ("color", "gray")
    )
    run("saliency", "--image", str(photos / "**" / "c.png"), "--out-dir", out / "glob", "--size", "32", "-q")
    assert sorted(p.name for p in (out / "glob" / "more").iterdir()) == ["c-vanilla-color.png", "c-vanilla-gray.png"]
    result = CliRunner().invoke(
        cli,
        [
            "saliency",
            "--image",
            str(photos),
            "--image",
            str(photos / "b.png"),
            "--out-dir",
            str(out / "twice"),
            "--size",
            "32",
        ],
    )
    assert result.exit_code == 2 and "would be written twice" in result.output and "{path}" in result.output
    assert read_metadata(out / "a cat-guided-gray.png")["image"] == str(photos / "a cat.png")
    run(
        "grad-cam",
        "--image",
        str(photos / "*.png"),
        "--out-dir",
        out / "cam",
        "--name",
        "{parent}/{index}-{stem}.{ext}",
        "--rendering",
        "overlay",
        "--rendering",
        "raw",
        "--size",
        "32",
        "-q",
    )
    assert sorted(p.name for p in (out / "cam" / "photos").iterdir()) == [
        "0-a cat.npy",
        "0-a cat.png",
        "1-b.npy",
        "1-b.png",
    ]
    result = CliRunner().invoke(
        cli, ["saliency", "--image", str(tmp_path / "nothing" / "*.png"), "--out-dir", str(out)]
    )
    assert result.exit_code == 2 and "no file matches" in result.output


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--out-gray", "same.png", "--out-color", "same.png"], "same.png would be written twice"),
        (["--out-gray", "s.jpg"], "--out-gray writes a .png file; name it *.png"),
        (["--raw", "s.png"], "--raw writes a .npy file; name it *.npy"),
        (["--out-gray", "{input}"], "would be written twice, or over an input"),
        (["--out-gray", "a.png", "--out-dir", "d"], "give either --out-dir or output options"),
        (["--out-gray", "a.png", "--rendering", "gray"], "--name and --rendering go with --out-dir"),
        (["--method", "vanilla", "--method", "guided", "--out-gray", "a.png"], "a.png would be written twice"),
    ],
)
def test_output_mistakes_are_usage_errors_before_any_work(tmp_path, small_image, arguments, message):
    paths = ("--out-gray", "--out-color", "--raw", "--out-dir")
    arguments = [
        str(small_image) if a == "{input}" else str(tmp_path / a) if before in paths else a
        for before, a in zip([None, *arguments], arguments)
    ]
    result = CliRunner().invoke(cli, ["saliency", "--image", str(small_image), *arguments])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img.png"]


def test_kernels_of_several_layers_and_parameters_in_one_call(tmp_path):
    run(
        "kernels",
        "--model",
        "alexnet",
        "--weights",
        "random",
        "--layer",
        "features.0",
        "--parameter",
        "2",
        "--out",
        tmp_path / "k-{setting}.png",
        "--raw",
        tmp_path / "k-{setting}.npy",
        "-q",
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "k-features.0.npy",
        "k-features.0.png",
        "k-param2.npy",
        "k-param2.png",
    ]
    assert np.load(tmp_path / "k-param2.npy").shape == (192, 64, 5, 5)
    result = CliRunner().invoke(cli, ["kernels", "--out", str(tmp_path / "x.png")])
    assert result.exit_code == 2 and "nothing to compute: give --layer or --parameter" in result.output
