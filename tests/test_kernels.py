"""Raw convolution weights by layer path or by the seed's parameter numbering."""

import pytest
import torch
import torchvision
from torch import nn

from cnnvis_tasks.errors import CnnvisError
from cnnvis_tasks.mechanisms.kernels import kernel_weights


@pytest.mark.parametrize(
    "name, index, parameter, shape",
    [  # the seed's gallery rows
        ("alexnet", 0, "features.0.weight", (64, 3, 11, 11)),
        ("alexnet", 6, "features.8.weight", (256, 384, 3, 3)),
        ("resnet50", 0, "conv1.weight", (64, 3, 7, 7)),
        ("resnet50", 18, "layer1.1.conv2.weight", (64, 64, 3, 3)),
        ("densenet121", 0, "features.conv0.weight", (64, 3, 7, 7)),
        ("densenet121", 26, "features.denseblock1.denselayer4.conv2.weight", (32, 128, 3, 3)),
    ],
)
def test_seed_gallery_indices_are_conv_weights(name, index, parameter, shape):
    with torch.device("meta"):
        model = torchvision.models.get_model(name, weights=None)
    result = kernel_weights(model, parameter_index=index)
    assert result.name == parameter
    assert tuple(result.weights.shape) == shape
    assert isinstance(model.get_submodule(parameter.rsplit(".", 1)[0]), nn.Conv2d)


def small_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 5))


def test_by_layer_and_by_index_agree():
    model = small_net()
    by_layer = kernel_weights(model, layer="3")
    by_index = kernel_weights(model, parameter_index=4)  # 0.w 0.b 1.w 1.b 3.w
    assert by_layer.name == by_index.name == "3.weight"
    assert torch.equal(by_layer.weights, model[3].weight)
    assert by_layer.weights.shape == (2, 4, 5, 5)
    assert not by_layer.weights.requires_grad


def test_errors():
    model = small_net()
    with pytest.raises(CnnvisError, match="exactly one"):
        kernel_weights(model)
    with pytest.raises(CnnvisError, match="exactly one"):
        kernel_weights(model, layer="0", parameter_index=0)
    with pytest.raises(CnnvisError, match=r"parameter 2 is '1.weight' of shape \(4,\).*indices 0, 4"):
        kernel_weights(model, parameter_index=2)
    with pytest.raises(CnnvisError, match=r"out of range 0\.\.5.*indices 0, 4"):
        kernel_weights(model, parameter_index=6)
    with pytest.raises(CnnvisError, match=r"out of range"):
        kernel_weights(model, parameter_index=-1)
    with pytest.raises(CnnvisError, match=r"layer '1' has a weight of shape \(4,\)"):
        kernel_weights(model, layer="1")
    with pytest.raises(CnnvisError, match=r"layer '2' has no weight"):
        kernel_weights(model, layer="2")
    with pytest.raises(CnnvisError, match="unknown layer"):
        kernel_weights(model, layer="7")
