"""HiResCAM against its formula by hand, and the faithfulness it is built for."""

import torch
from test_cam import hand_activations_and_gradients, images, tiny_net
from torch import nn

from cnnvis_tasks.mechanisms.cam import class_activation_map
from cnnvis_tasks.techniques.hires_cam import hires_cam_weights


def test_hires_cam_equals_the_hand_formula():
    model = tiny_net(inplace=False)
    x = images(2, 16)
    targets = torch.tensor([4, 2])
    A, g = hand_activations_and_gradients(model, model[2], x, targets)
    expected = torch.stack([torch.relu(sum(g[n, c] * A[n, c] for c in range(A.shape[1]))) for n in range(2)])
    result = class_activation_map(model, x, "2", targets, hires_cam_weights)
    assert expected.abs().sum() > 0
    torch.testing.assert_close(result.cams, expected, rtol=1e-5, atol=1e-6)


def test_the_unrectified_map_sums_to_the_score_under_a_linear_head():
    """Gradient times activation, summed over channels and positions, is the logit less
    its bias when a global-average-pool and a linear layer follow the layer."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 5, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 4)).eval()
    x = images(2, 12)
    targets = torch.tensor([1, 2])
    A, g = hand_activations_and_gradients(model, model[1], x, targets)
    total = (hires_cam_weights(A, g) * A).sum(dim=(1, 2, 3))
    torch.testing.assert_close(
        total, (model(x)[torch.arange(2), targets] - model[4].bias[targets]).detach(), rtol=1e-4, atol=1e-5
    )
