"""Guided Grad-CAM against guided backpropagation and Grad-CAM computed by hand."""

import torch
import torch.nn.functional as F
from test_cam import hand_grad_cam, images, tiny_net
from torch import nn

from cnnvis_tasks.models.loading import LoadedModel
from cnnvis_tasks.techniques.guided_grad_cam import TECHNIQUE, guided_grad_cam


class HandGuidedReLU(torch.autograd.Function):
    """ReLU whose backward passes only positive gradients where the input was positive."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp_min(0)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * (x > 0) * (grad > 0)


def hand_guided_gradient(model, x, targets):
    """The tiny net's layers run one by one, each ReLU replaced by HandGuidedReLU."""
    x = x.clone().requires_grad_(True)
    out = x
    for module in model:
        out = HandGuidedReLU.apply(out) if isinstance(module, nn.ReLU) else module(out)
    out[torch.arange(len(targets)), targets].sum().backward()
    return x.grad


def test_guided_grad_cam_equals_the_hand_product():
    model = tiny_net(inplace=False)
    x = images(2, 16)
    targets = torch.tensor([3, 1])
    maps, cam = guided_grad_cam(model, x, "2", targets)
    grad_cam = hand_grad_cam(model, model[2], x, targets)
    upsampled = F.interpolate(grad_cam[:, None], size=(16, 16), mode="bilinear", align_corners=False)
    expected = hand_guided_gradient(model, x, targets) * upsampled
    assert expected.abs().sum() > 0 and (upsampled == 0).any()  # Grad-CAM's zeros cut the gradient
    torch.testing.assert_close(maps, expected, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(cam.cams, grad_cam)
    assert maps.shape == (2, 3, 16, 16) and (maps[upsampled.expand_as(maps) == 0] == 0).all()


def test_top1_is_the_class_of_both_factors():
    model = tiny_net(inplace=True)
    x = images(2, 16)
    maps, cam = guided_grad_cam(model, x, "2")
    with torch.no_grad():
        top1 = tiny_net(inplace=False)(x).argmax(dim=1)
    torch.testing.assert_close(cam.targets, top1)
    expected_maps, _ = guided_grad_cam(tiny_net(inplace=False), x, "2", top1)
    torch.testing.assert_close(maps, expected_maps)


def test_the_technique_renders_like_saliency_and_records_its_layer():
    model = LoadedModel("tiny", tiny_net(inplace=False), (0.0,) * 3, (1.0,) * 3, None, "random", torch.device("cpu"))
    x = torch.rand(2, 3, 16, 16)
    result = TECHNIQUE.compute(model, x, torch.tensor([0, 4]), layer="2")
    assert result.maps.shape == (2, 3, 16, 16) and result.facts == {"layer": "2"}
    host = result.to_host()
    rendered = TECHNIQUE.render(host, 1, ("color", "gray"), {})
    assert rendered.pictures["color"][0].shape == (16, 16, 3) and rendered.pictures["gray"][0].max() == 255
    assert [r.name for r in TECHNIQUE.renderings] == ["color", "gray"]
