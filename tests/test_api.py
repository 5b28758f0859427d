"""The Python verb: every technique called the same way, and equal to its command."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import CAT, REPO

import cnnvis_tasks as cv
from cnnvis_tasks.cli import cli
from cnnvis_tasks.errors import CnnvisError
from cnnvis_tasks.techniques import all_techniques, get_technique

# What a technique needs beyond its defaults: (keywords of compute, the same on the command line).
CASES = {
    "feature-maps": ({"layer": "_blocks.1"}, ["--layer", "_blocks.1"]),
    "kernels": ({"layer": "_conv_stem"}, ["--layer", "_conv_stem"]),
    "saliency": ({"method": "guided", "targets": [281]}, ["--method", "guided", "--target", "281"]),
    "class-viz": ({"targets": [1], "regularization": "l2"}, ["--target", "1", "--regularization", "l2"]),
    "filter-viz": ({"layer": "_blocks.3", "filter": [2]}, ["--layer", "_blocks.3", "--filter", "2"]),
    "deep-dream": ({"layer": "_blocks.3", "filter": 3}, ["--layer", "_blocks.3", "--filter", "3"]),
    "deep-dream-octaves": ({"layer": "_blocks.3"}, ["--layer", "_blocks.3"]),
    "feature-inversion": ({"layer": "_blocks.1"}, ["--layer", "_blocks.1"]),
    "grad-cam": ({"targets": [281]}, ["--target", "281"]),
}
# Options that make a technique quick, wherever it has them.
QUICK = {"steps": 2, "width": 32, "height": 32, "octaves": 2, "samples": 2}
SIZE = 64


def quick(technique):
    keywords, arguments = CASES.get(technique.name, ({}, []))
    keywords, arguments = dict(keywords), list(arguments)
    for name, value in QUICK.items():
        if any(option.name == name for option in technique.options) and name not in keywords:
            keywords[name] = value
            arguments += [f"--{name}", str(value)]
    return keywords, arguments


@pytest.mark.parametrize("name", [technique.name for technique in all_techniques()])
def test_the_verb_equals_the_command(name, embedded_model, tmp_path):
    technique = get_technique(name)
    keywords, arguments = quick(technique)
    targets = keywords.pop("targets", None)
    images = cv.load_images([CAT], size=SIZE) if technique.reads_images else None
    result = cv.compute(name, embedded_model, images, targets, **keywords)

    # the same threads as this process: sums split differently over threads differ in the last bit
    command = [
        name,
        *arguments,
        "--out-dir",
        str(tmp_path),
        "--rendering",
        "raw",
        "--device",
        "cpu",
        "-q",
        "--threads",
        str(torch.get_num_threads()),
    ]
    if technique.reads_images:
        command += ["--image", str(CAT), "--size", str(SIZE)]
    outcome = CliRunner().invoke(cli, command, catch_exceptions=False)
    assert outcome.exit_code == 0, outcome.output
    (raw,) = tmp_path.glob("*.npy")
    if technique.reports_steps:  # optimised over steps: the last bit may differ with the threads' earlier work
        np.testing.assert_allclose(result.maps[0].float().numpy(), np.load(raw), rtol=0, atol=1e-6)
    else:
        np.testing.assert_array_equal(result.maps[0].float().numpy(), np.load(raw))

    assert len(result) == 1
    for rendering in technique.renderings:
        picture = result.picture(0, rendering.name)
        assert picture.dtype == np.uint8 and picture.ndim == 3 and picture.shape[2] == 3
    if targets is not None and technique.reads_images:
        assert result.targets.tolist() == targets and 0 < float(result.probabilities[0]) <= 1
    if "layer" in keywords or any(option.name == "layer" and option.default == "auto" for option in technique.options):
        assert result.layer == keywords.get("layer", "_swish")
    if name == "grad-cam":
        assert result.display.shape[-2:] == images.shape[-2:]
    if name == "class-viz":
        assert result.targets.tolist() == [1] and result.row_facts == [{"regularization": "l2", "weight": 0.01}]


def test_paths_model_names_and_top1_targets():
    result = cv.compute("saliency", "efficientnet_lite0", [CAT, CAT], [None, 281], size=SIZE)
    assert result.maps.shape == (2, 3, SIZE, 96)
    top1 = int(result.targets[0])
    assert result.targets.tolist() == [top1, 281]
    torch.testing.assert_close(
        result.maps[0], cv.compute("saliency", "efficientnet_lite0", [CAT], [top1], size=SIZE).maps[0]
    )


def test_mistakes_are_one_line_errors(embedded_model):
    images = cv.load_images([CAT], size=SIZE)
    with pytest.raises(CnnvisError, match="saliency has no option colormap; its options: method, target"):
        cv.compute("saliency", embedded_model, images, colormap="jet")
    with pytest.raises(CnnvisError, match="feature-maps needs layer=..."):
        cv.compute("feature-maps", embedded_model, images)
    with pytest.raises(CnnvisError, match="unknown technique 'gradcam'; did you mean grad-cam"):
        cv.compute("gradcam", embedded_model, images)
    with pytest.raises(CnnvisError, match="class-viz needs targets"):
        cv.compute("class-viz", embedded_model)
    with pytest.raises(CnnvisError, match="kernels takes no images"):
        cv.compute("kernels", embedded_model, images, layer="_conv_stem")
    with pytest.raises(CnnvisError, match="unknown colormap"):
        cv.compute("grad-cam", embedded_model, images, colormap="jett")
    assert cv.technique_names() == [technique.name for technique in all_techniques()]


def test_images_of_any_shape_share_a_batch_when_cropped():
    with pytest.raises(CnnvisError, match="give crop=True"):
        cv.load_images([CAT, REPO / "images" / "coffee.png"], size=224)
    batch = cv.load_images([CAT, REPO / "images" / "coffee.png"], size=224, crop=True)
    assert batch.shape == (2, 3, 224, 224)
    whole = cv.load_images([CAT], size=224)
    offset = (whole.shape[-1] - 224) // 2
    torch.testing.assert_close(batch[0], whole[0, :, :, offset : offset + 224])
