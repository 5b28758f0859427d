"""XGrad-CAM against its formula by hand, and the conservation it is built for."""

import numpy as np
import torch
from test_cam import hand_activations_and_gradients, images, tiny_net
from torch import nn

from cnnvis_tasks.mechanisms.cam import class_activation_map
from cnnvis_tasks.techniques.xgrad_cam import xgrad_cam_weights


def test_xgrad_cam_equals_the_hand_formula():
    model = tiny_net(inplace=False)
    x = images(2, 16)
    targets = torch.tensor([3, 1])
    A, g = hand_activations_and_gradients(model, model[2], x, targets)
    a, d = A.double().numpy(), g.double().numpy()
    weights = np.array(
        [[(d[n, c] * a[n, c]).sum() / (a[n, c].sum() + 1e-7) for c in range(a.shape[1])] for n in range(a.shape[0])]
    )
    expected = torch.relu(torch.from_numpy((weights[:, :, None, None] * a).sum(axis=1))).float()
    result = class_activation_map(model, x, "2", targets, xgrad_cam_weights)
    assert expected.abs().sum() > 0
    torch.testing.assert_close(result.cams, expected, rtol=1e-5, atol=1e-6)


def test_conservation_for_a_linear_head():
    """With a global-average-pool and a linear head, the weights times the activations
    sum to the logit minus its bias (the conservation axiom)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 5, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 4)).eval()
    x = images(2, 12)
    targets = torch.tensor([0, 3])
    A, g = hand_activations_and_gradients(model, model[1], x, targets)
    weights = xgrad_cam_weights(A, g)
    total = (weights[:, :, None, None] * A).sum(dim=(1, 2, 3))
    logits = model(x)[torch.arange(2), targets] - model[4].bias[targets]
    torch.testing.assert_close(total, logits.detach(), rtol=1e-4, atol=1e-5)
