"""Vision transformers and models of fixed input size: token sequences as feature
maps, the automatic CAM layer, inputs cropped to the size the model needs."""

from __future__ import annotations

import pytest
import torch
import torchvision
from click.testing import CliRunner
from conftest import CAT
from PIL import Image
from torch import nn

import cnnvis_tasks as cv
from cnnvis_tasks.cli import cli
from cnnvis_tasks.errors import CnnvisError
from cnnvis_tasks.io.images import (
    fit_square,
    fixed_size_note,
    load_batches,
    load_image,
    size_problem,
    synthesis_size,
    synthesis_size_note,
)
from cnnvis_tasks.io.outputs import read_metadata
from cnnvis_tasks.mechanisms.cam import class_activation_map, default_cam_layer, weighted_cam
from cnnvis_tasks.mechanisms.capture import feature_maps
from cnnvis_tasks.mechanisms.shared_pass import BackwardRequest, shared_pass
from cnnvis_tasks.mechanisms.tokens import as_feature_map, required_input_size
from cnnvis_tasks.models.loading import LoadedModel, build_on_meta
from cnnvis_tasks.models.names import fixed_input_size
from cnnvis_tasks.models.sources import IMAGENET_MEAN, IMAGENET_STD, wake_zero_head
from cnnvis_tasks.techniques.grad_cam import gradcam_weights

CLASSES = 10


def tiny_vit() -> nn.Module:
    torch.manual_seed(0)
    model = torchvision.models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=CLASSES
    )
    wake_zero_head(model)  # torchvision starts the head at zero: every map would be zero
    return model.eval().requires_grad_(False)


def tiny_swin() -> nn.Module:
    torch.manual_seed(0)
    model = torchvision.models.SwinTransformer(
        patch_size=[4, 4], embed_dim=8, depths=[1, 1], num_heads=[1, 2], window_size=[2, 2], num_classes=CLASSES
    )
    return model.eval().requires_grad_(False)


def loaded(module: nn.Module, name: str) -> LoadedModel:
    categories = [f"class {i}" for i in range(CLASSES)]
    return LoadedModel(name, module, IMAGENET_MEAN, IMAGENET_STD, categories, "random (seed 0)", torch.device("cpu"))


def pixels(size: int, count: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.rand(count, 3, size, size, generator=torch.Generator().manual_seed(seed))


# --- token sequences as feature maps --------------------------------------------------


def test_vit_tokens_lose_the_class_token_and_lie_on_the_patch_grid():
    model = tiny_vit()
    tokens = torch.randn(2, 1 + 4 * 4, 16)
    hand = tokens[:, 1:].reshape(2, 4, 4, 16).permute(0, 3, 1, 2)
    assert torch.equal(as_feature_map(tokens, model, "encoder.layers.encoder_layer_1.ln_1"), hand)
    # the first patch token is the top-left patch, the fifth starts the second row
    assert torch.equal(hand[:, :, 0, 0], tokens[:, 1]) and torch.equal(hand[:, :, 1, 0], tokens[:, 5])


def test_swin_channels_last_is_permuted_but_its_convolution_is_not():
    model = tiny_swin()
    outputs = {}
    hooks = [
        model.get_submodule(p).register_forward_hook(lambda m, i, o, p=p: outputs.__setitem__(p, o))
        for p in ("features.0.0", "features.3.0.norm1", "norm")
    ]
    model(pixels(32, 1))
    for hook in hooks:
        hook.remove()
    assert outputs["features.0.0"].shape == (1, 8, 8, 8)  # conv: NCHW, kept
    assert as_feature_map(outputs["features.0.0"], model, "features.0.0") is outputs["features.0.0"]
    late = outputs["features.3.0.norm1"]
    assert late.shape == (1, 4, 4, 16)  # (N, h, w, C)
    assert torch.equal(as_feature_map(late, model, "features.3.0.norm1"), late.permute(0, 3, 1, 2))


def test_a_sequence_of_unknown_grid_drops_the_fewest_leading_tokens_that_leave_a_square():
    tokens = torch.randn(1, 5 + 9, 4)  # a class token and four registers, then 3 x 3 patches
    got = as_feature_map(tokens, nn.Sequential(), "x")
    assert torch.equal(got, tokens[:, 5:].reshape(1, 3, 3, 4).permute(0, 3, 1, 2))
    with pytest.raises(CnnvisError, match=r"'x' outputs a tensor of shape \(2, 10\), not a feature map"):
        as_feature_map(torch.zeros(2, 10), nn.Sequential(), "x")


def test_feature_maps_of_a_token_layer_are_laid_out_on_the_grid():
    model = tiny_vit()
    layer = "encoder.layers.encoder_layer_0"
    maps = feature_maps(model, pixels(32), [layer])[layer]
    assert maps.shape == (2, 16, 4, 4)


# --- Grad-CAM on token sequences --------------------------------------------------------


def hand_grad_cam(model: nn.Module, x: torch.Tensor, layer: str, prefix: int = 1) -> torch.Tensor:
    """Grad-CAM written out: tokens and their gradient, the ``prefix`` tokens (the class
    token) dropped, on the grid."""
    kept = {}

    def hook(_module, _inputs, output):
        output.retain_grad()
        kept["tokens"] = output

    handle = model.get_submodule(layer).register_forward_hook(hook)
    with torch.enable_grad():
        x = x.clone().requires_grad_(True)  # parameters are frozen: the graph starts here
        logits = model(x)
        logits.gather(1, logits.argmax(1, keepdim=True)).sum().backward()
    handle.remove()
    tokens, grads = kept["tokens"].detach(), kept["tokens"].grad
    n, count, channels = tokens.shape
    side = int((count - prefix) ** 0.5)
    activations = tokens[:, prefix:].reshape(n, side, side, channels).permute(0, 3, 1, 2)
    gradients = grads[:, prefix:].reshape(n, side, side, channels).permute(0, 3, 1, 2)
    weights = gradients.mean(dim=(2, 3))
    return torch.relu((weights[:, :, None, None] * activations).sum(1))


def test_grad_cam_on_a_vit_equals_the_hand_computation():
    model = loaded(tiny_vit(), "tiny-vit")
    x = pixels(32)
    result = cv.compute("grad-cam", model, x)
    assert result.layer == "encoder.layers.encoder_layer_1.ln_1"
    hand = hand_grad_cam(model.module, model.normalize(x), result.layer)
    assert hand.shape == (2, 4, 4) and hand.abs().max() > 0
    torch.testing.assert_close(result.maps, hand, rtol=1e-5, atol=1e-7)
    assert result.display.shape == (2, 32, 32)


def test_the_shared_pass_gives_the_cam_of_its_own_backward():
    model = tiny_vit()
    x = pixels(32)
    layer = "encoder.layers.encoder_layer_1.ln_1"
    alone = class_activation_map(model, x, layer, None, gradcam_weights)
    (together,) = shared_pass(model, x, [layer], [BackwardRequest(None, input_gradient=True, layers=(layer,))])
    assert together.activations[layer].shape == (2, 16, 4, 4)
    cams = weighted_cam(together.activations[layer], together.gradients[layer], gradcam_weights)
    # Not bit for bit as for CNNs: before the layer, class_activation_map's forward needs no
    # grad, so MultiheadAttention takes its fused inference kernel there.
    torch.testing.assert_close(cams, alone.cams, rtol=1e-5, atol=1e-8)
    assert alone.cams.abs().max() > 0


def test_grad_cam_on_swin():
    model = loaded(tiny_swin(), "tiny-swin")
    result = cv.compute("grad-cam", model, pixels(32))
    assert result.layer == "features.3.0.norm1" and result.maps.shape == (2, 4, 4)
    assert result.maps.abs().max() > 0


# --- the automatic layer and the input size ------------------------------------------


@pytest.mark.parametrize(
    ("name", "layer"),
    [("vit_b_16", "encoder.layers.encoder_layer_11.ln_1"), ("swin_t", "features.7.1.norm1"), ("maxvit_t", "blocks.3")],
)
def test_the_automatic_layer_of_torchvision_transformers(name, layer):
    assert default_cam_layer(build_on_meta(name)) == layer


def test_the_automatic_layer_of_a_small_vit_is_its_last_block_s_first_norm():
    assert default_cam_layer(tiny_vit()) == "encoder.layers.encoder_layer_1.ln_1"


def test_the_size_table_agrees_with_the_architectures():
    """names.fixed_input_size (no torch: the workflow) against the built models."""
    for name in torchvision.models.list_models(module=torchvision.models):
        if name.startswith(("vit_", "swin", "maxvit")):
            assert required_input_size(build_on_meta(name)) == fixed_input_size(name, "random"), name
    with torch.device("meta"):
        swag = torchvision.models.vit_h_14(image_size=518)  # what its default weights are built with
    assert required_input_size(swag) == fixed_input_size("vit_h_14") == 518
    assert required_input_size(tiny_vit()) == 32 and required_input_size(tiny_swin()) is None
    assert fixed_input_size("resnet50") is None and fixed_input_size("efficientnet_lite0") is None
    # Swin takes any size (its windows are padded): it is not cropped
    with torch.device("meta"):
        assert tiny_swin()(torch.empty(1, 3, 32, 48)).shape == (1, CLASSES)


# --- images cropped to the model's size ----------------------------------------------


def test_images_for_a_fixed_size_model_are_its_centre_square():
    image = Image.open(CAT).convert("RGB")
    width, height = image.size
    assert width > height
    tensor = load_image(CAT, size=224, crop=48)
    assert tensor.shape == (3, 48, 48)
    left = (width - height) / 2
    expected = image.resize((48, 48), Image.Resampling.BICUBIC, box=(left, 0, left + height, height))
    assert torch.equal(tensor, torch.from_numpy(__import__("numpy").asarray(expected).copy()).permute(2, 0, 1) / 255)
    assert fit_square(image.crop((0, 0, 48, 48)), 48).size == (48, 48)
    ((indices, batch),) = list(load_batches([CAT, CAT], 300, 4, crop=48))
    assert indices == [0, 1] and batch.shape == (2, 3, 48, 48)
    # the pixel budget counts the crop, not the resized image
    assert size_problem(4000, 300, 224, 60_000) is not None
    assert size_problem(4000, 300, 224, 60_000, crop=224) is None


def test_a_size_the_model_cannot_take_is_said_in_one_line():
    assert fixed_size_note("vit_b_16", 224, 224) is None
    assert fixed_size_note("vit_b_16", 224, 300) == (
        "vit_b_16 takes 224 x 224 inputs only: each image is resized to 224 on its shorter side and "
        "centre-cropped to 224 x 224, not to --size 300"
    )
    assert "not to the original size (--size 0)" in fixed_size_note("vit_b_16", 224, 0)


def test_the_python_api_crops_paths_and_refuses_pixels_of_another_size():
    model = loaded(tiny_vit(), "tiny-vit")
    result = cv.compute("grad-cam", model, [CAT])
    assert result.inputs.shape == (1, 3, 32, 32)
    with pytest.raises(CnnvisError, match=r"tiny-vit takes 32 x 32 inputs only, got 48 x 32"):
        cv.compute("grad-cam", model, torch.rand(1, 3, 32, 48))


def test_a_random_vit_head_is_not_zero():
    torch.manual_seed(0)
    raw = torchvision.models.VisionTransformer(32, 8, 1, 2, 16, 32, num_classes=CLASSES)
    assert not raw.heads.head.weight.any()
    wake_zero_head(raw)
    assert raw.heads.head.weight.abs().min() > 0
    before = raw.heads.head.weight.clone()
    wake_zero_head(raw)  # a head that is not zero is left alone
    assert torch.equal(raw.heads.head.weight, before)


# --- the workflow --------------------------------------------------------------------


def test_the_workflow_takes_a_vit_and_checks_sizes_on_its_crop():
    from cnnvis_tasks.workflow.config import check_config, model_spec
    from cnnvis_tasks.workflow.model_check import check_models
    from cnnvis_tasks.workflow.plan import make_plan

    config = {
        "models": {"vit_b_16": {"weights": "random"}, "resnet18": {"weights": "random"}},
        "max_pixels": 60_000,
        "techniques": {
            "grad_cam": {"enabled": True, "models": {"vit_b_16": {"layers": ["encoder.layers.encoder_layer_10.ln_1"]}}}
        },
    }
    config = check_config(config, check_model_names=False)
    config["techniques"]["grad_cam"]["models"]["resnet18"] = {"layers": ["auto"]}
    check_models(config, {name: model_spec(config, name) for name in config["models"]}, None)  # the layer exists
    wide = [{"name": "wide", "path": "images/wide.png", "status": "ok", "reason": None, "size": [600, 300]}]
    plan = make_plan(config, wide, gpu=False, exists=lambda path: False)
    tables = {table["table"]: table for table in plan.gallery_tables if table["section"] == "grad-cam"}
    assert "wide" in tables["resnet18"]["failures"]  # 448 x 224 > 60,000 pixels
    assert tables["vit_b_16"]["failures"] == {}  # 224 x 224 = 50,176 pixels
    assert any(job.rule.startswith("grad_cam_vit_b_16") for job in plan.jobs)


# --- the commands, as the issue ran them ---------------------------------------------


@pytest.mark.slow
def test_the_issue_s_commands_give_pictures_of_the_crop(tmp_path):
    wide = tmp_path / "wide.png"
    Image.open(CAT).convert("RGB").resize((337, 224)).save(wide)
    runner = CliRunner()
    for args in (
        ["grad-cam", "--out-overlay", tmp_path / "o.png"],
        ["saliency", "--method", "guided", "--size", "300", "--out-color", tmp_path / "s.png"],
    ):
        command = [args[0], "--model", "vit_b_16", "--weights", "random", "--image", wide, *args[1:]]
        result = runner.invoke(cli, [str(a) for a in command], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert "Traceback" not in result.output
    assert Image.open(tmp_path / "o.png").size == (224, 224)
    assert read_metadata(tmp_path / "o.png")["layer"] == "encoder.layers.encoder_layer_11.ln_1"
    assert Image.open(tmp_path / "s.png").size == (224, 224)
    assert result.output.count("no ReLU-family activation") == 1
    assert result.output.count("vit_b_16 takes 224 x 224 inputs only") == 1


# --- the size a user asked for -------------------------------------------------------


def test_only_a_size_the_user_gave_is_warned_about():
    # vit_h_14's pretrained weights take 518 x 518: the command's default (224) says nothing
    assert fixed_size_note("vit_h_14", fixed_input_size("vit_h_14"), None) is None
    assert "not to --size 224" in fixed_size_note("vit_h_14", 518, 224)
    assert synthesis_size(518, None, None) == (518, 518) and synthesis_size(518, 300, 200) == (518, 518)
    assert synthesis_size(None, None, None) == (224, 224) and synthesis_size(None, 300, 200) == (200, 300)
    assert synthesis_size_note("vit_h_14", 518, None, None) is None
    assert synthesis_size_note("vit_h_14", 518, 518, None) is None
    assert synthesis_size_note("resnet50", None, 300, 200) is None
    assert synthesis_size_note("vit_h_14", 518, 224, 518) == (
        "vit_h_14 takes 518 x 518 inputs only: the image is synthesised at 518 x 518, not at width 224"
    )


@pytest.fixture
def tiny_vit_commands(monkeypatch):
    """The commands load a small ViT (32 x 32 inputs) whatever --model says."""
    import cnnvis_tasks.run.runner as runner

    monkeypatch.setattr(runner, "load_model", lambda *args, **kwargs: loaded(tiny_vit(), "tiny-vit"))

    def run(*args):
        arguments = [str(a) for a in (*args, "--model", "vit_b_16", "--weights", "random", "--threads", "1", "-q")]
        result = CliRunner().invoke(cli, arguments, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    return run


def test_the_commands_warn_about_a_size_only_when_it_is_given(tiny_vit_commands, tmp_path):
    warning = "tiny-vit takes 32 x 32 inputs only"
    assert warning not in tiny_vit_commands("grad-cam", "--image", CAT, "--out-dir", tmp_path / "a")
    assert warning not in tiny_vit_commands("predict", "--image", CAT, "--out", tmp_path / "p.csv")
    shared = ("shared-pass", "--image", CAT, "--job", f"saliency --out-dir {tmp_path}/s")
    assert warning not in tiny_vit_commands(*shared)
    assert (
        tiny_vit_commands("grad-cam", "--image", CAT, "--size", "224", "--out-dir", tmp_path / "b").count(
            warning + ": each image is resized to 32"
        )
        == 1
    )
    two = ("--job", f"saliency --size 224 --out-dir {tmp_path}/t", "--job", f"grad-cam --out-dir {tmp_path}/g")
    assert tiny_vit_commands("shared-pass", "--image", CAT, *two).count("not to --size 224") == 1
    assert tiny_vit_commands("class-viz", "--target", "1", "--steps", "1", "--out-dir", tmp_path / "c") == ""
    assert Image.open(tmp_path / "c" / "class1-none.png").size == (32, 32)
    output = tiny_vit_commands(
        "class-viz", "--target", "1", "--steps", "1", "--width", "64", "--out-dir", tmp_path / "d"
    )
    assert output.count(f"{warning}: the image is synthesised at 32 x 32, not at width 64") == 1
    assert read_metadata(tmp_path / "d" / "class1-none.png")["size"] == [32, 32]


# --- synthesis at the model's size ----------------------------------------------------


class CropFirst(nn.Module):
    """A model of any input size: the central 32 x 32 of its input, through the tiny ViT."""

    def __init__(self, vit: nn.Module):
        super().__init__()
        self.vit = vit

    def forward(self, x):
        top, left = (x.shape[-2] - 32) // 2, (x.shape[-1] - 32) // 2
        return self.vit(x[..., top : top + 32, left : left + 32])


class ResizeFirst(nn.Module):
    """A model of any input size: its input resized to 32 x 32, through the tiny ViT."""

    def __init__(self, vit: nn.Module):
        super().__init__()
        self.vit = vit

    def forward(self, x):
        if x.shape[-2:] != (32, 32):
            x = torch.nn.functional.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False, antialias=True)
        return self.vit(x)


def test_the_robust_warp_without_padding_is_the_padded_warp_s_centre():
    from cnnvis_tasks.mechanisms.parameterization import random_transform

    x = pixels(32, 2)
    for seed in range(3):
        padded = random_transform(x, torch.Generator().manual_seed(seed), pad=8)
        assert padded.shape[-1] == 48
        unpadded = random_transform(x, torch.Generator().manual_seed(seed), pad=0)
        assert torch.allclose(unpadded, padded[..., 8:-8, 8:-8], atol=1e-5)


def test_class_viz_on_a_fixed_size_model_is_the_padded_run_seen_through_a_centre_crop():
    from cnnvis_tasks.mechanisms.ascent import class_visualization

    vit = tiny_vit()
    settings = {"mean": IMAGENET_MEAN, "std": IMAGENET_STD, "height": 32, "width": 32, "steps": 3, "lr": 0.05}
    fixed = class_visualization(vit, [1, 2], ["none"], [0.0], **settings)
    cropped = class_visualization(CropFirst(vit), [1, 2], ["none"], [0.0], **settings)
    assert torch.allclose(fixed.objective_end, cropped.objective_end, rtol=1e-4, atol=1e-5)
    assert torch.allclose(fixed.images, cropped.images, atol=1e-4)
    assert not torch.allclose(fixed.objective_end, fixed.objective_start)  # it moved


def test_the_synthesis_techniques_run_at_the_model_s_size():
    model = loaded(tiny_vit(), "tiny-vit")
    layer = "encoder.layers.encoder_layer_1"
    classes = cv.compute("class-viz", model, target=[1, 2], steps=2)
    assert classes.maps.shape == (2, 3, 32, 32) and classes.facts["size"] == [32, 32]
    filters = cv.compute("filter-viz", model, layer=layer, filter=[3, 15], steps=2)
    assert filters.maps.shape == (2, 3, 32, 32)
    with pytest.warns(UserWarning, match="synthesised at 32 x 32, not at width 64 and height 48"):
        assert cv.compute("class-viz", model, target=[1], steps=1, width=64, height=48).maps.shape[-1] == 32
    inversion = cv.compute("feature-inversion", model, [CAT, CAT], layer=layer, steps=4, lr=0.1)
    assert inversion.maps.shape == (2, 3, 32, 32)
    assert (inversion.row_numbers["loss_end"] < inversion.row_numbers["loss_start"]).all()
    dream = cv.compute("deep-dream", model, [CAT], layer=layer, filter=15, steps=2)
    assert dream.maps.shape == (1, 3, 32, 32)


def test_a_filter_of_a_token_layer_is_a_channel_of_its_patch_tokens():
    from cnnvis_tasks.mechanisms.ascent import _ChannelObjective

    vit, x = tiny_vit(), pixels(32)
    layer = "encoder.layers.encoder_layer_0"
    kept = {}
    handle = vit.get_submodule(layer).register_forward_hook(lambda m, i, o: kept.__setitem__("tokens", o))
    vit(x)
    handle.remove()
    tokens = kept["tokens"]  # (2, 1 + 16, 16): the class token, then 4 x 4 patches
    got = _ChannelObjective(vit, layer, [15, 3])(x)
    assert torch.allclose(got, torch.stack([tokens[0, 1:, 15], tokens[1, 1:, 3]]))
    with pytest.raises(CnnvisError, match="filter 16 out of range .* valid 0..15"):
        _ChannelObjective(vit, layer, [16, 0])(x)


def test_deep_dream_octaves_feed_every_octave_at_the_model_s_size():
    from cnnvis_tasks.mechanisms.ascent import deep_dream

    vit, photo = tiny_vit(), pixels(32, 1)
    seen = []
    handle = vit.register_forward_pre_hook(lambda m, args: seen.append(tuple(args[0].shape[-2:])))
    settings = {"mean": IMAGENET_MEAN, "std": IMAGENET_STD, "octaves": 3, "octave_scale": 1.4, "lr": 0.01}
    fixed = deep_dream(vit, photo, "encoder.layers.encoder_layer_1", 5, steps_per_octave=2, **settings)
    handle.remove()
    assert fixed.octaves == 3 and set(seen) == {(32, 32)}
    resized = deep_dream(
        ResizeFirst(vit), photo, "vit.encoder.layers.encoder_layer_1", 5, steps_per_octave=2, **settings
    )
    assert torch.allclose(fixed.images, resized.images, atol=1e-6)
    assert not torch.allclose(fixed.images, photo, atol=1e-3)


@pytest.mark.slow
def test_the_workflow_s_synthesis_jobs_on_a_vit_run(tmp_path, monkeypatch):
    """A config asking for every synthesis technique on vit_b_16 gives jobs that run (about 10 s)."""
    from cnnvis_tasks.workflow.config import check_config
    from cnnvis_tasks.workflow.model_check import resolve_models
    from cnnvis_tasks.workflow.plan import make_plan

    layer = "encoder.layers.encoder_layer_2"
    quick = {"steps": 1}
    config = {
        "models": {"vit_b_16": {"weights": "random"}},
        "techniques": {
            "class_viz": {"classes": [1], "regularizations": ["none"], **quick, "models": {"vit_b_16": {}}},
            "filter_viz": {**quick, "models": {"vit_b_16": {"filters": [{"layer": layer, "filter": 700}]}}},
            "deep_dream": {**quick, "models": {"vit_b_16": {"layers": [layer], "filters": [700]}}},
            "deep_dream_octaves": {**quick, "octaves": 3, "models": {"vit_b_16": {"layers": [layer]}}},
            "feature_inversion": {**quick, "models": {"vit_b_16": {"layers": [layer]}}},
        },
    }
    config = check_config(config, check_model_names=False)
    image = [{"name": "cat", "path": str(CAT), "status": "ok", "reason": None, "size": list(Image.open(CAT).size)}]
    monkeypatch.chdir(tmp_path)
    models, _ = resolve_models(config, "results")  # writes the model's file, as the workflow's start does
    plan = make_plan(config, image, models=models, gpu=False, exists=lambda path: False)
    jobs = [job for job in plan.jobs if job.arguments[0] != "predict"]
    assert sorted(job.arguments[0] for job in jobs) == sorted(t.replace("_", "-") for t in config["techniques"])
    for job in jobs:
        result = CliRunner().invoke(cli, [*job.arguments, "--threads", "1"], catch_exceptions=False)
        assert result.exit_code == 0 and "warning" not in result.output, (job.arguments[0], result.output)
        pictures = [output.path for output in job.outputs if output.path.endswith(".png")]
        assert pictures and all(Image.open(path).size == (224, 224) for path in pictures), job.arguments[0]
        if job.arguments[0] == "deep-dream-octaves":
            assert read_metadata(pictures[0])["octaves_used"] == 3
