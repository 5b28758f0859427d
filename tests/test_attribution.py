"""The attribution wrappers (cnnvis_tasks.mechanisms.attribution) against hand
formulas and independent computations, and their techniques end to end."""

import numpy as np
import pytest
import torch
from test_backprop import _tiny_net
from torch import nn

from cnnvis_tasks import api
from cnnvis_tasks.mechanisms.attribution import (
    completeness_error,
    gradient_x_input,
    integrated_gradients,
    occlusion,
    path_points,
    rule_gradient,
    smooth_grad,
    target_scores,
)
from cnnvis_tasks.mechanisms.relu_rules import saliency


class Squares(nn.Module):
    """logit c = (w_c . x)^2: Integrated Gradients from 0 is x * (w_c . x) * w_c exactly."""

    def __init__(self, weight):
        super().__init__()
        self.weight = nn.Parameter(weight, requires_grad=False)

    def forward(self, x):
        return (x.flatten(1) @ self.weight.T) ** 2


def smooth_net():
    torch.manual_seed(0)
    return (
        nn.Sequential(
            nn.Conv2d(3, 4, 3),
            nn.Tanh(),
            nn.Conv2d(4, 4, 3, stride=2),
            nn.Softplus(),
            nn.AdaptiveAvgPool2d(3),
            nn.Flatten(),
            nn.Linear(4 * 3 * 3, 5),
        )
        .double()
        .eval()
    )


def plain_gradient(model, x, targets):
    x = x.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(x).gather(1, targets[:, None]).sum(), x)
    return grad


def test_gradient_x_input_is_the_input_times_each_rules_gradient():
    net = _tiny_net()
    x = torch.tensor([1.0, 2.0, -1.0]).view(1, 3, 1, 1)
    hand = {"vanilla": [-2.0, 1.0, 5.0], "guided": [0.0, 3.0, 3.0], "deconv": [2.0, 1.0, 3.0]}  # test_backprop's
    for method, gradient in hand.items():
        result = gradient_x_input(rule_gradient(net, method), x, torch.tensor([0]))
        np.testing.assert_allclose(result.view(3).numpy(), np.array([1.0, 2.0, -1.0]) * gradient, atol=1e-6)


def test_integrated_gradients_equals_the_closed_form_for_a_quadratic_score():
    torch.manual_seed(0)
    weight = torch.randn(4, 12, dtype=torch.float64)
    model = Squares(weight).eval()
    x = torch.randn(3, 3, 2, 2, dtype=torch.float64)
    targets = torch.tensor([0, 3, 1])
    w = weight[targets]
    expected = x.flatten(1) * (x.flatten(1) * w).sum(1, keepdim=True) * w  # the path integral, exactly
    for steps, rule in [(1, "gausslegendre"), (3, "gausslegendre"), (2, "trapezoid"), (7, "trapezoid")]:
        result = integrated_gradients(
            rule_gradient(model), x, torch.zeros_like(x), targets, steps=steps, rule=rule, batch_size=2
        )
        torch.testing.assert_close(result.flatten(1), expected, rtol=1e-10, atol=1e-12)
        # completeness holds exactly here: the attributions sum to f(x) - f(0)
        scores = target_scores(model, x, targets)
        error, _ = completeness_error(result, scores, torch.zeros(3, dtype=torch.float64))
        assert error.max() < 1e-4 * scores.abs().max()


def test_integrated_gradients_equals_a_fine_independent_quadrature():
    model = smooth_net()
    x, baseline = torch.randn(2, 3, 9, 9, dtype=torch.float64), torch.randn(2, 3, 9, 9, dtype=torch.float64)
    targets = torch.tensor([1, 4])
    # Simpson's rule on 201 points, every gradient by plain autograd in one batch
    alphas = torch.linspace(0, 1, 201, dtype=torch.float64).view(-1, 1, 1, 1, 1)
    simpson = torch.ones(201, dtype=torch.float64)
    simpson[1:-1:2], simpson[2:-1:2] = 4, 2
    points = (baseline + alphas * (x - baseline)).flatten(0, 1)
    grads = plain_gradient(model, points, targets.repeat(201)).view(201, *x.shape)
    total = (grads * (simpson / 600).view(-1, 1, 1, 1, 1)).sum(0)
    expected = (x - baseline) * total
    ours = integrated_gradients(rule_gradient(model), x, baseline, targets, steps=24, batch_size=7)
    assert expected.abs().max() > 0
    torch.testing.assert_close(ours, expected, rtol=1e-6, atol=1e-9 * expected.abs().max().item())


@pytest.mark.parametrize(("rule", "steps"), [("gausslegendre", (1, 2, 4, 8)), ("trapezoid", (2, 4, 16, 64))])
def test_the_completeness_error_falls_as_steps_rise(rule, steps):
    model = smooth_net()
    torch.manual_seed(3)
    x = 3 * torch.randn(2, 3, 9, 9, dtype=torch.float64)
    baseline = torch.zeros_like(x)
    targets = torch.tensor([0, 2])
    scores, baseline_scores = target_scores(model, x, targets), target_scores(model, baseline, targets)
    errors = []
    for count in steps:
        attributions = integrated_gradients(rule_gradient(model), x, baseline, targets, steps=count, rule=rule)
        errors.append(completeness_error(attributions, scores, baseline_scores)[0])
    errors = torch.stack(errors)
    assert (errors[1:] < errors[:-1]).all(), errors
    assert (errors[-1] < 1e-3 * errors[0]).all(), errors


def test_integration_nodes_and_weights():
    alphas, weights = path_points(2)
    np.testing.assert_allclose(alphas, [0.5 - 0.5 / np.sqrt(3), 0.5 + 0.5 / np.sqrt(3)])
    np.testing.assert_allclose(weights, [0.5, 0.5])
    alphas, weights = path_points(5, "trapezoid")
    np.testing.assert_allclose(alphas, [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(weights, [0.125, 0.25, 0.25, 0.25, 0.125])
    with pytest.raises(ValueError, match="2 steps"):
        path_points(1, "trapezoid")


def base_of(gradient):
    return lambda inputs, targets, _owners: gradient(inputs, targets)


def test_smooth_grad_with_no_noise_is_its_base():
    net = _tiny_net()
    x = torch.randn(3, 3, 1, 1)
    targets = torch.tensor([0, 1, 0])
    for method in ("vanilla", "guided", "deconv"):
        gradient = rule_gradient(net, method)
        smoothed = smooth_grad(base_of(gradient), x, targets, samples=5, noise=0.0, batch_size=4)
        torch.testing.assert_close(smoothed, gradient(x, targets), rtol=1e-6, atol=1e-7)
        squared = smooth_grad(base_of(gradient), x, targets, samples=5, noise=0.0, squared=True, batch_size=4)
        torch.testing.assert_close(squared, gradient(x, targets) ** 2, rtol=1e-6, atol=1e-7)


def test_smooth_grad_averages_over_the_seeded_noise():
    """The mean over x + noise * (max - min) * z, z the seeded generator's standard normal draws."""
    model = smooth_net().float()
    x = torch.randn(2, 3, 12, 12)  # 432 values a copy: a multiple of 16, so one draw of all samples is the same
    targets = torch.tensor([3, 1])
    samples, noise, seed = 6, 0.2, 11
    torch.manual_seed(seed)
    draws = torch.randn(samples, 3, 12, 12)
    for squared in (False, True):
        expected = []
        for i in range(2):
            spread = noise * (x[i].max() - x[i].min())
            grads = plain_gradient(model, x[i] + spread * draws, targets[i].repeat(samples))
            expected.append((grads**2 if squared else grads).mean(0))
        for batch_size in (1, 4, 12):
            ours = smooth_grad(
                base_of(rule_gradient(model)),
                x,
                targets,
                samples=samples,
                noise=noise,
                squared=squared,
                seed=seed,
                batch_size=batch_size,
            )
            torch.testing.assert_close(ours, torch.stack(expected), rtol=1e-5, atol=1e-7)


def test_smooth_grad_is_reproducible_and_follows_its_seed():
    model = smooth_net().float()
    x, targets = torch.randn(2, 3, 9, 9), torch.tensor([0, 1])
    base = base_of(rule_gradient(model))
    first = smooth_grad(base, x, targets, samples=4, seed=1)
    torch.testing.assert_close(smooth_grad(base, x, targets, samples=4, seed=1), first, rtol=0, atol=0)
    assert not torch.allclose(smooth_grad(base, x, targets, samples=4, seed=2), first)
    # an image's result does not depend on the others in its batch
    torch.testing.assert_close(smooth_grad(base, x[1:], targets[1:], samples=4, seed=1), first[1:], rtol=1e-6, atol=0)


class Linear(nn.Module):
    def __init__(self, weight, bias):
        super().__init__()
        self.weight, self.bias = weight, bias

    def forward(self, x):
        return x.flatten(1) @ self.weight.flatten(1).T + self.bias


@pytest.mark.parametrize(("patch", "stride"), [(4, 4), (4, 2), (3, 2), (5, 3)])
def test_occlusion_of_a_linear_model_is_the_mean_patch_contribution(patch, stride):
    """For a linear score, covering a window drops it by sum over the window of w * (x - fill)."""
    torch.manual_seed(0)
    height, width = 8, 10
    weight, bias = torch.randn(3, 3, height, width, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    x = torch.randn(2, 3, height, width, dtype=torch.float64)
    targets = torch.tensor([2, 0])
    fill = 0.25
    expected = np.zeros((2, height, width))
    for n in range(2):
        contribution = (weight[targets[n]] * (x[n] - fill)).sum(0).numpy()
        total, count = np.zeros((height, width)), np.zeros((height, width))
        tops = list(range(0, height - patch + 1, stride))
        lefts = list(range(0, width - patch + 1, stride))
        tops += [tops[-1] + stride] if tops[-1] + patch < height else []  # a last window cut off at the edge
        lefts += [lefts[-1] + stride] if lefts[-1] + patch < width else []
        for top in tops:
            for left in lefts:
                window = (slice(top, top + patch), slice(left, left + patch))
                total[window] += contribution[window].sum()
                count[window] += 1
        expected[n] = total / count
    for batch_size in (1, 5, 100):
        ours = occlusion(Linear(weight, bias), x, targets, patch=patch, stride=stride, fill=fill, batch_size=batch_size)
        np.testing.assert_allclose(ours.numpy(), expected, rtol=1e-10, atol=1e-12)


def test_occlusion_needs_every_pixel_covered():
    with pytest.raises(ValueError, match="at most the patch"):
        occlusion(
            Linear(torch.ones(1, 3, 4, 4), torch.zeros(1)), torch.ones(1, 3, 4, 4), torch.tensor([0]), patch=2, stride=3
        )


# --- the techniques ------------------------------------------------------------------------


def test_the_techniques_on_the_embedded_model(embedded_model):
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    targets = [5, None]
    x = embedded_model.normalize(images)
    gxi = api.compute("gradient-x-input", embedded_model, images, targets)
    plain = saliency(embedded_model.module, x, gxi.targets)
    assert gxi.targets[0] == 5
    torch.testing.assert_close(gxi.maps, x * plain.gradients)

    ig = api.compute("integrated-gradients", embedded_model, images, targets, steps=2, baseline="blurred")
    assert ig.maps.shape == (2, 3, 64, 64)
    torch.testing.assert_close(ig.targets, gxi.targets)
    total = ig.maps.double().flatten(1).sum(1)
    torch.testing.assert_close(
        ig.row_numbers["completeness_error"], (total - ig.row_numbers["score_change"].double()).abs().float()
    )
    record = ig.to_host().record(0)
    assert record["steps"] == 2 and record["baseline"] == "blurred" and record["completeness_relative"] >= 0

    sg = api.compute("smooth-grad", embedded_model, images, targets, samples=2, noise=0.0, method="gradient-x-input")
    torch.testing.assert_close(sg.maps, gxi.maps, rtol=1e-5, atol=1e-7)
    assert sg.to_host().record(1)["seed"] == 0

    occ = api.compute("occlusion", embedded_model, images, targets, patch=32, stride=32)
    assert occ.maps.shape == (2, 64, 64)
    assert occ.picture(0, "overlay").shape == (64, 64, 3)
    assert gxi.picture(1, "gray").shape == (64, 64, 3)


def test_copies_of_a_huge_image_go_fewer_per_forward():
    """Photos up to 2:1 at 224 px keep the batch size; a 1.8 M-pixel strip goes one copy per forward."""
    from cnnvis_tasks.mechanisms.attribution import copies_per_forward, copy_chunks

    assert copies_per_forward(16, 224 * 337) == 16 and copies_per_forward(16, 224 * 448) == 16
    assert copies_per_forward(16, 224 * 896) == 8 and copies_per_forward(16, 19200 * 96) == 1
    chunks = list(copy_chunks(1, 4, 16, "cpu", pixels=19200 * 96))
    assert [len(owners) for owners, _ in chunks] == [1, 1, 1, 1]
    assert [int(copy) for _, copies in chunks for copy in copies] == [0, 1, 2, 3]
