"""Score-CAM against its definition computed one masked image at a time, by hand."""

import pytest
import torch
import torch.nn.functional as F
from test_cam import images, tiny_net

from cnnvis_tasks.mechanisms.capture import feature_maps
from cnnvis_tasks.mechanisms.score_cam import score_cam
from cnnvis_tasks.models.loading import LoadedModel
from cnnvis_tasks.techniques.score_cam import TECHNIQUE


def net_with_a_dead_channel():
    """tiny_net with layer "3" (the ReLU after conv "2") given a channel that is zero everywhere."""
    model = tiny_net(inplace=False)
    with torch.no_grad():
        model[2].bias[1] = -1e3
    return model


def hand_score_cam(model, x, layer, targets):
    """Per image and channel: the channel upsampled (bilinear, corners aligned) to the
    image, min-max scaled, times the image, through the model alone; the softmax over
    channels of the target logits weighs the channels."""
    A = feature_maps(model, x, [layer])[layer]
    maps = []
    for n in range(x.shape[0]):
        scores = []
        for c in range(A.shape[1]):
            mask = F.interpolate(A[n, c][None, None], size=x.shape[-2:], mode="bilinear", align_corners=True)[0, 0]
            mask = (mask - mask.min()) / (mask.max() - mask.min() + 1e-8)
            with torch.no_grad():
                scores.append(model((x[n] * mask)[None])[0, targets[n]])
        weights = torch.softmax(torch.stack(scores), dim=0)
        maps.append(torch.relu((weights[:, None, None] * A[n]).sum(dim=0)))
    return torch.stack(maps)


@pytest.mark.parametrize("batch_size", [1, 4, 100])
def test_score_cam_equals_the_hand_loop(batch_size):
    model = net_with_a_dead_channel()
    x = images(3, 16)
    A = feature_maps(model, x, ["3"])["3"]
    assert A[:, 1].eq(0).all() and not A[:, 0].eq(0).all()  # the zero-image shortcut is exercised
    targets = torch.tensor([4, 0, 2])
    result = score_cam(model, x, "3", targets, batch_size)  # 4: batches mix images
    expected = hand_score_cam(model, x, "3", targets)
    assert expected.abs().sum() > 0
    torch.testing.assert_close(result.cams, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(result.targets, targets)


def test_top1_targets_and_the_logits_of_the_plain_images():
    model = tiny_net(inplace=False)
    x = images(2, 16)
    result = score_cam(model, x, "2", None, 8)
    with torch.no_grad():
        logits = model(x)
    torch.testing.assert_close(result.logits, logits)
    torch.testing.assert_close(result.targets, logits.argmax(dim=1))
    torch.testing.assert_close(result.cams, hand_score_cam(model, x, "2", result.targets), rtol=1e-5, atol=1e-6)


def test_no_forward_runs_more_than_the_batch_size():
    model = net_with_a_dead_channel()
    sizes = []
    handle = model.register_forward_pre_hook(lambda _module, inputs: sizes.append(inputs[0].shape[0]))
    try:
        score_cam(model, images(3, 16), "3", None, 4)
    finally:
        handle.remove()
    # the 3 images, one zero image for the dead channel, 3 x 5 live channels in batches of 4
    assert sizes == [3, 1, 4, 4, 4, 3]


def test_a_far_larger_image_goes_fewer_copies_per_forward():
    """A 96 x 19200 strip (a 4000 x 20 image at --size 96) is 18 times a 224 x 448 photo's
    pixels: its masked copies go one per forward, not 16; a photo's go 16 at a time."""
    model = tiny_net(inplace=False)
    sizes = []
    handle = model.register_forward_pre_hook(lambda _module, inputs: sizes.append(tuple(inputs[0].shape)))
    try:
        score_cam(model, images(1, 64), "2", None, 16)
        photo, sizes[:] = list(sizes), []
        score_cam(model, torch.rand(1, 3, 96, 19200), "2", None, 16)
    finally:
        handle.remove()
    assert [shape[0] for shape in photo] == [1, 6]  # the image, then its 6 channels' copies at once
    assert sizes[0] == (1, 3, 96, 19200) and [shape[0] for shape in sizes[1:]] == [1] * 6


def test_the_technique_reports_its_layer_class_and_probability():
    model = LoadedModel("tiny", tiny_net(inplace=False), (0.0,) * 3, (1.0,) * 3, None, "random", torch.device("cpu"))
    x = torch.rand(2, 3, 16, 16)
    result = TECHNIQUE.compute(model, x, torch.tensor([1, 3]), layer="2", batch_size=5)
    torch.testing.assert_close(result.maps, score_cam(model.module, x, "2", torch.tensor([1, 3]), 5).cams)
    assert result.layer == "2" and result.targets.tolist() == [1, 3] and result.display.shape == (2, 16, 16)
    probabilities = torch.softmax(model.module(x), dim=1)[[0, 1], [1, 3]]
    torch.testing.assert_close(result.probabilities, probabilities.detach())
    assert TECHNIQUE.shares_pass is None and not TECHNIQUE.option("batch_size").affects_results
