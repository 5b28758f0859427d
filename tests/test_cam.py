"""Grad-CAM against the formula computed by hand, and the automatic layer choice."""

import copy
import json

import pytest
import torch
import torchvision
from efficientnet_lite_pytorch import EfficientNet
from torch import nn

from cnnvis_tasks.errors import CnnvisError
from cnnvis_tasks.mechanisms import cam
from cnnvis_tasks.mechanisms.cam import default_cam_layer, traced_cam_layer, upsample_cam
from cnnvis_tasks.mechanisms.capture import feature_maps
from cnnvis_tasks.techniques.grad_cam import grad_cam


def hand_activations_and_gradients(model, module, images, targets):
    """The layer's output and the gradient of each image's target logit with respect
    to it, by hand: a plain forward hook makes the output a leaf tensor (same values
    downstream) whose ``.grad`` the backward pass fills."""
    kept = {}

    def hook(_module, _inputs, output):
        kept["A"] = output.detach().requires_grad_(True)
        return kept["A"]

    handle = module.register_forward_hook(hook)
    try:
        logits = model(images)
    finally:
        handle.remove()
    logits[torch.arange(len(targets)), targets].sum().backward()
    return kept["A"].detach(), kept["A"].grad


def hand_grad_cam(model, module, images, targets):
    A, dA = hand_activations_and_gradients(model, module, images, targets)
    alpha = dA.mean(dim=(2, 3))
    return torch.relu((alpha[:, :, None, None] * A).sum(dim=1))


def tiny_net(inplace):
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3),
        nn.ReLU(inplace=inplace),
        nn.Conv2d(4, 6, 3),  # "2": the Grad-CAM layer, followed by a ReLU
        nn.ReLU(inplace=inplace),
        nn.Conv2d(6, 8, 3),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 5),
    ).eval()


def no_hooks_left(model):
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


@pytest.fixture(scope="module")
def resnet18():
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None).eval()


def images(n, size=64, seed=1):
    torch.manual_seed(seed)
    return torch.randn(n, 3, size, size)


def test_tiny_net_equals_hand_formula():
    model = tiny_net(inplace=False)
    x = images(3, 16)
    result = grad_cam(model, x, "2")
    assert result.cams.shape == (3, 12, 12)
    assert result.layer == "2" and result.logits.shape == (3, 5)
    torch.testing.assert_close(result.targets, result.logits.argmax(dim=1))
    expected = hand_grad_cam(model, model[2], x, result.targets)
    assert expected.abs().sum() > 0
    torch.testing.assert_close(result.cams, expected)


def test_element_wise_weights_weigh_each_position():
    from cnnvis_tasks.mechanisms.cam import class_activation_map

    model = tiny_net(inplace=False)
    x = images(2, 16)
    targets = torch.tensor([1, 4])
    A, dA = hand_activations_and_gradients(model, model[2], x, targets)
    result = class_activation_map(model, x, "2", targets, lambda activations, gradients: gradients)
    expected = torch.relu((dA * A).sum(dim=1))
    assert expected.abs().sum() > 0 and not torch.allclose(expected, hand_grad_cam(model, model[2], x, targets))
    torch.testing.assert_close(result.cams, expected)


def test_resnet18_equals_hand_formula(resnet18):
    # reference on a copy without in-place ReLUs, so a plain hook sees the true output
    reference = copy.deepcopy(resnet18)
    for module in reference.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False
    x = images(2)
    targets = torch.tensor([3, 917])
    for layer in ["layer3", "layer4.1"]:
        result = grad_cam(resnet18, x, layer, targets)
        expected = hand_grad_cam(reference, reference.get_submodule(layer), x, targets)
        assert expected.abs().sum() > 0
        torch.testing.assert_close(result.cams, expected, rtol=1e-4, atol=1e-6)
    assert result.cams.shape == (2, 2, 2)
    torch.testing.assert_close(result.targets, targets)
    # no parameter .grad written, no hooks left
    assert all(p.grad is None for p in resnet18.parameters())
    assert no_hooks_left(resnet18)


def test_inplace_relu_after_layer():
    model = tiny_net(inplace=True)
    x = images(2, 16)
    with torch.no_grad():
        conv_out = model[2](torch.relu(model[0](x)))
    assert (conv_out < 0).any()

    # the bug the clone avoids: a plain hook's tensor is ReLU'd in place afterwards
    naive = {}
    handle = model[2].register_forward_hook(lambda m, i, o: naive.setdefault("A", o))
    with torch.no_grad():
        model(x)
    handle.remove()
    assert not (naive["A"] < 0).any()

    captured = feature_maps(model, x, ["2"])["2"]
    torch.testing.assert_close(captured, conv_out)

    result = grad_cam(model, x, "2", torch.tensor([1, 4]))
    reference = tiny_net(inplace=False)  # same seed, same weights
    expected = hand_grad_cam(reference, reference[2], x, torch.tensor([1, 4]))
    assert expected.abs().sum() > 0
    torch.testing.assert_close(result.cams, expected)


def test_batched_equals_single(resnet18):
    x = images(3)
    targets = torch.tensor([5, 100, 999])
    batched = grad_cam(resnet18, x, "layer3", targets)
    for i in range(3):
        single = grad_cam(resnet18, x[i : i + 1], "layer3", targets[i : i + 1])
        torch.testing.assert_close(batched.cams[i], single.cams[0], rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(batched.logits[i], single.logits[0], rtol=1e-4, atol=1e-5)
    # different targets give different maps for the same image
    other = grad_cam(resnet18, x[:1], "layer3", torch.tensor([6]))
    assert not torch.allclose(other.cams[0], batched.cams[0])


class FirstRow(nn.Module):
    def forward(self, logits):
        return logits[:1]


def test_target_validation():
    model = tiny_net(inplace=False)
    x = images(2, 16)
    with pytest.raises(CnnvisError, match=r"class index 7 .*0\.\.4"):
        grad_cam(model, x, "2", torch.tensor([0, 7]))
    with pytest.raises(CnnvisError, match=r"class index -2"):
        grad_cam(model, x, "2", torch.tensor([-2, 0]))
    top1 = grad_cam(model, x, "2").targets.tolist()
    assert grad_cam(model, x, "2", [None, 0]).targets.tolist() == [top1[0], 0]  # None: the image's top-1
    with pytest.raises(CnnvisError, match="3 target classes for 2 images"):
        grad_cam(model, x, "2", torch.tensor([0, 1, 2]))
    with pytest.raises(CnnvisError, match=r"'8'.*\(2, 5\)"):
        grad_cam(model, x, "8")
    with pytest.raises(CnnvisError, match="integer class indices, got dtype torch.float32"):
        grad_cam(model, x, "2", torch.tensor([0.0, 1.0]))
    assert grad_cam(model, x, "2", [3, 1]).targets.tolist() == [3, 1]  # any integer sequence
    with pytest.raises(CnnvisError, match=r"shape \(1, 5\), not class scores"):  # top-1, one row for 2 images
        grad_cam(nn.Sequential(model, FirstRow()), x, "0.2")
    assert no_hooks_left(model)


class SideBranch(nn.Module):
    """A layer whose output never reaches the logits."""

    def __init__(self):
        super().__init__()
        self.side = nn.Conv2d(3, 4, 3)
        self.main = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        self.side(x)
        return self.fc(self.main(x).mean(dim=(2, 3)))


def test_degenerate_layers_give_zero_maps():
    x = images(2, 16)
    result = grad_cam(SideBranch().eval(), x, "side")
    assert torch.equal(result.cams, torch.zeros(2, 14, 14))

    model = tiny_net(inplace=False)
    with torch.no_grad():
        model[2].bias.fill_(-1e4)  # the ReLU after the layer is dead: gradient all zero
    result = grad_cam(model, x, "2")
    assert torch.equal(result.cams, torch.zeros(2, 12, 12))
    up = upsample_cam(result.cams, (16, 16))
    assert torch.isfinite(up).all() and not up.any()


def test_frozen_parameters_still_work():
    model = tiny_net(inplace=False)
    expected = grad_cam(model, images(1, 16), "2", torch.tensor([2])).cams
    for p in model.parameters():
        p.requires_grad_(False)
    torch.testing.assert_close(grad_cam(model, images(1, 16), "2", torch.tensor([2])).cams, expected)


def test_upsample_cam():
    cams = torch.tensor([[[0.0, 3.0], [3.0, 6.0]]])
    up = upsample_cam(cams, (8, 6))
    assert up.shape == (1, 8, 6)
    assert up.min() == 0.0 and up.max() == 6.0  # not normalised
    torch.testing.assert_close(upsample_cam(torch.full((2, 3, 3), 2.5), (7, 7)), torch.full((2, 7, 7), 2.5))


@pytest.mark.parametrize(
    "name, expected",
    [
        ("vgg16", "features.29"),
        ("vgg19", "features.35"),
        ("resnet50", "layer4.2"),
        ("densenet121", "features.norm5"),
    ],
)
def test_default_cam_layer_torchvision(name, expected):
    with torch.device("meta"):
        model = torchvision.models.get_model(name, weights=None).eval()
    assert default_cam_layer(model) == expected
    assert no_hooks_left(model)


def test_default_cam_layer_efficientnet_lite0():
    torch.manual_seed(0)
    model = EfficientNet.from_name("efficientnet-lite0").eval()
    layer = default_cam_layer(model)
    # _swish (ReLU6) runs at the stem and at the head; its last call is the head
    assert layer == "_swish"
    x = images(1, 64)
    assert feature_maps(model, x, [layer])[layer].shape == (1, 1280, 2, 2)
    assert grad_cam(model, x, layer).cams.shape == (1, 2, 2)


def test_default_cam_layer_real_forward_fallback():
    class DataDependent(nn.Module):  # cannot run on the meta device
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(inplace=True), nn.MaxPool2d(2))
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            x = self.features(x)
            if x.sum() < 0:
                x = -x
            return self.fc(x.mean(dim=(2, 3)))

    model = DataDependent().eval()
    assert default_cam_layer(model, (16, 16)) == "features.1"
    assert no_hooks_left(model)


def _live_tensors() -> int:
    import gc
    import warnings

    gc.collect()
    with warnings.catch_warnings():  # isinstance() touches deprecated torch aliases
        warnings.simplefilter("ignore")
        return sum(1 for obj in gc.get_objects() if isinstance(obj, torch.Tensor))


def test_memory_stays_flat_over_many_batches():
    model = tiny_net(inplace=True)
    batch = images(4, size=16)
    kept = [grad_cam(model, batch, "2") for _ in range(3)]  # warm up, keep results alive
    before = _live_tensors()
    for _ in range(30):
        result = grad_cam(model, batch, "2")
        assert result.cams.grad_fn is None and result.logits.grad_fn is None
    del result
    assert _live_tensors() <= before
    assert no_hooks_left(model) and len(kept) == 3


def meta_model(name):
    with torch.device("meta"):
        return torchvision.models.get_model(name, weights=None).eval()


@pytest.fixture
def layer_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNVIS_CACHE", str(tmp_path))
    return tmp_path / "cam-layer"


def test_a_remembered_layer_costs_no_trace(layer_cache, monkeypatch):
    assert default_cam_layer(meta_model("resnet50")) == "layer4.2"
    assert len(list(layer_cache.glob("*.json"))) == 1

    def no_trace(*_args):
        raise AssertionError("traced although the layer is remembered")

    monkeypatch.setattr(cam, "meta_calls", no_trace)
    monkeypatch.setattr(cam, "device_calls", no_trace)
    monkeypatch.setattr("cnnvis_tasks.models.layers.copy.deepcopy", no_trace)
    torch.manual_seed(1)  # other weights, the same architecture
    assert default_cam_layer(torchvision.models.resnet50(weights=None).eval()) == "layer4.2"
    with pytest.raises(AssertionError, match="traced"):  # another input size is another question
        default_cam_layer(meta_model("resnet50"), (320, 320))


@pytest.mark.parametrize(
    "name, expected",
    [("vgg16", "features.29"), ("resnet50", "layer4.2"), ("densenet121", "features.norm5"), ("efficientnet", "_swish")],
)
def test_remembered_and_traced_layers_agree(layer_cache, name, expected):
    model = EfficientNet.from_name("efficientnet-lite0").eval() if name == "efficientnet" else meta_model(name)
    chosen = [default_cam_layer(model) for _ in range(2)]  # traced and kept, then read back
    assert chosen == [expected, expected] == [traced_cam_layer(model)] * 2
    assert len(list(layer_cache.glob("*.json"))) == 1
    assert no_hooks_left(model)


def test_the_remembered_layer_is_per_architecture(layer_cache):
    vgg = meta_model("vgg16")
    assert default_cam_layer(vgg) == "features.29"
    assert default_cam_layer(meta_model("vgg19")) == "features.35"
    assert default_cam_layer(vgg, (32, 32)) == "features.29"  # 2x2 there: a question of its own
    shorter = meta_model("vgg16")
    shorter.features = shorter.features[:23]  # ends at features.22, a ReLU
    shorter.classifier = nn.Identity()
    assert default_cam_layer(shorter) == "features.22"
    assert len(list(layer_cache.glob("*.json"))) == 4


def test_an_unreadable_or_stale_entry_is_traced_again(layer_cache):
    model = meta_model("vgg16")
    default_cam_layer(model)
    (entry,) = layer_cache.glob("*.json")
    for text in ("{not json", '{"key": "other", "layer": "features.0"}', json.dumps({"layer": "no.such"})):
        entry.write_text(text)
        assert default_cam_layer(model) == "features.29"
        assert json.loads(entry.read_text())["layer"] == "features.29"


def test_a_real_forward_choice_is_not_remembered(layer_cache):
    class DataDependent(nn.Module):  # cannot run on the meta device
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(inplace=True), nn.MaxPool2d(2))

        def forward(self, x):
            x = self.features(x)
            return -x if x.sum() < 0 else x

    assert default_cam_layer(DataDependent().eval(), (16, 16)) == "features.1"
    assert not layer_cache.exists() or not list(layer_cache.glob("*.json"))
