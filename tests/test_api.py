"""The Python verb: every technique called the same way, and equal to its command."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import CAT, REPO
from torch import nn

import cnnvis_tasks as cv
from cnnvis_tasks.cli import cli
from cnnvis_tasks.errors import CnnvisError
from cnnvis_tasks.techniques import all_techniques, get_technique

# What a technique needs beyond its defaults: (keywords of compute, the same on the command line).
CASES = {
    "feature-maps": ({"layer": "_blocks.1"}, ["--layer", "_blocks.1"]),
    "kernels": ({"layer": "_conv_stem"}, ["--layer", "_conv_stem"]),
    "saliency": ({"method": "guided", "target": [281]}, ["--method", "guided", "--target", "281"]),
    "class-viz": ({"target": [1], "regularization": "l2"}, ["--target", "1", "--regularization", "l2"]),
    "filter-viz": ({"layer": "_blocks.3", "filter": [2]}, ["--layer", "_blocks.3", "--filter", "2"]),
    "deep-dream": ({"layer": "_blocks.3", "filter": 3}, ["--layer", "_blocks.3", "--filter", "3"]),
    "deep-dream-octaves": ({"layer": "_blocks.3"}, ["--layer", "_blocks.3"]),
    "feature-inversion": ({"layer": "_blocks.1"}, ["--layer", "_blocks.1"]),
    "grad-cam": ({"target": [281]}, ["--target", "281"]),
    "channel-examples": ({"layer": "_blocks.2"}, ["--layer", "_blocks.2"]),
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
    targets = keywords.get("target")
    images = cv.load_images([CAT], size=SIZE) if technique.reads_images else None
    result = cv.compute(name, embedded_model, images, **keywords)

    # the same threads as this process: sums split differently over threads differ in the last bit
    reduced = technique.reduction is not None  # one file for all images: the map's lists
    written = ["--out", str(tmp_path / f"lists{technique.reduction.suffix}")] if reduced else []
    command = [
        name,
        *arguments,
        *(written or ["--out-dir", str(tmp_path), "--rendering", "raw"]),
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
    if reduced:
        from cnnvis_tasks.mechanisms.top_examples import TopExamples

        lists = TopExamples.load(written[1])
        found = [lists.entries("top", c)[0] for c in range(lists.channels)]
        expected = result.maps[0].float().numpy()
        np.testing.assert_array_equal(np.array([[e["score"], *e["box"]] for e in found]), expected)
        return
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
    result = cv.compute("saliency", "efficientnet_lite0", [CAT, CAT], target=[None, 281], size=SIZE)
    assert result.maps.shape == (2, 3, SIZE, 96)
    top1 = int(result.targets[0])
    assert result.targets.tolist() == [top1, 281]
    torch.testing.assert_close(
        result.maps[0], cv.compute("saliency", "efficientnet_lite0", [CAT], target=top1, size=SIZE).maps[0]
    )


def test_mistakes_are_one_line_errors(embedded_model):
    images = cv.load_images([CAT], size=SIZE)
    with pytest.raises(CnnvisError, match=r"saliency has no option colormap \(its options: method, target, size"):
        cv.compute("saliency", embedded_model, images, colormap="jet")
    with pytest.raises(CnnvisError, match="feature-maps needs layer=..."):
        cv.compute("feature-maps", embedded_model, images)
    with pytest.raises(CnnvisError, match="unknown technique 'gradcam'; did you mean grad-cam"):
        cv.compute("gradcam", embedded_model, images)
    with pytest.raises(CnnvisError, match="class-viz needs target="):
        cv.compute("class-viz", embedded_model)
    with pytest.raises(CnnvisError, match="kernels takes no images"):
        cv.compute("kernels", embedded_model, images, layer="_conv_stem")
    with pytest.raises(CnnvisError, match="unknown colormap"):
        cv.compute("grad-cam", embedded_model, images, colormap="jett")
    assert cv.technique_names() == [technique.name for technique in all_techniques()]


def test_images_of_any_shape_share_a_batch_when_cropped():
    with pytest.raises(CnnvisError, match=r"load_images\(paths, crop=True\)"):
        cv.load_images([CAT, REPO / "images" / "coffee.png"], size=224)
    batch = cv.load_images([CAT, REPO / "images" / "coffee.png"], size=224, crop=True)
    assert batch.shape == (2, 3, 224, 224)
    whole = cv.load_images([CAT], size=224)
    offset = (whole.shape[-1] - 224) // 2
    torch.testing.assert_close(batch[0], whole[0, :, :, offset : offset + 224])


# --- any nn.Module: the captum / pytorch-grad-cam way of calling ---------------------------------

CLASSES = ["cat", "dog", "cup", "rocket", "person", "tree", "car"]


def tiny_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 6, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, len(CLASSES)),
    )


def by_hand(pixels: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    return (pixels - mean) / std


def some_pixels(count: int = 2, side: int = 16) -> torch.Tensor:
    return torch.rand(count, 3, side, side, generator=torch.Generator().manual_seed(1))


class HuggingFaceLike(nn.Module):
    """Returns an object with ``.logits``, as transformers' classifiers do."""

    class Output:
        def __init__(self, logits):
            self.logits, self.loss = logits, None

    def __init__(self):
        super().__init__()
        self.net = tiny_cnn()

    def forward(self, pixel_values):
        return self.Output(self.net(pixel_values))


class TupleOut(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = tiny_cnn()

    def forward(self, x):
        return self.net(x), "extra"


def test_saliency_of_a_plain_module_is_the_input_gradient_of_the_target_logit():
    net, pixels = tiny_cnn(), some_pixels()
    result = cv.compute("saliency", net, pixels, target=[3, 5])
    x = by_hand(pixels).requires_grad_(True)
    (expected,) = torch.autograd.grad(net(x)[[0, 1], [3, 5]].sum(), x)
    torch.testing.assert_close(result.maps, expected, rtol=0, atol=1e-6)
    assert result.targets.tolist() == [3, 5]
    assert not net.training and all(p.requires_grad for p in net.parameters())  # eval; flags restored
    assert not net._forward_hooks  # the caller's module gets no hook


def test_grad_cam_of_a_plain_module_equals_a_hand_computation():
    net, pixels = tiny_cnn(), some_pixels()
    result = cv.compute("grad-cam", net, pixels, layer="3", target=2)
    activations = net[:4](by_hand(pixels)).detach().requires_grad_(True)
    (gradients,) = torch.autograd.grad(net[4:](activations)[:, 2].sum(), activations)
    expected = (gradients.mean(dim=(2, 3))[:, :, None, None] * activations).sum(1).relu()
    torch.testing.assert_close(result.maps, expected.detach(), rtol=1e-5, atol=1e-6)
    assert result.layer == "3" and result.maps.shape == (2, 8, 8) and result.display.shape == (2, 16, 16)


def test_a_target_changes_the_map_and_once_is_once_per_image():
    net, pixels = tiny_cnn(), some_pixels()
    top1 = cv.compute("grad-cam", net, pixels)
    other = next(c for c in range(len(CLASSES)) if c not in top1.targets.tolist())
    once = cv.compute("grad-cam", net, pixels, target=other)
    assert once.targets.tolist() == [other, other]
    assert not torch.equal(once.maps, top1.maps)
    torch.testing.assert_close(once.maps, cv.compute("grad-cam", net, pixels, target=[other, other]).maps)
    mixed = cv.compute("grad-cam", net, pixels, target=[None, other])
    torch.testing.assert_close(mixed.maps[0], top1.maps[0])
    torch.testing.assert_close(mixed.maps[1], once.maps[1])
    assert cv.compute("grad-cam", net, pixels, target="top1").targets.tolist() == top1.targets.tolist()
    for same in (torch.tensor([other, other]), np.array([other, other]), np.int64(other), torch.tensor(other)):
        torch.testing.assert_close(cv.compute("grad-cam", net, pixels, target=same).maps, once.maps)


def test_a_class_name_is_its_index():
    net, pixels = tiny_cnn(), some_pixels()
    by_name = cv.compute("saliency", net, pixels, target="rocket", classes=CLASSES)
    torch.testing.assert_close(by_name.maps, cv.compute("saliency", net, pixels, target=3).maps)
    names = cv.compute("saliency", net, pixels, target=["Rocket", "tree"], classes=CLASSES)
    assert names.targets.tolist() == [3, 5]
    model = cv.wrap_model(net, classes=CLASSES, name="tiny")
    assert cv.compute("grad-cam", model, pixels, target="car").targets.tolist() == [6, 6]


def test_a_layer_is_a_module_or_its_path():
    net, pixels = tiny_cnn(), some_pixels()
    by_object = cv.compute("grad-cam", net, pixels, layer=net[2])
    by_path = cv.compute("grad-cam", net, pixels, layer="2")
    assert by_object.layer == by_path.layer == "2"
    torch.testing.assert_close(by_object.maps, by_path.maps, rtol=0, atol=0)


@pytest.mark.parametrize("build", [HuggingFaceLike, TupleOut], ids=["logits-attribute", "tuple"])
def test_a_module_returning_more_than_scores_is_explained_by_its_scores(build):
    wrapped, pixels = build(), some_pixels()
    plain = wrapped.net
    for name in ("saliency", "grad-cam"):
        ours = cv.compute(name, wrapped, pixels, target=1, layer=wrapped.net[2] if name == "grad-cam" else None)
        reference = cv.compute(name, plain, pixels, target=1, layer="2" if name == "grad-cam" else None)
        torch.testing.assert_close(ours.maps, reference.maps, rtol=0, atol=0)
    assert ours.layer == "net.2"
    assert type(wrapped) is build and not isinstance(wrapped(by_hand(pixels)), torch.Tensor)  # left as it was


def test_paths_pil_images_and_tensors_give_the_same_maps(tmp_path):
    from PIL import Image

    path = tmp_path / "picture.png"
    array = np.random.default_rng(0).integers(0, 256, (20, 28, 3), dtype=np.uint8)
    Image.fromarray(array).save(path)
    net = tiny_cnn()
    pixels = cv.load_images([path], size=16)
    assert pixels.shape == (1, 3, 16, 22)
    expected = cv.compute("saliency", net, pixels, target=1).maps
    for images in (path, str(path), [path], Image.open(path), [Image.open(path)], pixels[0]):
        torch.testing.assert_close(cv.compute("saliency", net, images, target=1, size=16).maps, expected)
    unscaled = torch.from_numpy(array).permute(2, 0, 1)  # uint8 pixels are read as 0..255
    torch.testing.assert_close(
        cv.compute("saliency", net, unscaled, target=1).maps,
        cv.compute("saliency", net, unscaled.float() / 255, target=1).maps,
    )


def test_a_wrapped_model_and_its_input_size(tmp_path):
    from PIL import Image

    net = tiny_cnn()
    model = cv.wrap_model(net, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), classes=CLASSES, name="tiny", input_size=12)
    assert (model.name, model.categories, model.device, model.mean) == (
        "tiny",
        CLASSES,
        torch.device("cpu"),
        (0.5,) * 3,
    )
    path = tmp_path / "wide.png"
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(path)
    assert cv.compute("grad-cam", model, path).display.shape == (1, 12, 12)  # centre-cropped to the size
    with pytest.raises(CnnvisError, match="tiny takes 12 x 12 inputs only, got 16 x 16"):
        cv.compute("grad-cam", model, some_pixels())
    assert cv.compute("class-viz", model, target="cup", steps=1).maps.shape == (1, 3, 12, 12)  # synthesised at it
    x = some_pixels(side=12)
    torch.testing.assert_close(
        cv.compute("saliency", model, x, target=0).maps,
        cv.compute("saliency", net, x, target=0, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)).maps,
    )


def test_pictures_render_and_save(tmp_path):
    from PIL import Image

    from cnnvis_tasks.io.outputs import read_metadata

    result = cv.compute("grad-cam", tiny_cnn(), some_pixels(), target="dog", classes=CLASSES)
    overlay = result.picture(1, "overlay")
    assert overlay.dtype == np.uint8 and overlay.shape == (16, 16, 3)
    path = cv.save_picture(result, 1, tmp_path / "out" / "dog.png", "overlay")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (16, 16)
        np.testing.assert_array_equal(np.asarray(image.convert("RGB")), overlay)
    facts = read_metadata(path)
    assert facts["technique"] == "grad-cam" and facts["rendering"] == "overlay" and facts["target"]["index"] == 1
    assert cv.save_picture(result, 0, tmp_path / "gray.png").is_file()  # the first rendering
    with pytest.raises(CnnvisError, match="grad-cam has no rendering 'overlai'; its renderings: gray, heatmap"):
        cv.save_picture(result, 0, tmp_path / "x.png", "overlai")
    with pytest.raises(CnnvisError, match="give a path ending in .png"):
        cv.save_picture(result, 0, tmp_path / "x.jpg")


def test_every_mistake_is_one_line_that_names_no_repr():
    net, pixels = tiny_cnn(), some_pixels()
    mistakes = {
        "targets= is spelt target=": lambda: cv.compute("grad-cam", net, pixels, targets=[1, 2]),
        "no option layr; did you mean layer?": lambda: cv.compute("grad-cam", net, pixels, layr="2"),
        "no option colourmap; did you mean colormap?": lambda: cv.compute("grad-cam", net, pixels, colourmap="jet"),
        "no option clases; did you mean classes?": lambda: cv.compute("saliency", net, pixels, clases=CLASSES),
        "the Conv2d given is not a module of Sequential": lambda: cv.compute(
            "grad-cam", net, pixels, layer=nn.Conv2d(3, 3, 1)
        ),
        "that is the whole model": lambda: cv.compute("grad-cam", net, pixels, layer=net),
        "unknown layer '9'": lambda: cv.compute("grad-cam", net, pixels, layer="9"),
        "saliency has no option layer": lambda: cv.compute("saliency", net, pixels, layer=net[2]),
        "saliency: method: 'gided' is not one of vanilla, guided, deconv; did you mean guided": lambda: cv.compute(
            "saliency", net, pixels, method="gided"
        ),
        "got 3 targets for 2 images": lambda: cv.compute("saliency", net, pixels, target=[1, 2, 3]),
        "class index 7 out of range": lambda: cv.compute("saliency", net, pixels, target=7, classes=CLASSES),
        "out of range: this model has classes 0..6": lambda: cv.compute("saliency", net, pixels, target=7),
        "target 'cat': Sequential has no class names": lambda: cv.compute("saliency", net, pixels, target="cat"),
        "label 'zebra'": lambda: cv.compute("saliency", net, pixels, target="zebra", classes=CLASSES),
        "target='label' reads each image's label": lambda: cv.compute("saliency", net, pixels, target="label"),
        "give a class index \\(int\\), a class name or 'top1', not a float": lambda: cv.compute(
            "saliency", net, pixels, target=2.5
        ),
        "eigen-cam takes no target=": lambda: cv.compute("eigen-cam", net, pixels, target=1),
        "pixels must lie in \\[0, 1\\]": lambda: cv.compute("saliency", net, by_hand(pixels)),
        "expected a tensor of shape \\(N, 3, H, W\\)": lambda: cv.compute("saliency", net, pixels[:, :1]),
        "images: expected a tensor": lambda: cv.compute("saliency", net, {"a": 1}),
        "image not found": lambda: cv.compute("saliency", net, "no/such.png"),
        "model: give an nn.Module, a model name or a loaded model": lambda: cv.compute("saliency", 42, pixels),
        "mean=: a loaded model has its own": lambda: cv.compute("saliency", cv.load_model(), pixels, mean=(0, 0, 0)),
        "std must be three numbers": lambda: cv.wrap_model(net, std=(1, 2)),
        "classes: give a list of class names": lambda: cv.wrap_model(net, classes="cat dog"),
        "HuggingFaceLike returns a str": lambda: cv.compute("saliency", _Returns("text"), pixels),
    }
    for expected, call in mistakes.items():
        with pytest.raises(CnnvisError, match=expected) as caught:
            call()
        message = str(caught.value)
        assert "\n" not in message and "(\n" not in message and len(message) < 300, message
        assert "Conv2d(" not in message and "tensor(" not in message, message


class _Returns(nn.Module):
    def __init__(self, value):
        super().__init__()
        self.value = value

    def forward(self, x):
        return self.value


_Returns.__name__ = "HuggingFaceLike"


def test_the_torch_free_imagenet_statistics_are_the_models():
    from cnnvis_tasks import api
    from cnnvis_tasks.models import sources as models

    assert api.IMAGENET_MEAN == models.IMAGENET_MEAN and api.IMAGENET_STD == models.IMAGENET_STD
