"""timm's and Hugging Face's token models in the CAMs and feature maps, as torchvision's:
the input size they need, the automatic layer, prefix tokens dropped and patches laid
on their grid (Grad-CAM against a hand computation and pytorch-grad-cam), and
:func:`logits_only` for classifiers that return an output object.  Random weights,
small configurations; the full-size architectures are built on the meta device."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_transformers import hand_grad_cam as grid_grad_cam
from torch import nn

from cnnvis_tasks.errors import CnnvisError
from cnnvis_tasks.mechanisms.cam import class_activation_map, default_cam_layer, traced_cam_layer
from cnnvis_tasks.mechanisms.capture import feature_maps
from cnnvis_tasks.mechanisms.logits import logits_only
from cnnvis_tasks.mechanisms.tokens import as_feature_map, patch_grid, required_input_size
from cnnvis_tasks.models.loading import LoadedModel
from cnnvis_tasks.techniques import get_technique
from cnnvis_tasks.techniques.grad_cam import gradcam_weights

timm = pytest.importorskip("timm")
transformers = pytest.importorskip("transformers")

CLASSES = 3


def _timm(name: str, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False, num_classes=CLASSES, **kwargs).eval().requires_grad_(False)


def _hf(kind: str, config: str, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    settings = {"num_labels": CLASSES, **kwargs}
    model = getattr(transformers, kind)(getattr(transformers, config)(**settings))
    return logits_only(model.eval().requires_grad_(False))


SMALL_VIT = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
SMALL_VIT.update(image_size=32, patch_size=8)
# name -> (build, input side, automatic layer; None: the CNN rule's, traced_cam_layer)
MODELS = {
    "timm-vit": (lambda: _timm("vit_tiny_patch16_224", depth=2, img_size=32, patch_size=8), 32, "blocks.1.norm1"),
    "timm-deit-distilled": (
        lambda: _timm("deit_tiny_distilled_patch16_224", depth=2, img_size=32, patch_size=8),
        32,
        "blocks.1.norm1",
    ),
    "timm-eva02": (lambda: _timm("eva02_tiny_patch14_224", depth=2, img_size=56), 56, "blocks.1.norm1"),
    "timm-swin": (
        lambda: _timm(
            "swin_tiny_patch4_window7_224", depths=(1, 1), num_heads=(1, 2), embed_dim=16, img_size=32, window_size=4
        ),
        32,
        "layers.1.blocks.0.norm1",
    ),
    "timm-resnet18": (lambda: _timm("resnet18"), 64, None),
    "timm-convnext-atto": (lambda: _timm("convnext_atto"), 64, None),
    "hf-vit": (lambda: _hf("ViTForImageClassification", "ViTConfig", **SMALL_VIT), 32, None),
    "hf-deit": (lambda: _hf("DeiTForImageClassificationWithTeacher", "DeiTConfig", **SMALL_VIT), 32, None),
}


@pytest.fixture(scope="module")
def built():
    return {}


def model_of(built, name: str) -> nn.Module:
    if name not in built:
        built[name] = MODELS[name][0]()
    return built[name]


def loaded(module: nn.Module, name: str = "tiny") -> LoadedModel:
    return LoadedModel(
        name=name,
        module=module,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        categories=None,
        weights="random",
        device=torch.device("cpu"),
    )


def pixels(size: int, count: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.rand(count, 3, size, size, generator=torch.Generator().manual_seed(seed))


def hf_layer(model: nn.Module) -> str:
    """The last encoder layer's ``layernorm_before`` (its path differs between versions of transformers)."""
    return [name for name, _ in model.named_modules() if name.endswith("layernorm_before")][-1]


def expected_layer(name: str, model: nn.Module) -> str:
    layer = MODELS[name][2]
    if name.startswith("hf-"):
        return hf_layer(model)
    return layer or traced_cam_layer(model, (224, 224))


def prefix_tokens(model: nn.Module) -> int:
    """Class (and distillation) tokens: timm says how many; Hugging Face's ViT has one, DeiT two."""
    count = getattr(model, "num_prefix_tokens", None)
    return count if count is not None else 2 if "DeiT" in type(model).__name__ else 1


# --- the input size ------------------------------------------------------------------------


@pytest.mark.parametrize("name", MODELS)
def test_the_input_size_a_small_model_needs(built, name):
    side = MODELS[name][1]
    assert required_input_size(model_of(built, name)) == (
        None if name in ("timm-resnet18", "timm-convnext-atto") else side
    )


def test_full_size_architectures_say_their_input_size_and_layer():
    expected = {
        "vit_tiny_patch16_224": (224, "blocks.11.norm1"),
        "deit_tiny_distilled_patch16_224": (224, "blocks.11.norm1"),
        "eva02_tiny_patch14_224": (224, "blocks.11.norm1"),
        "swin_tiny_patch4_window7_224": (224, "layers.3.blocks.1.norm1"),
        "vit_small_patch14_reg4_dinov2": (518, "blocks.11.norm1"),
        "resnet18": (None, "layer4.1.act2"),
        "convnext_atto": (None, "stages.3.blocks.1"),
        "efficientnet_b0": (None, "bn2.act"),
    }
    for name, (side, layer) in expected.items():
        with torch.device("meta"):
            model = timm.create_model(name, pretrained=False, num_classes=CLASSES).eval()
        assert (required_input_size(model), default_cam_layer(model)) == (side, layer), name
    with torch.device("meta"):
        dynamic = timm.create_model("vit_tiny_patch16_224", pretrained=False, dynamic_img_size=True)
    assert required_input_size(dynamic) is None and patch_grid(dynamic) is None


def test_a_hugging_face_model_needs_its_configured_size_only_if_it_takes_no_other():
    assert required_input_size(_hf("ViTForImageClassification", "ViTConfig", **SMALL_VIT)) == 32
    swin = _hf(
        "SwinForImageClassification",
        "SwinConfig",
        image_size=32,
        patch_size=4,
        embed_dim=8,
        depths=[1, 1],
        num_heads=[1, 2],
        window_size=2,
    )
    assert required_input_size(swin) is None  # it pads: any size
    convnext = _hf(
        "ConvNextForImageClassification", "ConvNextConfig", num_stages=2, hidden_sizes=[8, 16], depths=[1, 1]
    )
    assert required_input_size(convnext) is None
    assert default_cam_layer(convnext) == "convnext.encoder.stages.1.layers.0"  # a CNN: the last spatial map
    assert default_cam_layer(swin) == hf_layer(swin)


# --- the automatic layer, and Grad-CAM through a loaded model ------------------------------


@pytest.mark.parametrize("name", MODELS)
def test_grad_cam_on_each_model_gives_a_map_of_the_image_s_size(built, name):
    module, side = model_of(built, name), MODELS[name][1]
    assert default_cam_layer(module) == expected_layer(name, module)
    result = get_technique("grad-cam").compute(loaded(module), pixels(side))
    assert result.layer == expected_layer(name, module)
    assert result.display.shape == (2, side, side) and torch.isfinite(result.display).all()
    assert (result.maps >= 0).all()


def hand_grad_cam(model: nn.Module, x: torch.Tensor, layer: str, prefix: int) -> torch.Tensor:
    """Grad-CAM written out on the token grid (``test_transformers``'), upsampled to the input."""
    cams = grid_grad_cam(model, x, layer, prefix)
    return F.interpolate(cams[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]


@pytest.mark.parametrize("name", ["timm-vit", "timm-deit-distilled", "timm-eva02", "hf-vit", "hf-deit"])
def test_grad_cam_on_a_vit_equals_the_hand_computation(built, name):
    module, side = model_of(built, name), MODELS[name][1]
    model, x = loaded(module), pixels(side)
    result = get_technique("grad-cam").compute(model, x)
    hand = hand_grad_cam(module, model.normalize(x), result.layer, prefix_tokens(module))
    assert hand.abs().max() > 0
    torch.testing.assert_close(result.display, hand, rtol=0, atol=1e-5 * float(hand.abs().max()))


def pytorch_grad_cam_map(model: nn.Module, x: torch.Tensor, layer: str, reshape, targets) -> np.ndarray:
    """pytorch-grad-cam's Grad-CAM at ``layer`` before its scaling and resizing (as
    tests/test_cam_references.py compares): its own forward, backward and ``get_cam_image``."""
    pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    module = model.get_submodule(layer)
    x = x.detach().clone().requires_grad_(True)
    wanted = [ClassifierOutputTarget(int(t)) for t in targets]
    with GradCAM(model=model, target_layers=[module], reshape_transform=reshape) as cam:
        outputs = cam.activations_and_grads(x)
        sum(target(output) for target, output in zip(wanted, outputs)).backward()
        activations = cam.activations_and_grads.activations[0].numpy()
        gradients = cam.activations_and_grads.gradients[0].numpy()
        return np.maximum(cam.get_cam_image(x, module, wanted, activations, gradients, False), 0)


def tokens_to_grid(prefix: int, side: int):
    """pytorch-grad-cam's ``reshape_transform`` for a ViT, with ``prefix`` leading tokens."""

    def reshape(tensor):
        return tensor[:, prefix:, :].reshape(tensor.size(0), side, side, tensor.size(2)).permute(0, 3, 1, 2)

    return reshape


@pytest.mark.parametrize(
    ("name", "reshape"),
    [
        ("timm-vit", tokens_to_grid(1, 4)),
        ("timm-deit-distilled", tokens_to_grid(2, 4)),
        ("timm-swin", lambda tensor: tensor.permute(0, 3, 1, 2)),  # channels-last
    ],
)
def test_grad_cam_equals_pytorch_grad_cam(built, name, reshape):
    module, side = model_of(built, name), MODELS[name][1]
    model, x, targets = loaded(module), pixels(side, count=3), torch.tensor([0, 1, 2])
    ours = get_technique("grad-cam").compute(model, x, targets)
    reference = pytorch_grad_cam_map(module, model.normalize(x), ours.layer, reshape, targets)
    assert np.abs(reference).max() > 0
    difference = np.abs(ours.maps.numpy().astype(np.float64) - reference).max()
    assert difference <= 1e-5 * np.abs(reference).max()


# --- a layer the user names: prefix tokens dropped, patches on the grid --------------------


def test_feature_maps_of_a_timm_vit_layer_are_channels_on_the_patch_grid(built):
    module = model_of(built, "timm-deit-distilled")  # a class and a distillation token
    x = pixels(32)
    kept = {}
    handle = module.get_submodule("blocks.0").register_forward_hook(lambda m, i, o: kept.__setitem__("tokens", o))
    with torch.no_grad():
        module(x)
    handle.remove()
    tokens = kept["tokens"]
    assert tokens.shape == (2, 2 + 16, 192)
    maps = feature_maps(module, x, ["blocks.0"])["blocks.0"]
    assert torch.equal(maps, tokens[:, 2:].reshape(2, 4, 4, 192).permute(0, 3, 1, 2))
    result = get_technique("feature-maps").compute(loaded(module), x, layer="blocks.0.mlp.fc2")
    assert result.maps.shape == (2, 192, 4, 4)


def test_register_tokens_are_dropped():
    module = _timm("vit_small_patch14_reg4_dinov2", depth=1, img_size=56, embed_dim=32, num_heads=2)
    assert module.num_prefix_tokens == 5 and patch_grid(module) == (4, 4)
    tokens = torch.randn(1, 5 + 16, 32)
    assert torch.equal(
        as_feature_map(tokens, module, "blocks.0"), tokens[:, 5:].reshape(1, 4, 4, 32).permute(0, 3, 1, 2)
    )
    maps = feature_maps(module, pixels(56, 1), ["blocks.0.norm1"])["blocks.0.norm1"]
    assert maps.shape == (1, 32, 4, 4)


def test_a_dynamic_size_timm_vit_lays_its_tokens_on_the_square_grid_of_its_input():
    module = _timm("vit_tiny_patch16_224", depth=1, patch_size=8, dynamic_img_size=True)
    assert required_input_size(module) is None
    for side in (32, 48):
        maps = feature_maps(module, pixels(side, 1), ["blocks.0"])["blocks.0"]
        assert maps.shape == (1, 192, side // 8, side // 8)


def test_timm_swin_layers_are_channels_last_except_its_convolution(built):
    module = model_of(built, "timm-swin")
    x = pixels(32)
    got = feature_maps(module, x, ["patch_embed.proj", "patch_embed", "layers.1", "norm"])
    assert got["patch_embed.proj"].shape == (2, 16, 8, 8)  # NCHW: kept
    assert got["patch_embed"].shape == (2, 16, 8, 8)  # (N, h, w, C): permuted
    assert got["layers.1"].shape == got["norm"].shape == (2, 32, 4, 4)


def test_a_convnext_block_s_channels_last_norm_and_mlp_are_permuted(built):
    module = model_of(built, "timm-convnext-atto")
    paths = ["stages.3.blocks.1.conv_dw", "stages.3.blocks.1.norm", "stages.3.blocks.1.mlp.fc1"]
    got = feature_maps(module, pixels(64, 1), paths)
    assert [tuple(got[p].shape) for p in paths] == [(1, 320, 2, 2), (1, 320, 2, 2), (1, 1280, 2, 2)]


@pytest.mark.parametrize("technique", ["grad-cam-plus-plus", "xgrad-cam", "hires-cam", "layer-cam", "eigen-cam"])
def test_every_cam_reads_a_named_layer_of_a_distilled_deit_on_its_grid(built, technique):
    module = model_of(built, "timm-deit-distilled")
    result = get_technique(technique).compute(loaded(module), pixels(32), layer="blocks.0")
    assert result.maps.shape == (2, 4, 4) and result.display.shape == (2, 32, 32)
    assert torch.isfinite(result.maps).all()


# --- a token model whose layer cannot be told ----------------------------------------------


class PatchesThenTokens(nn.Module):
    """A token model no rule knows: a patch embedding, then a token MLP."""

    def __init__(self):
        super().__init__()
        self.patch_embed = nn.Conv2d(3, 8, 8, stride=8)
        self.mix = nn.Linear(8, 8)
        self.head = nn.Linear(8, CLASSES)

    def forward(self, x):
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2)
        return self.head(self.mix(tokens).mean(1))


def test_a_token_model_of_unknown_layer_asks_for_one():
    with pytest.raises(CnnvisError, match=r"^cannot tell which layer of PatchesThenTokens .*give one with --layer"):
        default_cam_layer(PatchesThenTokens().eval())
    stranger = PatchesThenTokens().eval()
    stranger.num_prefix_tokens = 0  # says it is a timm-style token model, has no norm1
    with pytest.raises(CnnvisError, match="give one with --layer"):
        default_cam_layer(stranger)
    layer = get_technique("grad-cam").compute(loaded(PatchesThenTokens().eval()), pixels(32), layer="mix")
    assert layer.maps.shape == (2, 4, 4)


# --- logits_only ---------------------------------------------------------------------------


def test_logits_only_returns_the_logits_and_keeps_the_layers():
    torch.manual_seed(0)
    raw = transformers.ViTForImageClassification(transformers.ViTConfig(num_labels=CLASSES, **SMALL_VIT)).eval()
    x = pixels(32)
    with torch.no_grad():
        expected = raw(pixel_values=x).logits
    names = [name for name, _ in raw.named_modules()]
    model = logits_only(raw)
    assert model is raw and logits_only(model) is model and type(logits_only(model)) is type(model)
    assert isinstance(model, transformers.ViTForImageClassification)
    assert type(model).__name__ == "ViTForImageClassification"
    assert [name for name, _ in model.named_modules()] == names
    seen = []
    layer = hf_layer(model)
    handle = model.get_submodule(layer).register_forward_hook(lambda m, i, o: seen.append(o.shape))
    with torch.no_grad():
        got = model(x)
    handle.remove()
    assert torch.equal(got, expected) and seen == [(2, 1 + 16, 32)]
    with torch.no_grad():
        assert torch.equal(model(x, output_attentions=False), expected)  # its own keywords pass through

    twin = copy.deepcopy(model)
    assert type(twin) is type(model)
    with torch.no_grad():
        assert torch.equal(twin(x), expected)
        twin.classifier.weight.zero_()  # a deep copy owns its parameters
        assert not model.classifier.weight.eq(0).all()
    again = pickle.loads(pickle.dumps(model))
    assert type(again) is type(model)
    with torch.no_grad():
        assert torch.equal(again(x), expected)


def test_logits_only_leaves_a_tensor_output_alone():
    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, CLASSES)).eval()
    x = pixels(8, 1)
    with torch.no_grad():
        expected = module(x)
        assert torch.equal(logits_only(module)(x), expected)
    assert isinstance(module, nn.Sequential) and [name for name, _ in module.named_modules()][1] == "0"


def test_the_cascading_randomisation_reinitialises_a_deep_copy_of_a_wrapped_model(built):
    from cnnvis_tasks.mechanisms.faithfulness import cascade_stages, randomisation

    module = model_of(built, "hf-vit")
    x, layer = pixels(32), hf_layer(module)

    def maps(model):
        return class_activation_map(model, x, layer, torch.tensor([0, 1]), gradcam_weights).cams.flatten(1)

    rows = randomisation(maps, module, cascade_stages(module, 3))
    assert rows.shape == (3, 2) and torch.isfinite(rows).all()


# --- full size (slow) ----------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "reshape"),
    [
        ("vit_tiny_patch16_224", tokens_to_grid(1, 14)),
        ("deit_tiny_distilled_patch16_224", tokens_to_grid(2, 14)),
        ("swin_tiny_patch4_window7_224", lambda tensor: tensor.permute(0, 3, 1, 2)),
    ],
)
def test_full_size_timm_models_equal_pytorch_grad_cam(name, reshape):
    module = _timm(name)
    model, x, targets = loaded(module), pixels(224, count=2), torch.tensor([0, 2])
    ours = get_technique("grad-cam").compute(model, x, targets)
    assert ours.display.shape == (2, 224, 224)
    reference = pytorch_grad_cam_map(module, model.normalize(x), ours.layer, reshape, targets)
    difference = np.abs(ours.maps.numpy().astype(np.float64) - reference).max()
    assert difference <= 1e-5 * np.abs(reference).max()


@pytest.mark.slow
def test_grad_cam_on_a_timm_efficientnet():
    result = get_technique("grad-cam").compute(loaded(_timm("efficientnet_b0")), pixels(64))
    assert result.layer == "bn2.act" and result.display.shape == (2, 64, 64)
