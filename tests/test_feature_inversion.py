"""Feature inversion: the loss against its formula by hand, recovery through invertible
layers, and the run's hygiene (seeds, batches, early stop, reports, errors)."""

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import CAT
from torch import nn

from cnnvis_tasks.cli import cli
from cnnvis_tasks.errors import CnnvisError
from cnnvis_tasks.io.outputs import read_metadata
from cnnvis_tasks.mechanisms.ascent import START_HIGH, START_LOW
from cnnvis_tasks.mechanisms.inversion import (
    alpha_norm,
    feature_inversion,
    pixel_bound,
    relative_error,
    total_variation,
)
from cnnvis_tasks.models.sources import IMAGENET_MEAN, IMAGENET_STD
from cnnvis_tasks.technique import Report

MEAN, STD = IMAGENET_MEAN, IMAGENET_STD


def invert(net, images, layer, **options):
    settings = {"mean": MEAN, "std": STD, "steps": 20, "lr": 0.05, "alpha_weight": 0.0, "tv_weight": 0.0}
    return feature_inversion(net, images, layer, **(settings | options))


def photo(n=1, h=16, w=20, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 0.2 + 0.6 * torch.rand(n, 3, h, w, generator=g)


def conv_net() -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Identity(),
            nn.Conv2d(3, 12, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(12, 16, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(16, 5),
        ).eval()


# --- the loss ------------------------------------------------------------------------


def test_the_terms_match_their_formulas_by_hand():
    features = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]], [[[0.0, 0.0], [0.0, 0.0]]]])
    target = torch.tensor([[[[1.0, 0.0], [3.0, 2.0]]], [[[1.0, 1.0], [1.0, 1.0]]]])
    # ||f - t||^2 / ||t||^2: (0 + 4 + 0 + 4) / (1 + 0 + 9 + 4) and 4 / 4
    torch.testing.assert_close(relative_error(features, target), torch.tensor([8 / 14, 1.0]))

    x = torch.tensor([[[[0.0, 1.0, 3.0], [2.0, 2.0, -1.0]]]])  # one channel, 2 x 3
    # positions with a right and a lower neighbour: (0,0) and (0,1)
    # (0,0): dx = 1, dy = 2 -> 5;  (0,1): dx = 2, dy = 1 -> 5
    torch.testing.assert_close(total_variation(x, 1.0), torch.tensor([5.0]))
    torch.testing.assert_close(total_variation(x, 2.0), torch.tensor([5.0 / 4]))  # in units of B = 2
    torch.testing.assert_close(total_variation(x, 1.0, beta=1.0), torch.tensor([5**0.5]), rtol=1e-5, atol=0)
    torch.testing.assert_close(alpha_norm(x, 2.0), torch.tensor([(0 + 0.5**6 + 1.5**6 + 1 + 1 + 0.5**6) / 6]))
    # ImageNet's normalisation: blue at 1.0 is the largest, (1 - 0.406) / 0.225
    assert pixel_bound(MEAN, STD) == pytest.approx((1 - 0.406) / 0.225, rel=1e-6)


def test_the_start_loss_is_the_formula_on_the_seeded_start():
    x0 = photo()
    seed, alpha_weight, tv_weight = 5, 0.3, 0.7
    result = invert(
        conv_net(), x0, "0", steps=1, robust=False, seed=seed, alpha_weight=alpha_weight, tv_weight=tv_weight
    )
    # plain mode starts from the seed's uniform draw in [140, 180] / 255
    start = torch.rand(1, 3, 16, 20, generator=torch.Generator().manual_seed(seed))
    start = START_LOW + (START_HIGH - START_LOW) * start
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    x, target = (start - mean) / std, (x0 - mean) / std  # layer "0" is the identity
    bound = (1 - 0.406) / 0.225
    dx, dy = (x[..., :-1, 1:] - x[..., :-1, :-1]) / bound, (x[..., 1:, :-1] - x[..., :-1, :-1]) / bound
    expected = (
        (x - target).pow(2).sum() / target.pow(2).sum()
        + alpha_weight * (x / bound).abs().pow(6).mean()
        + tv_weight * (dx**2 + dy**2).mean()
    )
    assert expected > 0.1
    torch.testing.assert_close(result.loss_start, expected.reshape(1), rtol=1e-5, atol=0)


# --- recovery ------------------------------------------------------------------------


@pytest.mark.parametrize("layer", ["0", "1"])  # the identity, and a linear conv with 12 > 3 channels
def test_an_invertible_layer_gives_the_image_back(layer):
    x0 = photo()
    result = invert(conv_net(), x0, layer, steps=150, robust=False)
    assert result.loss_start.item() > 0.05
    assert result.relative_error.item() < 2e-3
    assert (result.images - x0).abs().mean() < 0.02  # the start is 0.15 away on average


def test_a_layer_after_a_relu_and_a_stride_keeps_less():
    """Through the ReLU and the strided conv the same steps leave a larger error than the identity."""
    x0 = photo()
    identity = invert(conv_net(), x0, "0", steps=40, robust=False)
    deep = invert(conv_net(), x0, "4", steps=40, robust=False)
    assert deep.relative_error.item() > 2 * identity.relative_error.item()


@pytest.mark.parametrize("robust", [False, True])
def test_the_error_falls_with_the_steps(robust):
    x0 = photo(h=24, w=24)
    errors = [invert(conv_net(), x0, "2", steps=steps, robust=robust).relative_error.item() for steps in (0, 5, 30)]
    # plain: 0.54, 0.29, 0.05; robust (the Fourier image starts slower): 0.65, 0.51, 0.22
    assert errors[0] > 1.2 * errors[1] and errors[1] > 2 * errors[2] > 0


def test_regularisers_smooth_the_result():
    x0 = photo(h=24, w=24)
    loose = invert(conv_net(), x0, "4", steps=40, robust=False)
    smooth = invert(conv_net(), x0, "4", steps=40, robust=False, tv_weight=5.0)
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)

    def tv(result):
        return total_variation((result.images - mean) / std, pixel_bound(MEAN, STD))

    assert tv(smooth).item() < 0.7 * tv(loose).item()


# --- hygiene -------------------------------------------------------------------------


@pytest.mark.parametrize("robust", [False, True])
def test_seeded_runs_repeat_and_other_seeds_differ(robust):
    x0 = photo()

    def run(seed):
        return invert(conv_net(), x0, "2", steps=8, robust=robust, seed=seed).images

    first = run(1)
    assert torch.equal(first, run(1))
    assert (first - run(2)).abs().max() > 1e-3


@pytest.mark.parametrize("robust", [False, True])
def test_a_batch_equals_separate_runs(robust):
    images = photo(2)
    options = {"steps": 8, "robust": robust, "seed": 3, "tv_weight": 0.5, "alpha_weight": 0.1}
    both = invert(conv_net(), images, "2", **options)
    for i in range(2):
        one = invert(conv_net(), images[i : i + 1], "2", **options)
        torch.testing.assert_close(both.images[i : i + 1], one.images, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(both.relative_error[i : i + 1], one.relative_error, rtol=1e-4, atol=1e-6)


class Tail(nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return x


def test_only_the_first_forward_runs_past_the_layer_and_the_model_is_untouched():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), Tail())
    before = [p.clone() for p in net.parameters()]
    invert(net, photo(), "1", steps=5, robust=True)
    assert net[2].calls == 1  # the photo's forward counts the calls; the 5 + 5 + 2 after it stop early
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))
    assert all(p.requires_grad and p.grad is None for p in net.parameters())


class Recorder(Report):
    def __init__(self, save_every=0):
        self.save_every, self.steps, self.snapshots = save_every, [], []

    def step(self, step, total, objective, stage=""):
        self.steps.append((step, total, float(objective), stage))

    def snapshot(self, step, pixels):
        self.snapshots.append((step, pixels.shape))


def test_steps_and_snapshots_are_reported():
    report = Recorder(save_every=4)
    result = invert(conv_net(), photo(2), "2", steps=9, report=report)
    assert [s[0] for s in report.steps] == list(range(1, 10)) and {s[1] for s in report.steps} == {9}
    assert {s[3] for s in report.steps} == {"feature inversion"}
    assert report.snapshots == [(4, (2, 3, 16, 20)), (8, (2, 3, 16, 20))]
    assert result.steps == 9 and result.images.min() >= 0 and result.images.max() <= 1


def test_a_layer_that_does_not_exist_is_a_clear_error():
    with pytest.raises(CnnvisError, match=r"unknown layer.*'9'"):
        invert(conv_net(), photo(), "9", steps=1)


# --- the command ---------------------------------------------------------------------


def test_the_command_writes_the_picture_raw_and_the_error(tmp_path):
    args = ["feature-inversion", "--image", str(CAT), "--layer", "_blocks.1", "--layer", "_blocks.4"]
    args += ["--steps", "3", "--size", "48", "--threads", "1", "--quiet", "--out-dir", str(tmp_path)]
    args += ["--name", "{stem}-{layer}.{ext}", "--rendering", "picture", "--rendering", "raw"]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    facts = read_metadata(tmp_path / "chelsea-_blocks.4.png")
    assert facts["layer"] == "_blocks.4" and facts["steps"] == 3 and facts["robust"] is True
    assert facts["tv_weight"] == 2.0 and facts["alpha_weight"] == 0.1
    assert 0 < facts["relative_error"] <= facts["loss_end"] < facts["loss_start"]
    raw = np.load(tmp_path / "chelsea-_blocks.1.npy")
    assert raw.shape == (3, 48, 72) and raw.min() >= 0 and raw.max() <= 1

    bad = CliRunner().invoke(cli, [*args[:3], "--layer", "_blocks.99", *args[7:]])  # args[3:7]: the good layers
    assert bad.exit_code != 0 and "_blocks.99" in bad.output and "Traceback" not in bad.output
