"""Grad-CAM++ against the paper's formula (eq. 19 with powers of the gradient), by hand."""

import numpy as np
import torch
from test_cam import hand_activations_and_gradients, images, tiny_net

from cnnvis_tasks.mechanisms.cam import class_activation_map
from cnnvis_tasks.techniques.grad_cam_plus_plus import gradcam_plus_plus_weights


def hand_weights(A, g, eps=1e-6):
    """The weights in plain numpy, term by term."""
    A, g = A.double().numpy(), g.double().numpy()
    weights = np.zeros(A.shape[:2])
    for n in range(A.shape[0]):
        for c in range(A.shape[1]):
            total = A[n, c].sum()
            for i, j in np.ndindex(A.shape[2:]):
                if g[n, c, i, j] != 0:
                    alpha = g[n, c, i, j] ** 2 / (2 * g[n, c, i, j] ** 2 + total * g[n, c, i, j] ** 3 + eps)
                    weights[n, c] += max(g[n, c, i, j], 0.0) * alpha
    return torch.from_numpy(weights)


def test_grad_cam_plus_plus_equals_the_hand_formula():
    model = tiny_net(inplace=False)
    x = images(2, 16)
    targets = torch.tensor([2, 0])
    A, g = hand_activations_and_gradients(model, model[2], x, targets)
    expected_weights = hand_weights(A, g)
    torch.testing.assert_close(gradcam_plus_plus_weights(A, g).double(), expected_weights, rtol=1e-5, atol=1e-7)
    result = class_activation_map(model, x, "2", targets, gradcam_plus_plus_weights)
    expected = torch.relu((expected_weights[:, :, None, None] * A.double()).sum(dim=1)).float()
    assert expected.abs().sum() > 0
    torch.testing.assert_close(result.cams, expected, rtol=1e-5, atol=1e-6)


def test_zero_gradients_give_zero_weights_not_nan():
    A = torch.rand(1, 3, 4, 4)
    g = torch.zeros(1, 3, 4, 4)
    g[0, 1, 2, 2] = 0.5
    weights = gradcam_plus_plus_weights(A, g)
    assert torch.isfinite(weights).all() and weights[0, 0] == 0 and weights[0, 2] == 0 and weights[0, 1] > 0
