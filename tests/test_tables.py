"""Numbers as a kind of output: a technique whose description has a ``table`` gets its
CSV files, its pictures and its gallery tables through the generic path (the record,
``cnnvis-tasks table-summary``, the gallery), with no code that names it."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from cnnvis_tasks.io.outputs import read_metadata
from cnnvis_tasks.technique import CHOICE, SIZE, Option, Rendered, Rendering, Result, Technique
from cnnvis_tasks.technique.table import Measure, Table, TablePicture
from cnnvis_tasks.techniques import all_techniques
from cnnvis_tasks.techniques.metrics import TABLE as METRICS_TABLE
from cnnvis_tasks.workflow import tables

CHANNELS = ("red", "green", "blue")


def _mean_pixel(model, images, targets=None, *, channel="red", **_options):
    picked = images[:, CHANNELS.index(channel)]
    return Result(
        "brightness",
        maps=picked,
        inputs=images,
        facts={"channel": channel},
        row_numbers={"mean_pixel": picked.mean(dim=(1, 2)), "darkest": picked.amin(dim=(1, 2))},
    )


def _square(result, row, renderings, options):
    value = int(round(255 * float(result.maps[row].mean())))
    return Rendered({"square": (np.full((4, 4, 3), value, np.uint8), {})})


def _bars(rows, model):
    """One gray bar per row, as tall as its mean pixel: a picture drawn from the model's rows."""
    if not rows:
        return None
    picture = np.full((20, 2 * len(rows), 3), 255, np.uint8)
    for k, row in enumerate(rows):
        picture[20 - int(20 * row.numbers["mean_pixel"]) :, 2 * k] = 0
    return picture


BRIGHTNESS = Technique(
    name="brightness",
    order=125,
    title="How bright",
    summary="The mean pixel of each image, per channel.",
    description="The mean value of one channel of each image, and its darkest pixel.",
    reference="",
    options=(
        Option("channel", CHOICE, "red", "The channel to measure.", choices=CHANNELS, repeatable=True),
        SIZE,
    ),
    renderings=(Rendering("square", "a square of the mean pixel"),),
    raw="The channel (.npy).",
    compute=_mean_pixel,
    render=_square,
    table=Table(
        name="brightness",
        measures=(
            Measure("mean_pixel", "Mean pixel", higher_is_better=True, short="mean"),
            Measure("darkest", "Darkest <pixel>", higher_is_better=False, short="darkest", ranks=False),
        ),
        identity=("model", "channel", "image"),
        group="channel",
        heading="The brightest channel",
        pictures=(TablePicture("bars", "the mean pixel of each image", _bars),),
    ),
)


@pytest.fixture
def with_brightness(monkeypatch):
    """The made-up technique found as a module of cnnvis_tasks.techniques would be."""
    import cnnvis_tasks.techniques as registry

    known = all_techniques() + (BRIGHTNESS,)
    monkeypatch.setattr(registry, "all_techniques", lambda: known)
    monkeypatch.setattr("cnnvis_tasks.gallery.SECTION_TECHNIQUES", {t.name: t for t in known})
    yield BRIGHTNESS


def _images(folder):
    folder.mkdir(parents=True)
    paths = []
    for name, colour in (("dark", (20, 40, 60)), ("light", (250, 200, 100)), ("mid", (128, 128, 128))):
        path = folder / f"{name}.png"
        Image.fromarray(np.full((32, 32, 3), colour, np.uint8)).save(path)
        paths.append(path)
    return paths


def test_the_table_says_its_files_columns_and_order():
    table = BRIGHTNESS.table
    assert table.files("results", ["m", "n"]) == [
        "results/brightness.csv",
        "results/brightness-summary.csv",
        "results/brightness/m-bars.png",
        "results/brightness/n-bars.png",
    ]
    assert table.row_columns == ("model", "channel", "image", "mean_pixel", "darkest")
    assert table.summary_columns == ("model", "channel", "metric", "mean", "low", "high", "count", "better")
    assert table.order == "their mean rank over mean"
    assert table.caption({"mean_pixel": 0.5, "darkest": 0.25, "other": 1.0}) == ["mean 0.500 \u00b7 darkest 0.250"]
    # the trust metrics' table, as the files and the gallery have always said it
    assert METRICS_TABLE.files("results", ["m"]) == [
        "results/metrics.csv",
        "results/metrics-summary.csv",
        "results/metrics/m-curves.png",
    ]
    assert METRICS_TABLE.order == "their mean rank over deletion, insertion, ROAD and faithfulness"
    with pytest.raises(ValueError, match="group"):
        Table("t", (Measure("x", "X", True),), identity=("model", "image"), group="method", heading="T")


def test_a_new_table_technique_gets_its_csv_files_pictures_and_gallery_tables(with_brightness, tmp_path):
    from test_gallery import run_gallery

    from cnnvis_tasks.cli import cli
    from cnnvis_tasks.cli.techniques import make_command

    assert tables.table_techniques()[-1] is BRIGHTNESS  # found by its description alone
    paths = _images(tmp_path / "in")
    results = tmp_path / "results"
    spec = {
        "models": ["efficientnet_lite0"],
        "chunks": ["chunk000of001"],
        "chunk_count": 1,
        "settings": [
            {"model": "efficientnet_lite0", "technique": "brightness", "setting": channel}
            for channel in ("red", "blue")
        ],
        "records": "records/{model}/{technique}/{setting}/{chunk}.json",
        "tables": [  # the pictures' table, as the plan gives it
            {
                "section": "brightness",
                "table": "efficientnet_lite0",
                "per_image": True,
                "columns": [
                    {"key": channel, "label": [channel], "path": f"../out/{{image}}-{channel}.png"}
                    for channel in ("red", "blue")
                ],
            }
        ],
    }
    command = make_command(BRIGHTNESS)
    for entry in spec["settings"]:
        record = results / spec["records"].format(**entry, chunk="chunk000of001")
        arguments = ["--model", "efficientnet_lite0", "--channel", entry["setting"], "--size", "32"]
        arguments += [word for path in paths for word in ("--image", str(path))]
        arguments += ["--out-dir", str(tmp_path / "out"), "--record", str(record), "--keep-going", "--placeholders"]
        result = CliRunner().invoke(command, [*arguments, "--device", "cpu", "-q"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
    status = results / "images.json"
    status.write_text(
        json.dumps({"images": [{"name": p.stem, "path": str(p), "status": "ok", "reason": None} for p in paths]})
    )
    out = results / "brightness.csv"
    summary_command = ["table-summary", "--spec", json.dumps(spec), "--images", str(status), "--out", str(out)]
    result = CliRunner().invoke(cli, summary_command, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    with out.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["model", "channel", "image", "mean_pixel", "darkest"]
    assert [(row["channel"], row["image"]) for row in rows] == [
        (channel, name) for channel in ("red", "blue") for name in ("dark", "light", "mid")
    ]
    means = {(row["channel"], row["image"]): float(row["mean_pixel"]) for row in rows}
    assert means[("red", "light")] == pytest.approx(250 / 255, abs=1e-4)
    assert means[("blue", "dark")] == pytest.approx(60 / 255, abs=1e-4)
    with (results / "brightness-summary.csv").open(newline="") as handle:
        summary = {(row["channel"], row["metric"]): row for row in csv.DictReader(handle)}
    red = summary[("red", "mean_pixel")]
    assert float(red["mean"]) == pytest.approx((20 + 250 + 128) / 3 / 255, abs=1e-4)
    assert red["count"] == "3" and red["better"] == "higher" and summary[("red", "darkest")]["better"] == "lower"
    assert float(red["low"]) <= float(red["mean"]) <= float(red["high"])
    bars = results / "brightness" / "efficientnet_lite0-bars.png"
    assert Image.open(bars).size == (2 * 6, 20)  # a bar per row: 2 channels x 3 images
    assert read_metadata(bars) == {"model": "efficientnet_lite0", "images": 3}
    assert all(Path(path).is_file() for path in BRIGHTNESS.table.files(str(results), spec["models"]))

    page = run_gallery(results, status, spec, "--table-summary", str(results / "brightness-summary.csv"))
    text = page.read_text()
    assert 'id="brightness"' in text and "How bright" in text
    assert '<h3 id="brightness--efficientnet_lite0">The brightest channel: efficientnet_lite0</h3>' in text
    assert "<th>channel</th><th>Mean pixel &uarr;</th><th>Darkest &lt;pixel&gt; &darr;</th>" in text
    assert text.index("<th>red</th>") < text.index("<th>blue</th>")  # the brighter channel first
    assert "channels ordered\nby their mean rank over mean;" in text
    assert 'href="brightness.csv"' in text and 'href="brightness-summary.csv"' in text
    assert 'src="brightness/efficientnet_lite0-bars.png"' in text
    assert 'alt="efficientnet_lite0: the mean pixel of each image"' in text
    # each picture's caption: its row's numbers, from the table's description
    assert text.index("The brightest channel: efficientnet_lite0") < text.index('src="../out/dark-red.png"')
    assert f"mean {20 / 255:.3f} \u00b7 darkest {20 / 255:.3f}" in text


def test_a_file_that_names_no_table_is_refused(tmp_path):
    from cnnvis_tasks.cli import cli

    result = CliRunner().invoke(cli, ["table-summary", "--spec", "{}", "--out", str(tmp_path / "other.csv")])
    assert result.exit_code == 1 and "names the table of no technique" in result.output
    assert "metrics.csv (metrics)" in result.output
