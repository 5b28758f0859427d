"""The trust metrics' new axes against Quantus, the reference toolkit: robustness (max- and
average-sensitivity), complexity (sparseness), localisation (pointing game, relevance rank
accuracy) and faithfulness correlation, on the same model, inputs, maps and random draws
(Quantus's draws replayed from ours), to 1e-5.

Quantus is installed in the test environment only (pyproject's ``test`` extra).
"""

import numpy as np
import pytest
import torch
from torch import nn

quantus = pytest.importorskip("quantus")

from cnnvis_tasks.mechanisms.faithfulness_correlation import faithfulness_correlation, random_subsets  # noqa: E402
from cnnvis_tasks.mechanisms.localisation import pointing_game, rank_accuracy  # noqa: E402
from cnnvis_tasks.mechanisms.map_complexity import sparseness  # noqa: E402
from cnnvis_tasks.mechanisms.robustness import noise_draws, sensitivity  # noqa: E402

HEIGHT, WIDTH = 12, 14


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(6, 8, 3, padding=1, stride=2),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 5),
    )
    return model.eval()


def inputs_and_targets(n: int = 3):
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(n, 3, HEIGHT, WIDTH, generator=generator)
    targets = torch.tensor([0, 3, 1][:n])
    return x, targets


def gradient_maps(model: nn.Module, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(N, H, W) the largest |gradient| over the channels: the explanation both sides use."""
    x = x.detach().clone().requires_grad_(True)
    model(x).gather(1, targets[:, None]).sum().backward()
    return x.grad.abs().amax(dim=1)


def quantus_explain(model, inputs, targets, **_kwargs):
    maps = gradient_maps(model, torch.as_tensor(inputs, dtype=torch.float32), torch.as_tensor(targets).long())
    return maps[:, None].numpy()


def test_max_and_average_sensitivity_equal_quantus():
    model = small_cnn()
    x, targets = inputs_and_targets()
    maps = gradient_maps(model, x, targets)
    samples, radius = 5, 0.2
    draws = noise_draws(x.shape[0], tuple(x.shape[1:]), radius, seed=4)
    noise = torch.stack([next(draws) for _ in range(samples)])
    ours = sensitivity(
        lambda noisy, t: gradient_maps(model, noisy, t), x, targets, maps, samples=samples, noise=noise, batch_size=4
    )
    assert ours["ratios"].shape == (3, samples)
    assert float(noise.abs().max()) <= radius and float(noise.abs().max()) > 0.9 * radius

    def replay():
        steps = iter(noise.numpy().reshape(samples, x.shape[0], -1))
        return lambda arr, indices, **_kwargs: arr + next(steps)

    common = {"nr_samples": samples, "disable_warnings": True, "display_progressbar": False, "return_aggregate": False}
    for name, key in (("MaxSensitivity", "max"), ("AvgSensitivity", "mean")):
        metric = getattr(quantus, name)(perturb_func=replay(), **common)
        theirs = metric(
            model=model,
            x_batch=x.numpy(),
            y_batch=targets.numpy(),
            a_batch=maps[:, None].numpy(),
            explain_func=quantus_explain,
            device="cpu",
        )
        np.testing.assert_allclose(ours[key].numpy(), np.asarray(theirs), rtol=1e-5, atol=1e-6)


def test_faithfulness_correlation_equals_quantus(monkeypatch):
    model = small_cnn()
    x, targets = inputs_and_targets()
    generator = torch.Generator().manual_seed(5)
    maps = torch.randn(3, HEIGHT, WIDTH, generator=generator)
    runs, subset = 12, 40
    subsets = random_subsets(3, 3 * HEIGHT * WIDTH, subset, runs, seed=2)
    ours = faithfulness_correlation(model, x, targets, maps, runs=runs, subset=subset, subsets=subsets, batch_size=5)
    # Quantus draws each run's subset of each image with np.random.choice, run by run: replay ours
    replayed = iter(subsets.permute(1, 0, 2).reshape(-1, subset).numpy())
    monkeypatch.setattr(np.random, "choice", lambda *args, **kwargs: next(replayed))
    metric = quantus.FaithfulnessCorrelation(
        nr_runs=runs, subset_size=subset, return_aggregate=False, disable_warnings=True, display_progressbar=False
    )
    theirs = metric(
        model=model, x_batch=x.numpy(), y_batch=targets.numpy(), a_batch=maps[:, None].numpy(), device="cpu"
    )
    np.testing.assert_allclose(ours["correlation"].numpy(), np.asarray(theirs), rtol=1e-5, atol=1e-6)


def test_pointing_game_rank_accuracy_and_sparseness_equal_quantus():
    model = small_cnn()
    x, targets = inputs_and_targets()
    generator = torch.Generator().manual_seed(6)
    maps = torch.randn(3, HEIGHT, WIDTH, generator=generator)
    masks = torch.zeros(3, HEIGHT, WIDTH)
    masks[0, 2:7, 3:9] = 1
    masks[1, 5:12, 0:4] = 1
    masks[2] = (torch.rand(HEIGHT, WIDTH, generator=generator) > 0.7).float()
    peak = maps[0].flatten().argmax()
    masks[0].view(-1)[peak] = 1  # row 0 a hit, the others as they fall
    # row 2's largest value twice, once in its mask and once outside: any counts, on both sides
    maps[2].view(-1)[masks[2].flatten().argmax()] = maps[2].max() + 1
    maps[2].view(-1)[(1 - masks[2]).flatten().argmax()] = maps[2].max()
    common = {"disable_warnings": True, "display_progressbar": False, "return_aggregate": False}
    arguments = {
        "model": model,
        "x_batch": x.numpy(),
        "y_batch": targets.numpy(),
        "a_batch": maps[:, None].numpy(),
        "device": "cpu",
    }
    regions = masks[:, None].numpy()
    theirs = quantus.PointingGame(**common)(**arguments, s_batch=regions)
    ours = pointing_game(maps, masks)
    np.testing.assert_array_equal(ours.numpy(), np.asarray(theirs, dtype=np.float32))
    assert ours[0] == 1.0 and ours[2] == 1.0

    # relevance rank accuracy on maps without ties (Quantus breaks ties in no set order)
    untied = torch.randn(3, HEIGHT, WIDTH, generator=generator)
    arguments["a_batch"] = untied[:, None].numpy()
    theirs = quantus.RelevanceRankAccuracy(**common)(**arguments, s_batch=regions)
    np.testing.assert_allclose(rank_accuracy(untied, masks).numpy(), np.asarray(theirs), rtol=1e-5, atol=1e-6)

    theirs = quantus.Sparseness(**common)(**arguments)
    np.testing.assert_allclose(sparseness(untied).numpy(), np.asarray(theirs), rtol=1e-5, atol=1e-6)
