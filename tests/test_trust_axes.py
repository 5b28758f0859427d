"""The trust metrics' robustness, faithfulness-correlation and localisation axes on cases
whose answer is known, the time budget per image, and the new columns of a metrics job.
(tests/test_trust_references.py checks the same functions against Quantus.)"""

import json
import math
import textwrap
import time

import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from torch import nn

from cnnvis_tasks.cli import cli
from cnnvis_tasks.errors import OverTimeBudget
from cnnvis_tasks.mechanisms.faithfulness_correlation import faithfulness_correlation, pearson, random_subsets
from cnnvis_tasks.mechanisms.localisation import box_masks, pointing_game, rank_accuracy
from cnnvis_tasks.mechanisms.robustness import noise_draws, sensitivity
from cnnvis_tasks.mechanisms.time_budget import check_time_budget, time_budget
from cnnvis_tasks.techniques.trust_scores import object_regions


def channel_sums(inputs: torch.Tensor, _targets=None) -> torch.Tensor:
    return inputs.sum(dim=1)


def test_sensitivity_of_a_map_that_is_the_input_is_the_noise_over_the_input():
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 6, 5, generator=generator) + 0.5
    targets = torch.zeros(3, dtype=torch.long)
    found = sensitivity(channel_sums, x, targets, channel_sums(x), samples=4, radius=0.1, seed=7, batch_size=2)
    draws = noise_draws(3, (3, 6, 5), 0.1, seed=7)
    expected = torch.stack(
        [
            channel_sums(noise).flatten(1).norm(dim=1) / channel_sums(x).flatten(1).norm(dim=1)
            for noise in [next(draws) for _ in range(4)]
        ],
        dim=1,
    ).double()
    torch.testing.assert_close(found["ratios"], expected, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(found["max"], expected.amax(dim=1))
    torch.testing.assert_close(found["mean"], expected.mean(dim=1))
    assert (found["max"] >= found["mean"]).all() and (found["mean"] > 0).all()
    # an image's noise is its own: alone it gets the numbers it gets in the batch
    alone = sensitivity(channel_sums, x[1:2], targets[1:2], channel_sums(x[1:2]), samples=4, radius=0.1, seed=7)
    torch.testing.assert_close(alone["ratios"][0], found["ratios"][1])


def test_sensitivity_of_a_map_that_ignores_the_input_is_zero_and_an_all_zero_map_has_none():
    x = torch.rand(2, 3, 4, 4)
    fixed = torch.arange(16.0).view(1, 4, 4).expand(2, 4, 4)
    found = sensitivity(lambda noisy, _t: fixed[:1].expand(noisy.shape[0], 4, 4), x, torch.zeros(2).long(), fixed)
    assert found["max"].tolist() == [0.0, 0.0]
    zero = sensitivity(
        lambda noisy, _t: torch.ones(noisy.shape[0], 4, 4), x, torch.zeros(2).long(), torch.zeros(2, 4, 4)
    )
    assert all(math.isnan(v) for v in zero["max"].tolist())
    noise = next(noise_draws(2, (3, 4, 4), 0.2, seed=1))
    assert noise.abs().max() <= 0.2 and noise.abs().max() > 0.15 and abs(float(noise.mean())) < 0.05


class Linear(nn.Module):
    """A one-channel linear classifier: the fall of its logit when values are set to b is
    the sum of w * (x - b) over them."""

    def __init__(self, height: int, width: int):
        super().__init__()
        torch.manual_seed(3)
        self.head = nn.Linear(height * width, 4)

    def forward(self, x):
        return self.head(x.flatten(1))


def test_faithfulness_correlation_of_the_exact_contributions_is_one():
    height, width = 7, 9
    model = Linear(height, width).eval()
    x = torch.randn(3, 1, height, width, generator=torch.Generator().manual_seed(1))
    targets = torch.tensor([0, 2, 3])
    weights = model.head.weight.detach()[targets].view(3, height, width)
    contributions = weights * (x[:, 0] - x.flatten(1).amin(dim=1).view(3, 1, 1))  # "black": the image's smallest
    found = faithfulness_correlation(model, x, targets, contributions, runs=10, subset=12, seed=5, batch_size=4)
    torch.testing.assert_close(found["sums"], found["falls"].double(), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(found["correlation"], torch.ones(3, dtype=torch.float64), atol=1e-5, rtol=0)
    opposite = faithfulness_correlation(model, x, targets, -contributions, runs=10, subset=12, seed=5)
    torch.testing.assert_close(opposite["correlation"], -torch.ones(3, dtype=torch.float64), atol=1e-5, rtol=0)
    # the batch does not change an image's subsets, nor so its numbers
    alone = faithfulness_correlation(model, x[2:], targets[2:], contributions[2:], runs=10, subset=12, seed=5)
    torch.testing.assert_close(alone["falls"][0], found["falls"][2])


def test_random_subsets_have_no_repeats_and_cover_the_values_evenly():
    subsets = random_subsets(2, 50, 10, 400, seed=0)
    assert subsets.shape == (2, 400, 10)
    assert all(len(set(run.tolist())) == 10 for run in subsets.flatten(0, 1))
    counts = torch.bincount(subsets[0].flatten(), minlength=50).double()
    assert counts.min() > 0.6 * counts.mean() and counts.max() < 1.4 * counts.mean()  # each value about 80 times
    assert torch.equal(random_subsets(1, 50, 10, 3, seed=0)[0], subsets[0, :3])
    with pytest.raises(ValueError, match="1 to 50"):
        random_subsets(1, 50, 51, 2, seed=0)
    assert math.isnan(pearson(torch.ones(1, 5), torch.arange(5.0)[None])[0].item())  # a constant row has none


def test_pointing_game_and_rank_accuracy_on_hand_made_maps():
    maps = torch.zeros(3, 4, 4)
    maps[0, 1, 1] = 5.0  # the peak on the object
    maps[0, 3, 3] = 4.0
    maps[1, 3, 3] = 5.0  # the peak off it
    maps[1, 2, 2] = 4.0
    maps[2] = torch.arange(16.0).view(4, 4)
    regions = torch.zeros(3, 4, 4)
    regions[:, 0:2, 0:2] = 1.0  # 4 pixels
    regions[2] = math.nan  # no object
    assert pointing_game(maps, regions)[:2].tolist() == [1.0, 0.0] and math.isnan(pointing_game(maps, regions)[2])
    # the top 4 pixels, ties in index order: map 0's (1,1) on, (3,3) off, (0,0) and (0,1) on: 3 of 4;
    # map 1's (3,3) and (2,2) off, (0,0) and (0,1) on: 2 of 4
    accuracy = rank_accuracy(maps, regions)
    assert accuracy[0].item() == pytest.approx(0.75) and accuracy[1].item() == pytest.approx(0.5)
    assert math.isnan(accuracy[2])
    empty = torch.zeros(1, 4, 4)
    assert math.isnan(rank_accuracy(maps[:1], empty)[0]) and math.isnan(pointing_game(maps[:1], empty)[0])


def test_the_object_is_the_mask_where_an_image_has_one_else_its_box():
    boxes = torch.tensor([[0.0, 0.0, 2.0, 2.0], [math.nan] * 4, [1.0, 1.0, 3.0, 3.0], [math.nan] * 4])
    masks = torch.zeros(4, 4, 4)
    masks[2, 3, 3] = 1.0
    masks[[0, 1, 3]] = math.nan
    masks[1, 0, 3] = 1.0  # not a mask: its row holds NaN
    masks[3] = torch.nan
    regions = object_regions(boxes, masks, (4, 4))
    torch.testing.assert_close(regions[0], box_masks(boxes[:1], (4, 4))[0].double())
    assert regions[2].sum() == 1.0 and regions[2, 3, 3] == 1.0  # the mask wins over the box
    assert regions[1].isnan().all() and regions[3].isnan().all()
    assert object_regions(None, None, (4, 4)) is None


def test_a_time_budget_stops_a_computation_between_steps_and_names_the_step():
    with time_budget(None):
        check_time_budget()  # no budget: nothing to check
    with time_budget(0.05, per_image=0.05) as budget:
        budget.step("ROAD")
        time.sleep(0.08)
        with pytest.raises(OverTimeBudget, match=r"during ROAD: over the time budget of 0.05 s per image"):
            check_time_budget()
    check_time_budget()  # the budget ends with its block


SLOW_MODEL = textwrap.dedent(
    """
    import time

    import torch
    from torch import nn


    class SlowOnBright(nn.Module):
        '''A small CNN that takes 200 ms longer for each forward with a bright image in it.'''

        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.head = nn.Linear(4, 2)

        def forward(self, x):
            if bool((x.mean(dim=(1, 2, 3)) > 0.7).any()):
                time.sleep(0.2)
            return self.head(self.conv(x).relu().mean(dim=(2, 3)))


    def build():
        return SlowOnBright()
    """
)


def test_an_image_over_the_time_budget_fails_alone_and_the_others_get_every_axis(tmp_path, monkeypatch):
    package = tmp_path / "slownet"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "net.py").write_text(SLOW_MODEL)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    from slownet.net import build

    torch.save(build().state_dict(), tmp_path / "slow.pt")
    (tmp_path / "classes.txt").write_text("dark\nbright\n")
    texture = torch.randint(-25, 26, (3, 24, 24, 3), generator=torch.Generator().manual_seed(0))
    for k, (name, level) in enumerate((("dark one.png", 50), ("bright.png", 225), ("dark two.png", 60))):
        Image.fromarray((texture[k] + level).clamp(0, 255).to(torch.uint8).numpy()).save(tmp_path / name)
    arguments = ["metrics", "--model", "module:slownet.net:build", "--weights", "slow.pt", "--classes", "classes.txt"]
    arguments += ["--mean", "0,0,0", "--std", "1,1,1", "--size", "24", "--explain", "saliency", "--steps", "4"]
    arguments += ["--road-steps", "2", "--randomisation-stages", "1", "--sensitivity-samples", "3"]
    arguments += ["--correlation-runs", "6", "--correlation-subset", "20", "--batch-size", "4", "--max-seconds", "0.8"]
    arguments += ["--box", "0,0,12,12", "--keep-going", "--quiet", "--out-dir", "out", "--record", "record.json"]
    images = [w for name in ("dark one.png", "bright.png", "dark two.png") for w in ("--image", name)]
    outcome = CliRunner().invoke(cli, [*arguments, *images], catch_exceptions=False)
    assert outcome.exit_code == 0, outcome.output
    rows = json.loads((tmp_path / "record.json").read_text())["rows"]
    assert [row["status"] for row in rows] == ["ok", "failed", "ok"]
    assert "bright.png: stopped after" in rows[1]["reason"] and "0.8 s per image (max_seconds)" in rows[1]["reason"]
    for row in (rows[0], rows[2]):
        measured = row["measured"]
        for name in ("faithfulness_correlation", "max_sensitivity", "avg_sensitivity", "sparseness"):
            assert measured[name] is not None and math.isfinite(measured[name]), name
        assert measured["max_sensitivity"] >= measured["avg_sensitivity"] >= 0
        assert measured["pointing_game"] in (0.0, 1.0) and 0.0 <= measured["rank_accuracy"] <= 1.0
        assert 0.0 <= measured["sparseness"] <= 1.0 and -1.0 <= measured["faithfulness_correlation"] <= 1.0
