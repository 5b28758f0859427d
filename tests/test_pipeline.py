"""The pipelined job: images decoded ahead, rows written behind, a job's cores split;
the same files as the serial job, and a row that cannot be written fails alone."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import CAT, REPO
from PIL import Image

from cnnvis_tasks.cli import cli
from cnnvis_tasks.errors import ImageError
from cnnvis_tasks.io.images import load_batches
from cnnvis_tasks.run import pipeline


def run(*args, expect=0):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == expect, result.output
    return result


@pytest.mark.parametrize(
    "threads, device, expected",
    [(1, "cpu", (1, 1)), (2, "cpu", (2, 1)), (7, "cpu", (7, 1)), (16, "cpu", (16, 2)), (8, "cuda", (1, 8))],
)
def test_split_cores_keeps_torch_s_cpu_threads_and_gives_a_gpu_job_s_cores_to_io(threads, device, expected):
    assert pipeline.split_cores(threads, device) == expected


def test_in_order_keeps_order_and_errors_in_place_and_looks_only_so_far_ahead():
    started, lock = [], threading.Lock()

    def slow_square(n):
        with lock:
            started.append(n)
        time.sleep(0.02 * (n % 3))  # later items finish first
        if n == 4:
            raise ValueError("four")
        return n * n

    outcomes = pipeline.in_order(slow_square, range(10), workers=3, ahead=2)
    first = next(outcomes)
    time.sleep(0.1)
    assert first == (0, None) and max(started) == 2  # the item taken and at most 2 beyond it
    rest = list(outcomes)
    assert [value for value, _ in rest] == [1, 4, 9, None, 25, 36, 49, 64, 81]
    assert str(rest[3][1]) == "four" and all(error is None for k, (_, error) in enumerate(rest) if k != 3)
    assert list(pipeline.in_order(slow_square, range(6), workers=0, ahead=2))[4][1].args == ("four",)


def test_behind_gives_outcomes_in_order_and_cancels_what_has_not_started():
    gate = threading.Event()
    with pipeline.Behind(1) as behind:
        behind.submit("a", lambda: gate.wait(5) and "A")
        behind.submit("b", lambda: 1 / 0)
        behind.submit("c", lambda: "C")
        assert list(behind.finished(keep=3)) == [] and len(behind) == 3  # nothing done yet: no wait
        gate.set()
        outcomes = list(behind.finished())
    assert [(key, value) for key, value, _ in outcomes] == [("a", "A"), ("b", None), ("c", "C")]
    assert isinstance(outcomes[1][2], ZeroDivisionError) and len(behind) == 0

    ran = []
    start = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        with pipeline.Behind(1) as behind:
            behind.submit(0, time.sleep, 0.2)
            for k in range(1, 20):
                behind.submit(k, ran.append, k)
            raise KeyboardInterrupt
    assert ran == [] and time.perf_counter() - start < 2  # the queued tasks were cancelled, nothing hung


def test_background_decoding_keeps_batches_order_and_failures(tmp_path):
    paths = []
    for k, size in enumerate([(40, 30), (40, 30), (30, 40), (40, 30), (40, 30), (40, 30), (30, 40)]):
        path = tmp_path / f"{k}.png"
        Image.fromarray(np.full((size[1], size[0], 3), k * 30, dtype=np.uint8)).save(path)
        paths.append(path)
    (tmp_path / "3.png").write_bytes(b"not a picture")
    paths.insert(5, tmp_path / "missing.png")

    def batches(workers):
        failures = []
        seen = [
            (indices, batch.clone(), list(failures))
            for indices, batch in load_batches(
                paths, 0, 3, failed=lambda i, e: failures.append((i, str(e))), workers=workers
            )
        ]
        return seen, failures

    serial, serial_failures = batches(0)
    threaded, threaded_failures = batches(3)
    assert [indices for indices, _, _ in threaded] == [[0, 1], [2], [4], [6], [7]]
    assert [indices for indices, _, _ in serial] == [[0, 1], [2], [4], [6], [7]]
    assert all(a[0] == b[0] and a[1].equal(b[1]) and a[2] == b[2] for a, b in zip(serial, threaded))
    assert threaded_failures == serial_failures and [i for i, _ in threaded_failures] == [3, 5]
    assert "not a recognised image file" in threaded_failures[0][1] and "not found" in threaded_failures[1][1]
    with pytest.raises(ImageError, match="not a recognised image file"):
        list(load_batches(paths, 0, 3, workers=2))


@pytest.fixture
def photos(tmp_path):
    """Six pictures of two sizes, so that batches of 2 are computed and written in turn."""
    folder = tmp_path / "photos"
    folder.mkdir()
    cat = Image.open(CAT).convert("RGB")
    for k in range(6):
        picture = cat.rotate(15 * k) if k % 2 else cat.transpose(Image.Transpose.FLIP_LEFT_RIGHT).crop((0, 0, 300, 280))
        picture.save(folder / f"p{k}.png")
    Image.open(REPO / "images" / "coffee.png").convert("RGB").save(folder / "p6-coffee.png")
    return folder


def _files(folder):
    return {path.relative_to(folder): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.mark.parametrize(
    "technique, options",
    [
        ("grad-cam", ["--model", "resnet18", "--weights", "random", "--size", "64"]),
        ("saliency", ["--model", "resnet18", "--weights", "random", "--size", "64", "--method", "vanilla"]),
    ],
)
def test_the_pipelined_job_writes_the_serial_jobs_files_byte_for_byte(
    technique, options, photos, tmp_path, monkeypatch
):
    common = [technique, "--image", photos, *options, "--batch-size", "2", "--device", "cpu", "-q", "--keep-going"]
    outputs = {}
    for name, workers in (("serial", 0), ("pipelined", 3)):
        monkeypatch.setattr(pipeline, "split_cores", lambda threads, device, workers=workers: (threads, workers))
        out = tmp_path / name
        run(*common, "--record", out / "record.json", "--out-dir", out, "--png-level", "6")
        outputs[name] = _files(out)
    assert len(outputs["serial"]) == 1 + 7 * (3 if technique == "grad-cam" else 2)
    assert outputs["serial"] == outputs["pipelined"]


def test_a_row_whose_files_cannot_be_written_fails_alone(photos, tmp_path, monkeypatch):
    from cnnvis_tasks.run import writer

    written = writer.save_png

    def refusing(path, picture, facts=None, level=1):
        if "p3" in str(path) and np.asarray(picture).shape[0] > 1:  # its pictures, not its placeholders
            raise OSError(36, "File name too long")  # one row's; a full disk stops the job (test_faults.py)
        return written(path, picture, facts, level)

    monkeypatch.setattr(writer, "save_png", refusing)
    out, record = tmp_path / "out", tmp_path / "record.json"
    common = ["grad-cam", "--image", photos, "--model", "resnet18", "--weights", "random", "--size", "64"]
    common += ["--batch-size", "2", "--device", "cpu", "--threads", "2", "-q", "--out-dir", out]
    result = run(*common, "--keep-going", "--placeholders", "--record", record)
    rows = {row["image"].rsplit("/", 1)[-1]: row for row in json.loads(record.read_text())["rows"]}
    assert [name for name, row in sorted(rows.items()) if row["status"] == "failed"] == ["p3.png"]
    reason = rows["p3.png"]["reason"]
    assert reason.endswith("p3.png: writing its files failed: OSError: [Errno 36] File name too long")
    assert f"failed: {reason}" in result.output
    assert Image.open(out / "p3-auto-overlay.png").size == (1, 1)
    assert Image.open(out / "p4-auto-overlay.png").size[1] == 64

    result = run(*common, expect=1)
    lines = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert (
        len(lines) == 1 and "p3.png: writing its files failed: OSError" in lines[0] and "Traceback" not in result.output
    )
