"""LayerCAM against its formula by hand."""

import torch
from test_cam import hand_activations_and_gradients, images, tiny_net

from cnnvis_tasks.mechanisms.cam import class_activation_map
from cnnvis_tasks.techniques.layer_cam import layer_cam_weights


def test_layer_cam_equals_the_hand_formula():
    model = tiny_net(inplace=False)
    x = images(2, 16)
    targets = torch.tensor([0, 3])
    A, g = hand_activations_and_gradients(model, model[2], x, targets)
    assert (g < 0).any() and (g > 0).any()  # the rectification matters here
    expected = torch.stack(
        [torch.relu(sum(torch.clamp(g[n, c], min=0) * A[n, c] for c in range(A.shape[1]))) for n in range(2)]
    )
    result = class_activation_map(model, x, "2", targets, layer_cam_weights)
    assert expected.abs().sum() > 0
    torch.testing.assert_close(result.cams, expected, rtol=1e-5, atol=1e-6)
    unrectified = torch.relu((g * A).sum(dim=1))
    assert not torch.allclose(result.cams, unrectified)
