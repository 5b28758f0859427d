"""Channel examples: the top lists and their merge, the peaks and receptive fields, the
classes a channel pushes, and the map and reduce on a data set with a planted pattern."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import planted
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from torch import nn

from cnnvis_tasks.cli import cli
from cnnvis_tasks.mechanisms.channel_classes import _by_channel, _by_class, class_gradients
from cnnvis_tasks.mechanisms.channel_peaks import channel_peaks, peak_boxes, receptive_field
from cnnvis_tasks.mechanisms.top_examples import TopExamples, merge_files
from cnnvis_tasks.techniques.channel_atlas import selectivity

# --- the lists ------------------------------------------------------------------------------


def _random_scan(count=40, channels=6, seed=0):
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=(count, channels)).astype(np.float32)
    scores[5] = scores[6]  # ties, broken by path
    boxes = rng.uniform(0, 50, size=(count, channels, 4)).astype(np.float32)
    paths = [f"img/{rng.integers(1e6):06d}-{k}.png" for k in range(count)]
    return paths, scores, boxes


def _lists(examples: TopExamples, direction: str) -> list[list[tuple[str, float, tuple]]]:
    return [
        [(e["image"], e["score"], tuple(e["box"])) for e in examples.entries(direction, c)]
        for c in range(examples.channels)
    ]


def test_merging_scans_of_parts_equals_one_scan_of_everything(tmp_path):
    paths, scores, boxes = _random_scan()
    counts = {"top": 4, "bottom": 3}
    whole = TopExamples(6, counts)
    for k in range(len(paths)):
        whole.add(paths[k], (50, 40), scores[k], boxes[k])
    files = []
    for part, picked in enumerate((range(0, 40, 3), range(1, 40, 3), range(2, 40, 3))):
        scan = TopExamples(6, counts, {"layer": "x", "statistic": "max"})
        for k in reversed(list(picked)):  # another order, too
            scan.add(paths[k], (50, 40), scores[k], boxes[k])
        files.append(tmp_path / f"{part}.npz")
        scan.save(files[-1])
    merged = merge_files(files)
    assert merged.scanned == 40
    for direction in ("top", "bottom"):
        assert _lists(merged, direction) == _lists(whole, direction)
    # and what they hold is the true order: by score, ties by path
    for channel in range(6):
        expected = sorted(range(40), key=lambda k: (-scores[k, channel], paths[k]))[:4]
        assert [e["image"] for e in whole.entries("top", channel)] == [paths[k] for k in expected]
        lowest = sorted(range(40), key=lambda k: (scores[k, channel], paths[k]))[:3]
        assert [e["image"] for e in whole.entries("bottom", channel)] == [paths[k] for k in lowest]
    assert whole.entries("top", 0)[0]["box"] == pytest.approx(boxes[expected_first(scores, paths, 0), 0].tolist())


def expected_first(scores, paths, channel):
    return sorted(range(len(paths)), key=lambda k: (-scores[k, channel], paths[k]))[0]


def test_a_merge_stays_small_and_refuses_other_layers(tmp_path):
    merged = TopExamples(2, {"top": 1}, {"layer": "a"})
    for part in range(30):
        scan = TopExamples(2, {"top": 1}, {"layer": "a"})
        for k in range(10):
            scan.add(f"{part}-{k}.png", (8, 8), np.array([part + k / 10, -part]), np.zeros((2, 4)))
        merged.merge(scan)
    assert len(merged.images) <= 2 * 2 * 1 + 10  # forgotten once no list holds them
    assert merged.entries("top", 0)[0]["image"] == "29-9.png"
    assert merged.entries("top", 1)[0]["image"] == "0-0.png"
    TopExamples(2, {"top": 1}, {"layer": "a", "statistic": "max", "counts": None}).save(tmp_path / "a.npz")
    TopExamples(2, {"top": 1}, {"layer": "b", "statistic": "max"}).save(tmp_path / "b.npz")
    with pytest.raises(ValueError, match="its layer is 'b'"):
        merge_files([tmp_path / "a.npz", tmp_path / "b.npz"])
    (tmp_path / "c.npz").write_bytes(b"not a list")
    with pytest.raises(ValueError):
        merge_files([tmp_path / "c.npz"])


def test_an_empty_scan_merges_as_nothing(tmp_path):
    empty = TopExamples(0, {"top": 2})
    empty.save(tmp_path / "empty.npz")
    full = TopExamples(3, {"top": 2})
    full.add("a.png", (4, 4), np.arange(3.0), np.zeros((3, 4)))
    full.save(tmp_path / "full.npz")
    for order in ([tmp_path / "empty.npz", tmp_path / "full.npz"], [tmp_path / "full.npz", tmp_path / "empty.npz"]):
        merged = merge_files(order)
        assert merged.channels == 3 and merged.entries("top", 2)[0]["image"] == "a.png"


# --- peaks, fields, classes ------------------------------------------------------------------


def test_peaks_are_the_maximum_or_the_mean_and_where_the_maximum_is():
    activation = torch.zeros(2, 3, 4, 5)
    activation[0, 1, 2, 3] = 7.0
    activation[1, 2, 0, 0] = -1.0
    activation[1, 2, 3, 4] = 2.0
    score, position = channel_peaks(activation, "max")
    assert score[0, 1] == 7.0 and position[0, 1] == 2 * 5 + 3 and position[1, 2] == 3 * 5 + 4
    mean, _ = channel_peaks(activation, "mean")
    assert mean[1, 2] == pytest.approx(1.0 / 20)
    boxes = peak_boxes(position, (4, 5), 6, (50, 40))  # a cell is 10 x 10 pixels
    assert boxes[0, 1].tolist() == pytest.approx([32.0, 22.0, 38.0, 28.0])  # centre (35, 25)
    assert boxes[1, 2].tolist() == pytest.approx([42.0, 32.0, 48.0, 38.0])
    assert peak_boxes(torch.tensor([0]), (4, 5), 12, (50, 40))[0].tolist() == [0.0, 0.0, 12.0, 12.0]  # moved inside
    with pytest.raises(ValueError, match="statistic"):
        channel_peaks(activation, "median")


@pytest.mark.parametrize(
    "layers, layer, side",
    [
        ([nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 5, padding=2)], "2", 7),
        ([nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.Conv2d(4, 4, 3, padding=1)], "1", 7),
        ([nn.Conv2d(3, 4, 3, padding=1), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3, padding=1)], "2", 8),
    ],
)
def test_the_receptive_field_is_the_span_a_unit_depends_on(layers, layer, side):
    torch.manual_seed(0)
    model = nn.Sequential(*layers).eval()
    found, _grid = receptive_field(model, layer, torch.zeros(1, 3, 64, 64))
    assert found == side


def test_a_layer_that_sees_everything_gets_its_effective_field():
    class Global(nn.Module):  # every position depends on every pixel, mostly on its own
        def __init__(self):
            super().__init__()
            self.local = nn.Conv2d(3, 2, 3, padding=1)

        def forward(self, x):
            return self.local(x) + 0.001 * x.mean(dim=(1, 2, 3), keepdim=True)

    model = nn.Sequential(Global()).eval()
    side, grid = receptive_field(model, "0", torch.zeros(1, 3, 64, 64))
    assert grid == (64, 64) and 3 <= side < 32


def test_class_gradients_are_the_weight_path_before_a_linear_head_and_agree_both_ways():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.Conv2d(6, 5, 3, padding=1),
        nn.SiLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(5, 8),
    ).eval()
    images = torch.randn(3, 3, 10, 10)
    by_channel, by_class = _by_channel(model, images, "3", 5, 4), _by_class(model, images, "3", 3)
    assert torch.allclose(by_channel, by_class, atol=1e-5)
    assert torch.allclose(class_gradients(model, images, "4"), 3 * model[7].weight, atol=1e-5)
    # against a finite difference: channel 2 raised by h everywhere
    eps = 1e-3

    def logits(shift):
        def hook(_m, _i, output):
            output = output.clone()
            output[:, 2] += shift
            return output

        handle = model[3].register_forward_hook(hook)
        try:
            return model(images.double() if False else images).sum(dim=0)
        finally:
            handle.remove()

    with torch.no_grad():
        slope = (logits(eps) - logits(-eps)) / (2 * eps)
    assert torch.allclose(by_channel[:, 2], slope, atol=2e-3)


def test_selectivity_is_the_share_of_the_commonest_label():
    assert selectivity(["cat", "cat", "dog", None]) == {"label": "cat", "share": 0.5, "count": 2, "labelled": 3}
    assert selectivity(["b", "a"])["label"] == "a"
    assert selectivity([None, None]) is None


# --- map and reduce on a planted pattern --------------------------------------------------------


@pytest.fixture(scope="module")
def planted_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("planted")
    squares = planted.make_images(root / "data", per_class=8)
    planted.write_model(root)
    torch.save(_planted_model(root).state_dict(), root / "planted.pt")
    (root / "data" / "plain" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    return root, squares


def _planted_model(root: Path) -> nn.Module:
    sys.path.insert(0, str(root))
    try:
        from plantednet.net import build

        return build()
    finally:
        sys.path.remove(str(root))


def _model_args(root: Path) -> list[str]:
    return [
        "--model",
        "module:plantednet.net:build",
        "--weights",
        str(root / "planted.pt"),
        "--classes",
        str(root / "classes.txt"),
        "--mean",
        "0,0,0",
        "--std",
        "1,1,1",
        "--quiet",
    ]


def _invoke(root: Path, args: list[str], monkeypatch) -> None:
    monkeypatch.chdir(root)
    monkeypatch.syspath_prepend(str(root))
    (root / "classes.txt").write_text("plain\nred\n")
    outcome = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert outcome.exit_code == 0, outcome.output


def test_the_detector_s_examples_all_hold_the_planted_square(planted_set, monkeypatch):
    root, squares = planted_set
    images = sorted(str(p) for p in (root / "data").rglob("*.png") if p.name != "broken.png")
    halves = [images[0::2], images[1::2] + [str(root / "data/plain/broken.png")]]
    scan = ["channel-examples", *_model_args(root), "--layer", planted.LAYER, "--top", "5", "--bottom", "2"]
    scan += ["--size", str(planted.SIDE), "--keep-going"]
    for part, chosen in enumerate(halves):
        words = [w for image in chosen for w in ("--image", image)]
        _invoke(root, [*scan, *words, "--out", f"part{part}.npz", "--record", f"part{part}.json"], monkeypatch)
    record = json.loads((root / "part1.json").read_text())
    assert [r["status"] for r in record["rows"]].count("failed") == 1  # the broken file, alone
    everything = [w for image in images for w in ("--image", image)]
    _invoke(root, [*scan, *everything, "--out", "whole.npz"], monkeypatch)
    images_json = {
        "images": [
            {"path": p, "name": str(Path(p).relative_to(root / "data")), "label": Path(p).parent.name} for p in images
        ]
    }
    (root / "images.json").write_text(json.dumps(images_json))
    atlas_args = ["channel-atlas", *_model_args(root), "part0.npz", "part1.npz", "--images", "images.json"]
    _invoke(root, [*atlas_args, "--out-dir", "atlas", "--size", str(planted.SIDE)], monkeypatch)

    atlas = json.loads((root / "atlas" / "atlas.json").read_text())
    assert atlas["scanned"] == 16 and atlas["receptive_field"] == planted.RECEPTIVE_FIELD
    detector = atlas["channels"][planted.DETECTOR]
    shown = atlas["images"]
    assert len(detector["top"]) == 5
    for entry in detector["top"]:
        name = shown[entry["image"]]["name"]
        x0, y0, x1, y1 = entry["box"]
        sx0, sy0, sx1, sy1 = squares[name]
        assert name.startswith("red/") and x0 <= sx0 and y0 <= sy0 and x1 >= sx1 and y1 >= sy1, (name, entry)
    assert detector["selectivity"] == {"label": "red", "share": 1.0, "count": 5, "labelled": 5}
    assert detector["classes"]["up"][0]["name"] == "red"
    assert detector["classes"]["up"][0]["value"] == pytest.approx(1.0, abs=1e-5)  # the head's weight
    # the patches are red where the square is: every tile of the strip
    strip = np.asarray(Image.open(root / "atlas" / detector["strips"]["top"]).convert("RGB")).astype(int)
    assert strip.shape == (64, 5 * 64, 3)
    for tile in range(5):
        cut = strip[:, tile * 64 : (tile + 1) * 64]
        red = (cut[..., 0] > 120) & (cut[..., 1] < 60) & (cut[..., 2] < 60)
        assert red.sum() > 0.3 * 64 * 64, tile
    assert [shown[e["image"]]["name"].split("/")[0] for e in detector["bottom"]] == ["plain", "plain"]
    # the reduce equals one scan of everything
    whole, merged = merge_files([root / "whole.npz"]), merge_files([root / "part0.npz", root / "part1.npz"])
    for direction in ("top", "bottom"):
        for channel in range(whole.channels):
            ours, theirs = merged.entries(direction, channel), whole.entries(direction, channel)
            assert [e["image"] for e in ours] == [e["image"] for e in theirs]
            assert [e["box"] for e in ours] == [e["box"] for e in theirs]
            assert [e["score"] for e in ours] == pytest.approx([e["score"] for e in theirs], rel=1e-5)


def test_the_scan_command_says_what_it_needs(planted_set, monkeypatch):
    root, _ = planted_set
    monkeypatch.chdir(root)
    base = ["channel-examples", *_model_args(root), "--layer", planted.LAYER, "--image", "data/red"]
    (root / "classes.txt").write_text("plain\nred\n")
    outcome = CliRunner().invoke(cli, base)
    assert outcome.exit_code == 2 and "Missing option '--out'" in outcome.output
    outcome = CliRunner().invoke(cli, [*base, "--out", "x.png"])
    assert outcome.exit_code == 2 and "writes a .npz file" in outcome.output
    outcome = CliRunner().invoke(cli, ["channel-examples", "--help"])
    assert "channel-atlas" in outcome.output and "--bottom" in outcome.output


def test_a_vision_transformer_s_hidden_units_on_its_token_grid():
    import cnnvis_tasks as cv
    from cnnvis_tasks.models.loading import load_model

    model = load_model("timm:test_vit", "random", arch_args='{"num_classes": 3}')
    side = model.input_size
    images = torch.rand(2, 3, side, side, generator=torch.Generator().manual_seed(0))
    result = cv.compute("channel-examples", model, images, layer="blocks.0")
    grid = result.facts["grid"]
    assert result.maps.shape == (2, 64, 5) and grid == [side // 16, side // 16]  # its 16-pixel patches, no class token
    # every token sees the whole image through attention: the effective field, at least its own patch
    assert 16 <= result.facts["receptive_field"] < side
    boxes = result.maps[..., 1:]
    assert torch.all(boxes[..., 2] - boxes[..., 0] == result.facts["receptive_field"])
    # forward mode through attention (its plain form) agrees with one backward per class
    inputs = model.normalize(images)
    assert torch.allclose(
        class_gradients(model.module, inputs, "blocks.0"), _by_class(model.module, inputs, "blocks.0", 3), atol=1e-5
    )


def test_undefined_scores_are_never_listed():
    lists = TopExamples(1, {"top": 2, "bottom": 2})
    for path, score in (("a.png", np.nan), ("b.png", 1.0), ("c.png", np.nan), ("d.png", 3.0), ("e.png", 2.0)):
        lists.add(path, (4, 4), np.array([score]), np.zeros((1, 4)))
    assert [e["image"] for e in lists.entries("top", 0)] == ["d.png", "e.png"]
    assert [e["image"] for e in lists.entries("bottom", 0)] == ["b.png", "e.png"]
    alone = TopExamples(1, {"top": 2})
    alone.add("a.png", (4, 4), np.array([np.nan]), np.zeros((1, 4)))
    assert alone.entries("top", 0) == []  # a NaN activation says nothing about the channel


# --- the plan: map jobs in both layouts, one reduce per model and layer ----------------------


@pytest.mark.parametrize("layout", ["pictures", "chunks"])
def test_the_plan_has_a_scan_per_chunk_and_one_merge_per_layer(layout, tmp_path, monkeypatch):
    from test_plan import parse, shipped, status

    from cnnvis_tasks.workflow.plan import make_plan

    config = shipped(layout=layout, chunk_size=2)
    config["techniques"] = {
        "channel_examples": {
            "top": 3,
            "sample": 4,
            "patch_size": 32,
            "models": {"efficientnet_lite0": {"layers": ["_blocks.2", "_blocks.4"]}},
        }
    }
    plan = make_plan(shipped(**config), status(), exists=None)
    scans = [job for job in [*plan.jobs, *plan.chunk_rules] if job.technique == "channel-examples"]
    assert len(scans) == (4 if layout == "pictures" else 2)  # 2 chunks x 2 layers, or a rule per layer
    for job in scans:
        npz = [o.path for o in job.outputs if o.path.endswith(".npz")]
        assert len(npz) == 1 and ("--out", npz[0]) in job.job_outputs
        if layout == "pictures":
            parse(job)  # the command takes its own line
    assert [(r.setting, len(r.inputs)) for r in plan.reductions] == [("_blocks.2", 2), ("_blocks.4", 2)]
    merge = plan.reductions[1]
    assert (
        merge.arguments[0] == "channel-atlas"
        and merge.folder == "results/efficientnet_lite0/channel-examples/_blocks.4"
    )
    assert merge.arguments[-4:] == ("--patch-size", "32", "--sample", "4")
    monkeypatch.chdir(tmp_path)  # the files the command checks exist
    for path in (plan.image_status_file, merge.arguments[2]):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text("{}")
    command = cli.commands["channel-atlas"]
    command.make_context("channel-atlas", [*merge.arguments[1:], __file__])  # every option exists
    assert plan.spec["reductions"][1] == {
        "technique": "channel-examples",
        "title": "channel atlas",
        "model": "efficientnet_lite0",
        "setting": "_blocks.4",
        "labels": ["layer _blocks.4"],
        "folder": "efficientnet_lite0/channel-examples/_blocks.4",
    }
    assert not any(t["section"] == "channel-examples" for t in plan.gallery_tables)
