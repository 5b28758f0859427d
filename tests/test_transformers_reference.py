"""The CAM family on vision transformers against pytorch-grad-cam with the
``reshape_transform`` its documentation gives for ViT (class token dropped, tokens
on the patch grid, channels first), on seeded small torchvision models: Grad-CAM on
ViT and Swin, every other CAM on ViT."""

from __future__ import annotations

import pytest
import torch
from test_transformers import CLASSES, loaded, pixels, tiny_swin, tiny_vit

import cnnvis_tasks as cv
from cnnvis_tasks.mechanisms.cam import upsample_cam

pytest.importorskip("pytorch_grad_cam")


def _minmax(maps: torch.Tensor) -> torch.Tensor:
    """Per map (m - min) / (max - min + 1e-7), as pytorch-grad-cam scales its maps."""
    flat = maps.flatten(1)
    flat = flat - flat.min(dim=1, keepdim=True).values
    return (flat / (flat.max(dim=1, keepdim=True).values + 1e-7)).view_as(maps)


def _as_pytorch_grad_cam_returns(cams: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Our layer-resolution maps scaled, upsampled and scaled again, as GradCAM returns them."""
    return _minmax(upsample_cam(_minmax(cams), size))


def vit_tokens_to_grid(tensor: torch.Tensor, side: int = 4) -> torch.Tensor:
    return tensor[:, 1:, :].reshape(tensor.size(0), side, side, tensor.size(2)).transpose(2, 3).transpose(1, 2)


def swin_channels_last_to_first(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.permute(0, 3, 1, 2)


def reference(model, x, layer, reshape, targets, method: str = "GradCAM") -> torch.Tensor:
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    x = x.detach().clone().requires_grad_(True)  # parameters are frozen: its backward starts here
    kind = getattr(pytorch_grad_cam, method)
    with kind(model=model, target_layers=[model.get_submodule(layer)], reshape_transform=reshape) as cam:
        return torch.from_numpy(cam(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in targets]))


@pytest.mark.parametrize(
    ("build", "reshape"),
    [(tiny_vit, vit_tokens_to_grid), (tiny_swin, swin_channels_last_to_first)],
    ids=["vit", "swin"],
)
def test_grad_cam_equals_pytorch_grad_cam(build, reshape):
    model = loaded(build(), "tiny")
    x = pixels(32, count=3)
    targets = [1, 4, CLASSES - 1]
    ours = cv.compute("grad-cam", model, x, targets)
    assert ours.maps.abs().flatten(1).max(1).values.min() > 0  # no map is all zero
    expected = reference(model.module, model.normalize(x), ours.layer, reshape, targets)
    got = _as_pytorch_grad_cam_returns(ours.maps, (32, 32))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5 * float(expected.abs().max()))


# Ours (a technique) and pytorch-grad-cam's class of the same definition.
FAMILY = {
    "grad-cam-plus-plus": "GradCAMPlusPlus",
    "xgrad-cam": "XGradCAM",
    "hires-cam": "HiResCAM",
    "layer-cam": "LayerCAM",
    "score-cam": "ScoreCAM",
}


@pytest.mark.parametrize("name", FAMILY)
def test_the_cam_family_on_a_vit_equals_pytorch_grad_cam(name):
    model = loaded(tiny_vit(), "tiny")
    x = pixels(32, count=3)
    targets = [1, 4, CLASSES - 1]
    ours = cv.compute(name, model, x, targets)
    assert ours.maps.abs().flatten(1).max(1).values.min() > 0
    expected = reference(model.module, model.normalize(x), ours.layer, vit_tokens_to_grid, targets, FAMILY[name])
    got = _as_pytorch_grad_cam_returns(ours.maps, (32, 32))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5 * float(expected.abs().max()))


def test_eigen_cam_on_a_vit_equals_pytorch_grad_cam_up_to_the_axis_sign():
    """pytorch-grad-cam keeps the principal axis LAPACK returns, we the one whose
    components sum to >= 0: each map is the reference's, or the reference's with the
    axis flipped (compared before both ReLUs, at the layer's 4 x 4 grid)."""
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

    model = loaded(tiny_vit(), "tiny")
    x = pixels(32, count=3)
    ours = cv.compute("eigen-cam", model, x)
    assert ours.layer.endswith("ln_1")
    activations = cv.compute("feature-maps", model, x, layer=ours.layer).maps
    projection = torch.from_numpy(get_2d_projection(activations.numpy()))
    for n in range(len(x)):
        scale = float(projection[n].abs().max())
        closest = min(float((ours.maps[n] - (sign * projection[n]).relu()).abs().max()) for sign in (1, -1))
        assert scale > 0 and closest <= 1e-5 * scale
