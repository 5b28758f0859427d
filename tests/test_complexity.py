"""Complexity: sparseness and entropy of attribution maps, a technique whose numbers make a table."""

import csv
import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from cnnvis_tasks.techniques.complexity import complexity, sparseness


def quantus_sparseness(values: np.ndarray) -> float:
    """Quantus's Sparseness of one map, written from its definition: |a| divided by its
    largest value, 1e-7 added, sorted, then the Gini index."""
    a = np.abs(values.astype(np.float64)).reshape(-1)
    a = a / a.max() if a.max() > 0 else a
    a = np.sort(a + 1e-7)
    n = a.size
    return float(np.sum((2 * np.arange(1, n + 1) - n - 1) * a) / (n * np.sum(a)))


def test_sparseness_and_complexity_of_maps_whose_answer_is_known():
    n = 64
    one_hot = torch.zeros(1, 8, 8)
    one_hot[0, 3, 5] = 2.5
    uniform = torch.full((1, 8, 8), 0.3)
    maps = torch.cat([one_hot, uniform, -one_hot])  # a sign does not change either
    gini, entropy = sparseness(maps), complexity(maps)
    assert gini[0].item() == pytest.approx((n - 1) / n, abs=1e-5) and gini[2].item() == gini[0].item()
    assert gini[1].item() == pytest.approx(0.0, abs=1e-12)
    assert entropy[0].item() == 0.0 and entropy[1].item() == pytest.approx(math.log(n), rel=1e-12)
    assert math.isnan(complexity(torch.zeros(1, 4, 4))[0].item())  # an all-zero map has no shares


def test_sparseness_equals_the_definition_on_random_maps():
    generator = np.random.default_rng(3)
    maps = generator.normal(size=(5, 13, 11)) * generator.uniform(0.1, 10, size=(5, 1, 1))
    maps[2] = np.where(maps[2] > 1.0, maps[2], 0.0)  # mostly zero
    found = sparseness(torch.from_numpy(maps)).numpy()
    expected = [quantus_sparseness(m) for m in maps]
    np.testing.assert_allclose(found, expected, rtol=1e-12, atol=1e-12)
    shares = np.abs(maps) / np.abs(maps).sum(axis=(1, 2), keepdims=True)
    entropy = [-sum(p * math.log(p) for p in row.reshape(-1) if p > 0) for row in shares]
    np.testing.assert_allclose(complexity(torch.from_numpy(maps)).numpy(), entropy, rtol=1e-12)


def test_the_command_records_each_methods_numbers_and_the_table_summary_collects_them(tmp_path):
    """Through the generic path alone: the command's record, then table-summary's CSV files."""
    from cnnvis_tasks.cli import cli

    for k in range(2):
        pixels = np.random.default_rng(k).integers(0, 255, size=(48, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / f"p{k}.png")
    out = tmp_path / "results"
    record = out / "records/resnet18/complexity/grad-cam/chunk000of001.json"
    common = ["--model", "resnet18", "--weights", "random", "--device", "cpu", "--threads", "1", "--size", "48"]
    images = ["--image", str(tmp_path / "p0.png"), "--image", str(tmp_path / "p1.png")]
    result = CliRunner().invoke(
        cli,
        ["complexity", *common, *images, "--explain", "grad-cam", "--out-dir", str(out / "pictures")]
        + ["--record", str(record)],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(record.read_text())["rows"]
    assert [row["status"] for row in rows] == ["ok", "ok"]
    for row in rows:
        measured = row["measured"]
        assert 0.0 < measured["sparseness"] < 1.0 and 0.0 < measured["complexity"] <= math.log(48 * 64) + 1e-9
        assert measured["method"] == "Grad-CAM" and measured["explain"] == "grad-cam"
        assert isinstance(measured["target"], int)
    assert sorted(p.name for p in (out / "pictures").iterdir()) == ["p0-grad-cam.png", "p1-grad-cam.png"]

    status = tmp_path / "images.json"
    names = [{"name": f"p{k}.png", "path": str(tmp_path / f"p{k}.png"), "status": "ok"} for k in range(2)]
    status.write_text(json.dumps({"images": names}))
    spec = {
        "layout": "pictures",
        "chunks": ["chunk000of001"],
        "models": ["resnet18"],
        "settings": [{"model": "resnet18", "technique": "complexity", "setting": "grad-cam"}],
        "records": "records/{model}/{technique}/{setting}/{chunk}.json",
    }
    summary = CliRunner().invoke(
        cli,
        ["table-summary", "--spec", json.dumps(spec), "--images", str(status), "--out", str(out / "complexity.csv")],
        catch_exceptions=False,
    )
    assert summary.exit_code == 0, summary.output
    with (out / "complexity.csv").open(newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [float(row["sparseness"]) for row in table] == pytest.approx([r["measured"]["sparseness"] for r in rows])
    with (out / "complexity-summary.csv").open(newline="") as handle:
        means = {(row["method"], row["metric"]): row for row in csv.DictReader(handle)}
    mean = sum(r["measured"]["complexity"] for r in rows) / 2
    assert float(means[("Grad-CAM", "complexity")]["mean"]) == pytest.approx(mean)
