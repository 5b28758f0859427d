"""Capturing module outputs and feature maps, checked against plain forward passes."""

import pytest
import torch
import torchvision
from torch import nn

from cnnvis_tasks.errors import CnnvisError
from cnnvis_tasks.mechanisms import capture as activations
from cnnvis_tasks.mechanisms.capture import capture_outputs, feature_maps


def no_hooks_left(model):
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


@pytest.fixture(scope="module")
def resnet18():
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None).eval()


@pytest.fixture(scope="module")
def images():
    torch.manual_seed(1)
    return torch.randn(2, 3, 64, 64)


def stem(model, x):
    return model.maxpool(model.relu(model.bn1(model.conv1(x))))


class ReusedActivation(nn.Module):
    """One activation module called at the stem and at the head (like EfficientNet-Lite)."""

    def __init__(self, data_dependent=False):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3)
        self.head = nn.Conv2d(4, 6, 3)
        self.act = nn.Tanh()
        self.fc = nn.Linear(6, 5)
        self.data_dependent = data_dependent

    def forward(self, x):
        x = self.act(self.stem(x))
        if self.data_dependent and x.sum() > 1e9:  # cannot run on the meta device
            x = x * 2
        x = self.act(self.head(x))
        return self.fc(x.mean(dim=(2, 3)))


def test_several_layers_equal_plain_forward(resnet18, images):
    paths = ["conv1", "layer1.0.conv1", "layer2", "layer3.1.bn2"]
    maps = feature_maps(resnet18, images, paths)
    with torch.no_grad():
        s = stem(resnet18, images)
        l2 = resnet18.layer2(resnet18.layer1(s))
        block = resnet18.layer3[1]
        x = block.relu(block.bn1(block.conv1(resnet18.layer3[0](l2))))
        expected = {
            "conv1": resnet18.conv1(images),
            "layer1.0.conv1": resnet18.layer1[0].conv1(s),
            "layer2": l2,
            "layer3.1.bn2": block.bn2(block.conv2(x)),
        }
    assert list(maps) == paths
    for path in paths:
        torch.testing.assert_close(maps[path], expected[path], rtol=1e-5, atol=1e-5)
        assert maps[path].shape[0] == 2 and maps[path].dim() == 4
    # conv1 is followed by BN then an in-place ReLU: the recorded map keeps negatives
    assert (maps["conv1"] < 0).any()


def test_module_called_twice_gives_last_call(resnet18, images):
    # BasicBlock uses its one ReLU after bn1 and again after the residual add
    block = resnet18.layer1[0]
    with torch.no_grad():
        x = stem(resnet18, images)
        first = torch.relu(block.bn1(block.conv1(x)))
        last = torch.relu(block.bn2(block.conv2(first)) + x)
    got = feature_maps(resnet18, images, ["layer1.0.relu"])["layer1.0.relu"]
    torch.testing.assert_close(got, last)
    assert not torch.allclose(got, first)


def test_reused_top_level_module_gives_last_call():
    torch.manual_seed(0)
    model = ReusedActivation().eval()
    x = torch.randn(1, 3, 12, 12)
    with torch.no_grad():
        head = torch.tanh(model.head(torch.tanh(model.stem(x))))
    for _ in range(2):  # the first forward counts the calls, the second stops early
        got = feature_maps(model, x, ["act"])["act"]
        assert got.shape == (1, 6, 8, 8)
        torch.testing.assert_close(got, head)


def test_model_that_cannot_run_on_meta_still_gives_last_call():
    torch.manual_seed(0)
    model = ReusedActivation(data_dependent=True).eval()
    x = torch.randn(1, 3, 12, 12)
    for _ in range(2):
        got = feature_maps(model, x, ["act"])["act"]
        assert got.shape == (1, 6, 8, 8)
    assert no_hooks_left(model)


def test_early_stop_skips_later_modules(resnet18, images):
    calls = {"layer1.1": 0, "layer4": 0, "fc": 0}
    handles = [
        resnet18.get_submodule(name).register_forward_hook(
            lambda *_, name=name: calls.__setitem__(name, calls[name] + 1)
        )
        for name in calls
    ]
    activations._CALL_COUNTS.pop(resnet18, None)  # as if this model had never been seen
    try:
        feature_maps(resnet18, images, ["conv1"])  # the first forward of a shape counts calls
        assert calls == {"layer1.1": 1, "layer4": 1, "fc": 1}
        for name in ("layer1.0.relu", "layer4"):
            feature_maps(resnet18, images, [name])
        calls.update(dict.fromkeys(calls, 0))
        feature_maps(resnet18, images, ["conv1"])
        assert calls == {"layer1.1": 0, "layer4": 0, "fc": 0}
        # a ReLU called twice inside layer1.0: stops after its second call
        feature_maps(resnet18, images, ["layer1.0.relu"])
        assert calls == {"layer1.1": 0, "layer4": 0, "fc": 0}
        feature_maps(resnet18, images, ["layer4"])
        assert calls == {"layer1.1": 1, "layer4": 1, "fc": 0}
    finally:
        for handle in handles:
            handle.remove()


def test_capture_keeps_conv_output_before_inplace_relu():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(inplace=True), nn.Conv2d(4, 2, 3))
    x = torch.randn(1, 3, 10, 10)
    with torch.no_grad():
        expected = model[0](x)
        with capture_outputs(model, ["0"]) as out:
            y = model(x)
        torch.testing.assert_close(y, model[2](torch.relu(expected)))
    assert (out["0"] < 0).any()
    torch.testing.assert_close(out["0"], expected)


def test_non_feature_map_layer_is_an_error(resnet18, images):
    with pytest.raises(CnnvisError, match=r"'fc'.*\(2, 1000\)"):
        feature_maps(resnet18, images, ["fc"])
    with pytest.raises(CnnvisError, match="unknown layer"):
        feature_maps(resnet18, images, ["layer9"])
    assert no_hooks_left(resnet18)


def test_model_left_unchanged(resnet18, images):
    with torch.no_grad():
        before = resnet18(images)
    feature_maps(resnet18, images, ["layer1", "layer3.0.relu"])
    with pytest.raises(RuntimeError):  # the forward itself raises (wrong channels)
        with capture_outputs(resnet18, ["layer1", "fc"]):
            resnet18(torch.zeros(1, 5, 64, 64))
    with pytest.raises(ValueError):  # an error raised in the with-block
        with capture_outputs(resnet18, ["layer1"], stop_after_calls={"layer1": 1}):
            raise ValueError
    assert no_hooks_left(resnet18)
    with torch.no_grad():
        torch.testing.assert_close(resnet18(images), before, rtol=0, atol=0)
