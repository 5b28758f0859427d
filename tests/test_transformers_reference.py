"""Grad-CAM on vision transformers against pytorch-grad-cam's GradCAM with the
``reshape_transform`` its documentation gives for ViT (class token dropped, tokens
on the patch grid, channels first), on seeded small torchvision models."""

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


def reference(model, x, layer, reshape, targets) -> torch.Tensor:
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    x = x.detach().clone().requires_grad_(True)  # parameters are frozen: its backward starts here
    with GradCAM(model=model, target_layers=[model.get_submodule(layer)], reshape_transform=reshape) as cam:
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
