"""The attribution wrappers equal captum's where captum defines the same thing:
IntegratedGradients (Gauss-Legendre, the same baseline), InputXGradient, Occlusion
and NoiseTunnel (given the same noise), on seeded torchvision models at 64 px,
batch 2, to 1e-5 of the largest value."""

import warnings

import pytest
import torch
import torchvision

from cnnvis_tasks.mechanisms.attribution import (
    gradient_x_input,
    integrated_gradients,
    noise_spread,
    occlusion,
    rule_gradient,
    smooth_grad,
)
from cnnvis_tasks.mechanisms.layout import forward_layout
from cnnvis_tasks.models.sources import wake_zero_head

captum_attr = pytest.importorskip("captum.attr")

MODELS = [
    "vgg16",
    "vit",  # a small ViT (GELU: guided backpropagation is the plain gradient, on both sides)
    pytest.param("resnet50", marks=pytest.mark.slow),
    pytest.param("densenet121", marks=pytest.mark.slow),
]


@pytest.fixture(scope="module", params=MODELS)
def case(request):
    torch.manual_seed(0)
    if request.param == "vit":
        model = torchvision.models.VisionTransformer(
            image_size=64, patch_size=16, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=10
        )
        wake_zero_head(model)  # torchvision starts the head at zero: every attribution would be zero
        model.eval()
    else:
        model = getattr(torchvision.models, request.param)(weights=None).eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    return request.param, model, x, torch.tensor([3, 7])


def assert_equal(ours, reference, tolerance=1e-5):
    scale = reference.abs().max()
    assert scale > 0
    assert (ours - reference).abs().max() <= tolerance * scale


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # captum's deprecation chatter
        yield


def test_integrated_gradients_equals_captums(case):
    """The same Gauss-Legendre rule and baseline; our path points in captum's internal
    batches (whole steps of every image), which float32 results depend on."""
    _, model, x, targets = case
    baseline = torch.randn(x.shape, generator=torch.Generator().manual_seed(2))
    reference = captum_attr.IntegratedGradients(model)
    for batch_size in (4, 8):
        expected = reference.attribute(
            x, baselines=baseline, target=targets, n_steps=4, method="gausslegendre", internal_batch_size=batch_size
        )
        ours = integrated_gradients(rule_gradient(model), x, baseline, targets, steps=4, batch_size=batch_size)
        assert_equal(ours, expected)


def test_input_x_gradient_equals_captums(case):
    _, model, x, targets = case
    assert_equal(
        gradient_x_input(rule_gradient(model), x, targets),
        captum_attr.InputXGradient(model).attribute(x, target=targets),
    )


def test_occlusion_equals_captums(case):
    """The drop in the target logit, averaged over the windows covering each pixel
    (the last window cut off at the edge: 64 - 24 is not a multiple of 15).

    Ours runs its forwards in :func:`forward_layout` (channels-last on the CPU); captum
    gets its inputs in that layout too, so both sides round alike: the drops are about
    1e-5 of a random model's logits, and the layouts' rounding differs by about 1e-7."""
    _, model, x, targets = case
    fill = torch.tensor([0.5, -0.2, 0.1]).view(1, 3, 1, 1)
    expected = captum_attr.Occlusion(model).attribute(
        forward_layout(x),
        sliding_window_shapes=(3, 24, 24),
        strides=15,
        baselines=forward_layout(fill.expand_as(x)),
        target=targets,
        perturbations_per_eval=8,
    )
    ours = occlusion(model, x, targets, patch=24, stride=15, fill=fill, batch_size=8)
    assert_equal(ours[:, None].expand_as(expected), expected)


@pytest.mark.parametrize("method", ["vanilla", "guided"])
def test_smooth_grad_equals_captums_noise_tunnel(case, method):
    """captum draws torch.normal(0, std) from the global generator, which after
    torch.manual_seed(seed) are our per-image draws (3 x 64 x 64 is a multiple of 16)."""
    name, model, x, targets = case
    if method == "guided" and name == "densenet121":
        pytest.skip("captum's GuidedBackprop hooks nn.ReLU modules only; DenseNet's last ReLU is F.relu")
    samples, noise, seed = 3, 0.2, 5
    gradient = rule_gradient(model, method)
    for squared, kind in ((False, "smoothgrad"), (True, "smoothgrad_sq")):
        ours = smooth_grad(
            lambda inputs, t, _owners: gradient(inputs, t),
            x,
            targets,
            samples=samples,
            noise=noise,
            squared=squared,
            seed=seed,
            batch_size=3,
        )
        expected = []
        for i in range(len(x)):  # captum takes one standard deviation per call: each image's own range
            torch.manual_seed(seed)
            base = captum_attr.Saliency(model) if method == "vanilla" else captum_attr.GuidedBackprop(model)
            extra = {"abs": False} if method == "vanilla" else {}
            expected.append(
                captum_attr.NoiseTunnel(base).attribute(
                    x[i : i + 1],
                    nt_type=kind,
                    nt_samples=samples,
                    stdevs=float(noise_spread(x[i : i + 1], noise)),
                    target=targets[i : i + 1],
                    **extra,
                )
            )
        assert_equal(ours, torch.cat(expected))
