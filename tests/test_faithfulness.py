"""The faithfulness metrics (mechanisms/faithfulness.py and the modules it gathers) against
hand-computed numbers on hand-built models, and ROAD against pytorch-grad-cam's."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from cnnvis_tasks.mechanisms.localisation import localisation
from cnnvis_tasks.mechanisms.metric_maps import as_pixel_map, pixel_order, pixel_ranks
from cnnvis_tasks.mechanisms.model_randomisation import cascade_stages, randomisation, spearman
from cnnvis_tasks.mechanisms.perturbation_curves import curve_area, deletion_insertion, gaussian_blur, step_bounds
from cnnvis_tasks.mechanisms.road import NEIGHBOUR_WEIGHTS, impute_linear, removal_masks, road, road_combined

SIDE = 8


def linear_model(weights: torch.Tensor) -> nn.Module:
    """Two classes: logit 0 = <weights, x>, logit 1 = 0, so p(0) = sigmoid(<weights, x>)."""
    layer = nn.Linear(weights.numel(), 2, bias=False)
    with torch.no_grad():
        layer.weight.zero_()
        layer.weight[0] = weights.flatten()
    return nn.Sequential(nn.Flatten(), layer).eval()


def count_forwards(model: nn.Module) -> list[int]:
    calls = [0]
    model.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


@pytest.fixture
def linear_case():
    generator = torch.Generator().manual_seed(0)
    weights = torch.randn(3, SIDE, SIDE, generator=generator) * 0.3
    inputs = 0.5 + 0.5 * torch.rand(2, 3, SIDE, SIDE, generator=generator)
    return linear_model(weights), weights, inputs, torch.zeros(2, dtype=torch.long)


def test_curve_area_is_the_trapezoid_rule():
    x = torch.linspace(0, 1, 11, dtype=torch.float64)
    assert curve_area((1 - x)[None], x).item() == pytest.approx(0.5, abs=1e-15)
    # x^2 on 10 equal steps: 1/3 + h^2 / 6 (the trapezoid rule's error on a parabola)
    assert curve_area((x**2)[None], x).item() == pytest.approx(1 / 3 + 0.01 / 6, abs=1e-15)


def test_pixel_order_is_most_relevant_first_and_stable_on_ties():
    maps = torch.tensor([[[0.0, 2.0], [2.0, -1.0]], [[1.0, 1.0], [1.0, 1.0]]])
    assert pixel_order(maps).tolist() == [[1, 2, 0, 3], [0, 1, 2, 3]]
    assert pixel_ranks(pixel_order(maps)).tolist() == [[2, 0, 1, 3], [0, 1, 2, 3]]


def test_as_pixel_map_reduces_channels_and_upsamples():
    maps = torch.tensor([[[[1.0, -3.0]], [[-2.0, 1.0]]]])  # (1, 2, 1, 2)
    assert as_pixel_map(maps, (1, 2), "sum").tolist() == [[[-1.0, -2.0]]]
    assert as_pixel_map(maps, (1, 2), "abs_sum").tolist() == [[[3.0, 4.0]]]
    assert as_pixel_map(maps, (1, 2), "max_abs").tolist() == [[[2.0, 3.0]]]
    cam = torch.tensor([[[0.0, 1.0], [2.0, 3.0]]])
    up = as_pixel_map(cam, (4, 4))
    # bilinear, align_corners=False: the first row is 0, 0.25, 0.75, 1
    assert up[0, 0].tolist() == pytest.approx([0.0, 0.25, 0.75, 1.0])
    assert up[0, :, 0].tolist() == pytest.approx([0.0, 0.5, 1.5, 2.0])
    with pytest.raises(ValueError):
        as_pixel_map(maps, (1, 2), "mean")


def test_gaussian_blur_matches_scipy():
    from scipy.ndimage import gaussian_filter

    image = torch.rand(1, 3, 20, 17, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ours = gaussian_blur(image, sigma=5.0, size=11)
    # radius 5 = truncate * sigma; 'nearest' = the edge pixel repeated
    theirs = np.stack([gaussian_filter(c, sigma=5.0, truncate=1.0, mode="nearest") for c in image[0].numpy()])
    np.testing.assert_allclose(ours[0].numpy(), theirs, rtol=0, atol=1e-12)


def expected_curve(start_logit, gains, map_values, bounds) -> np.ndarray:
    """sigmoid of the logit after moving pixels in order of ``map_values``, each changing it by its gain."""
    order = np.argsort(-map_values, kind="stable")
    cumulative = np.concatenate([[0.0], np.cumsum(gains[order])])
    return 1 / (1 + np.exp(-(start_logit + cumulative[bounds])))


def test_deletion_and_insertion_curves_of_a_linear_model(linear_case):
    model, weights, inputs, targets = linear_case
    steps = 16
    maps = torch.rand(2, SIDE, SIDE, generator=torch.Generator().manual_seed(2))
    out = deletion_insertion(model, inputs, targets, maps, steps=steps, batch_size=5)
    bounds = np.array(step_bounds(SIDE * SIDE, steps))
    blurred = gaussian_blur(inputs)
    w = weights.double().numpy()
    for i in range(2):
        x, b, m = inputs[i].double().numpy(), blurred[i].double().numpy(), maps[i].double().numpy().ravel()
        contribution = (w * x).sum(axis=0).ravel()
        deletion = expected_curve(contribution.sum(), -contribution, m, bounds)
        insertion = expected_curve((w * b).sum(), (w * (x - b)).sum(axis=0).ravel(), m, bounds)
        np.testing.assert_allclose(out["deletion"][i].numpy(), deletion, atol=2e-6)
        np.testing.assert_allclose(out["insertion"][i].numpy(), insertion, atol=2e-6)
        fractions = bounds / (SIDE * SIDE)
        assert out["deletion_auc"][i].item() == pytest.approx(np.trapezoid(deletion, fractions), abs=2e-6)
        assert out["insertion_auc"][i].item() == pytest.approx(np.trapezoid(insertion, fractions), abs=2e-6)
    assert out["fractions"].tolist() == pytest.approx(list(np.linspace(0, 1, steps + 1)))


def test_the_true_map_and_its_reverse_bound_random_maps_from_both_sides(linear_case):
    """On a linear model the exact contribution of each pixel (the gradient times what
    moving the pixel changes) is the best possible order, and its reverse the worst:
    every random map's curve lies between them, step by step."""
    model, weights, inputs, targets = linear_case
    blurred = gaussian_blur(inputs)
    removal = (weights * inputs).sum(dim=1)  # what deleting (to 0) each pixel takes away
    insertion_gain = (weights * (inputs - blurred)).sum(dim=1)

    def curves(maps, kind):
        return deletion_insertion(model, inputs, targets, maps, steps=16)[kind]

    best_del, worst_del = curves(removal, "deletion"), curves(-removal, "deletion")
    best_ins, worst_ins = curves(insertion_gain, "insertion"), curves(-insertion_gain, "insertion")
    generator = torch.Generator().manual_seed(3)
    for _ in range(5):
        random_map = torch.rand(2, SIDE, SIDE, generator=generator)
        out = deletion_insertion(model, inputs, targets, random_map, steps=16)
        assert (best_del <= out["deletion"] + 1e-6).all() and (out["deletion"] <= worst_del + 1e-6).all()
        assert (worst_ins <= out["insertion"] + 1e-6).all() and (out["insertion"] <= best_ins + 1e-6).all()
        auc = curve_area
        f = out["fractions"]
        assert (auc(best_del, f) < out["deletion_auc"]).all() and (out["deletion_auc"] < auc(worst_del, f)).all()
        assert (auc(worst_ins, f) < out["insertion_auc"]).all() and (out["insertion_auc"] < auc(best_ins, f)).all()
    # and the scores tell them apart by a margin, not by rounding
    assert (curve_area(worst_del, f) - curve_area(best_del, f) > 0.1).all()


def test_deletion_insertion_batches_the_copies(linear_case):
    model, _, inputs, targets = linear_case
    maps = torch.rand(2, SIDE, SIDE, generator=torch.Generator().manual_seed(4))
    calls = count_forwards(model)
    results = {}
    for batch_size in (1, 7):
        calls[0] = 0
        results[batch_size] = deletion_insertion(model, inputs, targets, maps, steps=10, batch_size=batch_size)
        # 2 images x (deletion + insertion) x 11 points, less the three that need no copy of
        # their own: the image itself (deletion's first, insertion's last: one forward per
        # batch of images) and the fill (deletion's last: one forward of one image for all)
        assert calls[0] == math.ceil(2 / batch_size) + 1 + math.ceil(2 * (2 * 11 - 3) / batch_size)
    for key in ("deletion", "insertion", "deletion_auc", "insertion_auc"):
        torch.testing.assert_close(results[1][key], results[7][key], rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------------------- ROAD


@pytest.fixture(scope="module")
def small_resnet():
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    generator = torch.Generator().manual_seed(5)
    inputs = torch.randn(3, 3, 32, 32, generator=generator)
    # distinct values exactly representable in float32, as is 1 - value (pytorch-grad-cam's
    # least-relevant order flips the map that way): no ties for the two to break differently
    maps = torch.stack([torch.randperm(32 * 32, generator=generator).view(32, 32) / 1024.0 for _ in range(3)])
    with torch.no_grad():
        targets = model(inputs).argmax(1)
    return model, inputs, targets, maps


@pytest.mark.filterwarnings("ignore:__array_wrap__:DeprecationWarning")  # pytorch-grad-cam: np on tensors
def test_road_equals_pytorch_grad_cam_without_noise(small_resnet):
    from pytorch_grad_cam.metrics.perturbation_confidence import (
        PerturbationConfidenceMetric,
        RemoveLeastRelevantFirst,
        RemoveMostRelevantFirst,
    )
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model, inputs, targets, maps = small_resnet
    fractions = (0.1, 0.5, 0.9)
    classes = [ClassifierOutputTarget(int(t)) for t in targets]
    for order, removal in (("most", RemoveMostRelevantFirst), ("least", RemoveLeastRelevantFirst)):
        ours = road(model, inputs, targets, maps, fractions=fractions, order=order, noise=0.0, batch_size=4)
        theirs = np.stack(
            [
                PerturbationConfidenceMetric(removal(round(100 * (1 - f)), NoisyLinearImputer(noise=0.0)))(
                    inputs, maps.numpy(), classes, model
                )
                for f in fractions
            ],
            axis=1,
        )
        scale = np.abs(theirs).max()
        assert scale > 0.01
        np.testing.assert_allclose(ours["changes"].numpy(), theirs, rtol=1e-5, atol=1e-5 * scale)
        # no ties: the share removed is the grad-cam percentile's (1024 - ceil((1 - f) * 1023)) / 1024
        expected = [(1024 - math.ceil((1 - f) * 1023)) / 1024 for f in fractions]
        np.testing.assert_allclose(ours["removed"].numpy(), np.tile(expected, (3, 1)), atol=1e-7)
        assert ours["removed"][0].tolist() == pytest.approx([103 / 1024, 512 / 1024, 921 / 1024])


@pytest.mark.filterwarnings("ignore:__array_wrap__:DeprecationWarning")  # pytorch-grad-cam: np on tensors
def test_road_combined_equals_pytorch_grad_cam_with_seeded_noise(small_resnet):
    from pytorch_grad_cam.metrics.road import ROADCombined
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model, inputs, targets, maps = small_resnet
    percentiles = [10, 40, 70]
    fractions = [1 - p / 100 for p in percentiles]  # grad-cam's draw order: 90 % removed first
    image, target, cam = inputs[:1], targets[:1], maps[:1]
    torch.manual_seed(11)
    theirs = ROADCombined(percentiles)(image, cam.numpy(), [ClassifierOutputTarget(int(target))], model)
    ours = road_combined(model, image, target, cam, fractions=fractions, noise=0.01, seed=11)
    assert ours["combined"].item() == pytest.approx(float(theirs[0]), rel=1e-5, abs=1e-6)
    # the noise matters: another seed gives another number
    other = road_combined(model, image, target, cam, fractions=fractions, noise=0.01, seed=12)
    assert abs(other["combined"].item() - ours["combined"].item()) > 1e-5


def test_road_batches_the_copies_and_an_image_keeps_its_noise(small_resnet):
    model, inputs, targets, maps = small_resnet
    calls = count_forwards(model)
    results = {}
    for batch_size in (1, 7):
        calls[0] = 0
        results[batch_size] = road_combined(model, inputs, targets, maps, fractions=(0.2, 0.6), batch_size=batch_size)
        # 3 images x 2 orders x 2 fractions, plus the unperturbed images
        assert calls[0] == math.ceil(12 / batch_size) + math.ceil(3 / batch_size)
    for key in ("least", "most", "combined"):
        torch.testing.assert_close(results[1][key], results[7][key], rtol=1e-4, atol=1e-5)
    alone = road_combined(model, inputs[2:], targets[2:], maps[2:], fractions=(0.2, 0.6))
    torch.testing.assert_close(alone["most"], results[7]["most"][2:], rtol=1e-4, atol=1e-5)


def test_road_most_relevant_removal_hurts_a_linear_model_more_than_least(linear_case):
    model, weights, inputs, targets = linear_case
    contribution = (weights * inputs).sum(dim=1)
    out = road_combined(model, inputs, targets, contribution, noise=0.0, score="probability")
    assert (out["most"].mean(dim=1) < out["least"].mean(dim=1)).all()
    assert (out["combined"] > 0).all()


def test_imputation_is_the_weighted_mean_of_the_neighbours():
    image = np.random.default_rng(0).random((2, 6, 7))
    removed = np.zeros((6, 7), dtype=bool)
    removed[0, 0] = removed[2, 3] = removed[2, 4] = removed[5, 6] = True
    values = impute_linear(image, removed)
    filled = image.copy()
    filled[:, removed] = values
    for r, c in zip(*np.nonzero(removed)):
        total = weight = 0.0
        for (dr, dc), w in NEIGHBOUR_WEIGHTS:
            if 0 <= r + dr < 6 and 0 <= c + dc < 7:
                total, weight = total + w * filled[:, r + dr, c + dc], weight + w
        np.testing.assert_allclose(filled[:, r, c], total / weight, atol=1e-12)


def test_removal_masks_take_ties_together():
    maps = torch.tensor([[[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 2.0]]])
    assert removal_masks(maps, [0.25], "most")[0, 0].sum().item() == 2  # the two above the 0.75 quantile
    assert removal_masks(maps, [0.25], "least")[0, 0].sum().item() == 6  # every zero goes at once


# -------------------------------------------------------------- model randomisation


class TwoLayers(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.head = nn.Linear(4 * 6 * 6, 3)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).flatten(1))


def test_spearman_matches_scipy_with_ties():
    from scipy.stats import spearmanr

    generator = torch.Generator().manual_seed(6)
    a = torch.randint(0, 5, (3, 40), generator=generator).double()
    b = a + torch.randint(0, 3, (3, 40), generator=generator)
    ours = spearman(a, b)
    for i in range(3):
        assert ours[i].item() == pytest.approx(spearmanr(a[i], b[i]).statistic, abs=1e-12)


def test_randomisation_in_cascade():
    torch.manual_seed(0)
    model = TwoLayers().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    inputs = torch.randn(2, 1, 6, 6, generator=torch.Generator().manual_seed(7))
    rng_state = torch.random.get_rng_state()

    def conv_maps(m):  # depends on the conv alone: re-initialising the head changes nothing
        return torch.relu(m.conv(inputs)).sum(dim=1)

    def gradient_maps(m):
        x = inputs.clone().requires_grad_(True)
        m(x)[:, 0].sum().backward()
        return x.grad[:, 0]

    unchanged = randomisation(conv_maps, model, ["head", "conv"], seed=1)
    assert unchanged.shape == (2, 2)
    assert unchanged[0].tolist() == [1.0, 1.0]
    assert (unchanged[1] < 0.9).all()
    both = randomisation(gradient_maps, model, [["head"], ["conv"]], seed=1)
    assert (both < 0.9).all()
    # the same seed, the same numbers; the caller's model and the global generator untouched
    torch.testing.assert_close(randomisation(gradient_maps, model, ["head", "conv"], seed=1), both)
    # given the trained model's maps, it computes only the randomised ones
    calls = []
    counted = lambda m: calls.append(m) or gradient_maps(m)  # noqa: E731
    given = randomisation(counted, model, ["head", "conv"], seed=1, reference=gradient_maps(model))
    torch.testing.assert_close(given, both)
    assert len(calls) == 2 and all(m is not model for m in calls)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert torch.equal(torch.random.get_rng_state(), rng_state)
    with pytest.raises(ValueError, match="no parameters"):
        randomisation(lambda m: m(inputs), nn.Sequential(model, nn.ReLU()), ["1"])


def test_default_cascade_of_resnet18():
    import torchvision

    stages = cascade_stages(torchvision.models.resnet18(), count=5)
    assert stages == [
        ["fc"],
        ["layer4.1", "layer4.0", "layer3.1"],
        ["layer3.0", "layer2.1", "layer2.0"],
        ["layer1.1", "layer1.0"],
        ["bn1", "conv1"],
    ]
    assert cascade_stages(TwoLayers(), count=5) == [["head"], ["conv"]]


# ------------------------------------------------------------------- localisation


def test_localisation_share_of_positive_mass_in_the_box():
    maps = torch.zeros(3, 4, 6)
    maps[0, 1, 2] = 3.0  # inside
    maps[0, 3, 5] = 1.0  # outside
    maps[0, 0, 0] = -5.0  # negative: counts as nothing
    maps[1] = 1.0  # uniform: the box's share of the pixels
    boxes = torch.tensor([[2.0, 1.0, 4.0, 3.0], [0.0, 0.0, 3.0, 2.0], [0.0, 0.0, 6.0, 4.0]])
    share = localisation(maps, boxes)
    assert share[0].item() == pytest.approx(0.75)
    assert share[1].item() == pytest.approx(6 / 24)
    assert math.isnan(share[2].item())
    # the whole image holds everything; a pixel is in when its centre is
    assert localisation(maps[:2], torch.tensor([[0.0, 0.0, 6.0, 4.0]] * 2)).tolist() == [1.0, 1.0]
    assert localisation(maps[:1], torch.tensor([[2.4, 1.4, 2.6, 1.6]])).item() == pytest.approx(0.75)
    # boxes that touch share no pixel: the halves of a uniform map hold half each
    halves = localisation(maps[[1, 1]], torch.tensor([[0.0, 0.0, 3.0, 4.0], [3.0, 0.0, 6.0, 4.0]]))
    assert halves.tolist() == [0.5, 0.5]
    # a box between pixel centres holds no pixel: no share, not 0
    assert math.isnan(localisation(maps[1:2], torch.tensor([[2.6, 1.6, 2.9, 1.9]])).item())


def test_forward_only_copies_on_the_cpu_go_in_chunks_that_fit_the_caches(monkeypatch):
    from cnnvis_tasks.mechanisms.attribution import copies_per_forward

    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    photo = 224 * 224
    assert copies_per_forward(16, photo) == 16  # copies with a gradient: the batch size
    assert copies_per_forward(16, photo, "cpu", forward_only=True) == 4  # 2 threads x 2 photos
    assert copies_per_forward(16, photo, "cuda", forward_only=True) == 16  # a GPU: the batch size
    assert copies_per_forward(16, 2000 * 2000, "cpu", forward_only=True) == 1
    assert copies_per_forward(3, 32 * 32, "cpu", forward_only=True) == 3  # never more than the batch size
