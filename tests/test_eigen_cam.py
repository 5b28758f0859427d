"""Eigen-CAM against the principal component computed by hand, and what it shows."""

import numpy as np
import pytest
import torch
from test_cam import images, tiny_net

from cnnvis_tasks.mechanisms.capture import feature_maps
from cnnvis_tasks.mechanisms.shared_pass import shared_pass
from cnnvis_tasks.models.loading import LoadedModel
from cnnvis_tasks.techniques.eigen_cam import TECHNIQUE, eigen_cam_map


def hand_eigen_cam(A):
    """Per image in numpy float64: the centred (h*w, C) points, the eigenvector of their
    covariance with the largest eigenvalue, oriented so that its components sum >= 0,
    the points projected on it and ReLU'd."""
    maps = []
    for activation in A.double().numpy():
        c, h, w = activation.shape
        points = activation.reshape(c, h * w).T
        points = points - points.mean(axis=0)
        values, vectors = np.linalg.eigh(points.T @ points)
        axis = vectors[:, np.argmax(values)]
        axis = axis if axis.sum() >= 0 else -axis
        maps.append(np.maximum(points @ axis, 0).reshape(h, w))
    return torch.from_numpy(np.stack(maps)).float()


def tiny_model():
    return LoadedModel("tiny", tiny_net(inplace=False), (0.0,) * 3, (1.0,) * 3, None, "random", torch.device("cpu"))


def test_eigen_cam_equals_the_hand_principal_component():
    model = tiny_net(inplace=False)
    A = feature_maps(model, images(3, 16), ["2"])["2"]
    expected = hand_eigen_cam(A)
    assert expected.abs().sum() > 0 and (expected == 0).any()  # the ReLU cuts something
    torch.testing.assert_close(eigen_cam_map(A), expected, rtol=1e-5, atol=1e-6)


def test_one_pattern_in_every_channel_is_found_whatever_its_scale():
    """Channels that are one spatial pattern m times positive gains plus offsets have m
    (centred) as their only principal component: the map is relu(m - mean m) times |gains|."""
    torch.manual_seed(0)
    m = torch.randn(5, 7)
    gains, offsets = torch.rand(8) + 0.5, torch.randn(8)
    A = (gains[:, None, None] * m + offsets[:, None, None])[None]
    expected = torch.relu(m - m.mean()) * gains.norm()
    torch.testing.assert_close(eigen_cam_map(A)[0], expected, rtol=1e-5, atol=1e-6)
    # negative gains flip the axis: the orientation rule keeps the pattern the one whose gains sum > 0
    torch.testing.assert_close(eigen_cam_map(-A)[0], torch.relu(m.mean() - m) * gains.norm(), rtol=1e-5, atol=1e-6)


def test_constant_activations_give_a_zero_map_not_nan():
    maps = eigen_cam_map(torch.ones(2, 4, 3, 3))
    assert torch.equal(maps, torch.zeros(2, 3, 3))


def test_the_technique_has_no_class_and_a_shared_pass_gives_the_same_result():
    model, x = tiny_model(), torch.rand(2, 3, 16, 16)
    result = TECHNIQUE.compute(model, x, layer="2")
    torch.testing.assert_close(result.maps, eigen_cam_map(feature_maps(model.module, x, ["2"])["2"]))
    assert result.targets is None and result.probabilities is None and result.display.shape == (2, 16, 16)
    assert "target" not in [option.name for option in TECHNIQUE.options]
    assert TECHNIQUE.shares_pass({"layer": "2"}).features == ("2",)
    (features_only,) = shared_pass(model.module, x, ["2"], [])
    assert torch.equal(TECHNIQUE.from_pass(model, features_only, x, layer="2").maps, result.maps)


@pytest.mark.parametrize("size", [16, 20])
def test_batched_equals_one_by_one(size):
    A = feature_maps(tiny_net(inplace=False), images(3, size), ["2"])["2"]
    together = eigen_cam_map(A)
    for n in range(3):
        torch.testing.assert_close(together[n], eigen_cam_map(A[n : n + 1])[0])
