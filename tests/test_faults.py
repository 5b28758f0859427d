"""Faults under load: a full disk, a job killed mid-batch, a node lost mid-job.

A full disk stops a job as a whole, in one line that says where and how far it got,
having written nothing partial (no row is failed for it); a job cut off leaves at most
temporary files, which its next run removes.  The tests with a real full disk mount a
small tmpfs (root only: skipped elsewhere, saying so; CI runs them as root).
"""

from __future__ import annotations

import contextlib
import copy
import csv
import errno
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import CAT, REPO
from PIL import Image
from test_workflow import environment, make_copy, planned, snakemake

from cnnvis_tasks.cli import cli
from cnnvis_tasks.errors import DiskFull
from cnnvis_tasks.io import outputs
from cnnvis_tasks.io.outputs import atomic_write, remove_stale_temporaries, save_png

MODEL = ["--model", "resnet18", "--weights", "random", "--size", "64", "--device", "cpu", "--threads", "2", "-q"]


def run(*args, expect=0):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == expect, result.output
    return result


@pytest.fixture
def photos(tmp_path):
    """Seven photos, computed in batches of 2 and written behind the compute."""
    folder = tmp_path / "photos"
    folder.mkdir()
    cat = Image.open(CAT).convert("RGB")
    for k in range(6):
        cat.rotate(20 * k).save(folder / f"p{k}.png")
    Image.open(REPO / "images" / "coffee.png").convert("RGB").save(folder / "p6-coffee.png")
    return folder


def temporaries(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*.tmp"))


def complete(path: Path) -> bool:
    """A PNG that decodes in full."""
    try:
        with Image.open(path) as image:
            image.load()
        return True
    except OSError:
        return False


def disk_full_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if "no space left on" in line]


# --- a full disk, without a mount ----------------------------------------------------


def test_a_full_disk_stops_the_job_as_a_whole_and_fails_no_row(photos, tmp_path, monkeypatch):
    """From the fifth picture on the disk is 'full': before, the job failed each row after
    that, wrote placeholders and recorded healthy images as failed."""
    from cnnvis_tasks.run import writer

    written, real = [], writer.save_png

    def filling(path, picture, facts=None, level=1):
        if len(written) >= 4:

            def write(handle):
                handle.write(b"\x89PNG half a picture")
                raise OSError(errno.ENOSPC, "No space left on device")

            return atomic_write(path, write)
        written.append(path)
        return real(path, picture, facts, level)

    monkeypatch.setattr(writer, "save_png", filling)
    out, record = tmp_path / "out", tmp_path / "record.json"
    common = ["grad-cam", "--image", photos, *MODEL, "--batch-size", "2", "--out-dir", out]
    result = run(*common, "--keep-going", "--placeholders", "--record", record, expect=1)
    lines = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert lines[0].startswith("Error: no space left on ")
    assert lines[0].endswith(": 4 pictures written, 17 not; free some space and run again"), lines[0]
    assert "failed:" not in result.output  # no row failed for it
    assert not record.exists() and temporaries(out) == []
    pictures = sorted(out.glob("*.png"))
    assert sorted(pictures) == sorted(written)  # no placeholder, every picture whole
    assert all(complete(path) and Image.open(path).size != (1, 1) for path in pictures)


def test_atomic_write_says_where_the_disk_is_full_and_leaves_nothing(tmp_path):
    target = tmp_path / "a.json"
    target.write_text("before")

    def write(handle):
        handle.write(b"half")
        raise OSError(errno.EDQUOT, "Disk quota exceeded")

    with pytest.raises(DiskFull) as caught:
        atomic_write(target, write)
    assert caught.value.errno == errno.EDQUOT and isinstance(caught.value, OSError)
    assert str(caught.value).startswith("disk quota exceeded on ") and str(caught.value).endswith(f"writing {target}")
    assert target.read_text() == "before" and sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]
    # any other error is itself
    with pytest.raises(OSError) as caught:
        atomic_write(target, lambda handle: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error")))
    assert not isinstance(caught.value, DiskFull) and caught.value.errno == errno.EIO


def test_stale_temporaries_of_a_jobs_own_files_are_removed_and_no_others(tmp_path):
    folder = tmp_path / "chelsea.png"
    folder.mkdir()
    mine, theirs = folder / "vanilla-gray.png", folder / "guided-gray.png"
    stale = [folder / ".vanilla-gray.png.ab_3x9z1.tmp", folder / ".vanilla-gray.step0003.png.k2j4h5g6.tmp"]
    kept = [folder / ".guided-gray.png.ab_3x9z1.tmp", folder / "vanilla-gray.png", folder / "notes.tmp"]
    for path in stale + kept:
        path.write_bytes(b"\x89PNG cut")
    assert remove_stale_temporaries([mine, tmp_path / "missing" / "x.png"]) == 2
    assert sorted(folder.iterdir()) == sorted(kept) and theirs.name not in {p.name for p in folder.iterdir()}


def test_the_log_keeps_room_to_say_why(tmp_path):
    log = tmp_path / "job.log"
    with open(log, "wb") as handle:
        handle.write(b"started\n")
        handle.flush()
        assert outputs.keep_room(handle.fileno())
    assert log.read_bytes() == b"started\n"  # the size is kept
    read, write = os.pipe()
    assert not outputs.keep_room(write)  # a pipe: nothing to reserve
    os.close(read), os.close(write)


# --- a full disk: a small tmpfs ------------------------------------------------------


@contextlib.contextmanager
def small_disk(folder: Path, size: str):
    """A tmpfs of ``size`` mounted at ``folder`` (unmounted after); skips where mounting is not permitted."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("a full disk needs a small file system: mounting a tmpfs needs root (CI runs this as root)")
    try:
        command = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)]
        mounted = subprocess.run(command, capture_output=True)
    except FileNotFoundError:
        pytest.skip("a full disk needs a small file system: no mount command here")
    if mounted.returncode != 0:
        pytest.skip(f"a full disk needs a small file system: mount refused: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        if subprocess.run(["umount", str(folder)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def remount(folder: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(folder)], check=True)


def test_a_full_tmpfs_stops_the_job_with_every_file_whole_and_a_bigger_one_completes_it(photos, tmp_path):
    with small_disk(tmp_path / "disk", "48k") as disk:
        out, record = disk / "out", disk / "record.json"
        common = ["grad-cam", "--image", photos, *MODEL, "--batch-size", "2", "--out-dir", out]
        common += ["--keep-going", "--placeholders", "--record", record]
        result = run(*common, expect=1)
        lines = [line for line in result.output.splitlines() if line.startswith("Error")]
        assert len(lines) == 1 and "Traceback" not in result.output and "failed:" not in result.output
        pictures = sorted(out.glob("*.png"))
        assert lines[0] == (
            f"Error: no space left on tmpfs at {disk}: {len(pictures)} pictures written, "
            f"{21 - len(pictures)} not; free some space and run again"
        )
        assert 0 < len(pictures) < 21 and all(complete(path) and Image.open(path).size != (1, 1) for path in pictures)
        assert not record.exists() and temporaries(disk) == []

        remount(disk, "4m")
        run(*common)
        rows = json.loads(record.read_text())["rows"]
        assert len(rows) == 7 and all(row["status"] == "ok" for row in rows)
        assert len(list(out.glob("*.png"))) == 21 and all(complete(path) for path in out.glob("*.png"))
        assert temporaries(disk) == []


# --- the workflow: small configs in a copy -------------------------------------------

IMAGES = ("chelsea.png", "astronaut.png", "coffee.png", "rocket.jpg")
CONFIG = {
    "images": {"folder": "images"},
    "chunk_count": 1,
    "share_passes": False,
    "threads": 1,
    "device": "cpu",
    "models": {"efficientnet_lite0": {"weights": "default"}},
    "techniques": {
        "saliency": {"size": 64, "methods": ["vanilla", "guided"], "models": {"efficientnet_lite0": {}}},
        "grad_cam": {"size": 64, "renderings": ["gray", "overlay"], "models": {"efficientnet_lite0": {}}},
    },
}
LAYOUTS = ["pictures", "chunks"]
# what each compute job writes, its pictures' folder below the model's: (technique folder, setting)
JOBS = [("saliency", "vanilla"), ("saliency", "guided"), ("grad-cam", "auto")]


def workflow_copy(root: Path, layout: str) -> Path:
    workdir = make_copy(root, images=IMAGES, config=copy.deepcopy(CONFIG) | {"layout": layout})
    for name in ("envs",):  # the rules' environment files, where make_copy does not copy them
        if (REPO / name).is_dir() and not (workdir / name).exists():
            shutil.copytree(REPO / name, workdir / name)
    return workdir


def records(results: Path) -> dict[str, Path]:
    """Each compute job's record by "technique/setting"."""
    found = {}
    for technique, setting in JOBS:
        paths = list((results / "records" / "efficientnet_lite0" / technique / setting).glob("*.json"))
        if paths:
            found[f"{technique}/{setting}"] = paths[0]
    return found


def assert_all_whole(workdir: Path) -> None:
    """Every picture complete, no temporary file, every record complete with each image ok,
    the summary readable."""
    results = workdir / "results"
    pictures = [path for path in results.rglob("*.png") if path.is_file()]
    assert pictures and all(complete(path) for path in pictures)
    assert temporaries(workdir / "results") == []
    found = records(results)
    assert sorted(found) == sorted(f"{t}/{s}" for t, s in JOBS)
    for path in found.values():
        rows = json.loads(path.read_text())["rows"]
        assert len(rows) == len(IMAGES) and all(row["status"] == "ok" for row in rows), path
    summary = list(csv.DictReader(io.StringIO((results / "summary.csv").read_text())))
    assert len(summary) == len(IMAGES)
    assert planned(workdir) == {}


def first_rules(layout: str) -> list[str]:
    """The rules a first, roomy run makes: the images' check, the predictions and one saliency job."""
    chunk = "_chunk000of001" if layout == "pictures" else ""
    return [f"saliency_efficientnet_lite0_vanilla{chunk}", f"predictions_efficientnet_lite0{chunk}"]


@pytest.mark.slow
@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_workflow_that_fills_its_disk_fails_those_jobs_in_one_line_and_the_next_run_makes_only_them(tmp_path, layout):
    workdir = workflow_copy(tmp_path / "wf", layout)
    with small_disk(workdir / "results", "16m") as results:
        snakemake(workdir, "--until", *first_rules(layout))
        before = {path: path.stat().st_mtime_ns for path in results.rglob("*") if path.is_file()}
        done = records(results)
        assert sorted(done) == ["saliency/vanilla"]
        # fill the disk, but for a few pictures' room
        free = os.statvfs(results)
        filler = results / "filler"
        filler.write_bytes(b"\0" * (free.f_bavail * free.f_frsize - 40 * 1024))
        # one job at a time: a job that starts on a disk already full has no room for its log line
        result = snakemake(workdir, "--cores", "1", expect=1)
        shown = result.stdout + result.stderr
        missing = [(t, s) for t, s in JOBS if f"{t}/{s}" not in records(results)]
        logs = {job: list((results / "logs" / "efficientnet_lite0" / job[0] / job[1]).glob("*.log")) for job in missing}
        failed = [job for job in missing if logs[job]]  # the others did not start: the run stopped
        assert failed, "no job ran out of space"
        for job in failed:
            log = logs[job][0]
            lines = disk_full_lines(log.read_text())
            assert len(lines) == 1, log.read_text()
            assert lines[0].startswith(f"Error: no space left on tmpfs at {results}: ")
            assert lines[0].endswith(" not; free some space and run again")
            assert lines[0] in shown  # Snakemake shows the failed job's log
        # nothing partial: every picture present complete, no temporary file, no record of a failed job
        broken = [str(path) for path in results.rglob("*.png") if path.is_file() and not complete(path)]
        assert broken == [] and temporaries(results) == [] and not (results / "summary.csv").exists()
        # space freed: the next run makes the failed jobs (and the tables after them) alone
        filler.unlink()
        jobs = planned(workdir, by_rule=True)
        compute = sorted(rule for rule in jobs if rule.startswith(("saliency", "grad_cam")))
        assert len(compute) == len(missing) and not any("vanilla" in rule for rule in compute), jobs
        assert "predictions_efficientnet_lite0" + ("_chunk000of001" if layout == "pictures" else "") not in jobs
        snakemake(workdir)
        assert all(path.stat().st_mtime_ns == mtime for path, mtime in before.items() if "vanilla" in str(path))
        assert done["saliency/vanilla"].stat().st_mtime_ns == before[done["saliency/vanilla"]]
        assert_all_whole(workdir)


# --- a job killed mid-batch, a node lost mid-job -------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_run_killed_mid_batch_is_rerun_cleanly(tmp_path, layout):
    workdir = workflow_copy(tmp_path / "wf", layout)
    process = subprocess.Popen(
        [sys.executable, "-m", "snakemake", "--cores", "2"],
        cwd=workdir,
        env=environment(workdir),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    results = workdir / "results"
    folder = results / ("chunks" if layout == "chunks" else "") / "efficientnet_lite0"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and process.poll() is None:
            if folder.exists() and any(path.is_file() for path in folder.rglob("*.png")):  # not an image's folder
                break
            time.sleep(0.05)
        assert process.poll() is None, "the run finished before it could be killed"
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # snakemake and its jobs, mid-batch
        process.wait()
    assert len(records(results)) < len(JOBS)
    snakemake(workdir, "--unlock")
    snakemake(workdir)  # the default profile: --rerun-incomplete
    assert_all_whole(workdir)


@pytest.mark.slow
@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_job_whose_node_vanished_mid_write_is_rerun_cleanly(tmp_path, layout):
    """Some of a job's pictures written (not its own: stale ones), its record missing and
    a temporary file cut off beside them: the next run makes them all again."""
    workdir = workflow_copy(tmp_path / "wf", layout)
    results = workdir / "results"
    snakemake(workdir, "--until", *first_rules(layout))  # the images' check and a first job
    record = records(results)["saliency/vanilla"]
    pictures = sorted(
        path
        for path in results.rglob("*.png")
        if path.is_file() and "saliency" in path.parts and "vanilla" in str(path)
    )
    assert len(pictures) == 2 * len(IMAGES)
    # the node vanished: its record lost, half its pictures written (stale ones), one cut off
    record.unlink()
    for path in pictures[len(pictures) // 2 :]:
        path.unlink()
    stale = pictures[: len(pictures) // 2]
    for path in stale:
        save_png(path, np.zeros((4, 4, 3), np.uint8), {"stale": True})
    cut = pictures[-1].parent / f".{pictures[-1].name}.x1y2z3_4.tmp"
    cut.write_bytes(pictures[0].read_bytes()[:40])
    snakemake(workdir)
    assert not cut.exists()
    assert all("stale" not in outputs.read_metadata(path) and Image.open(path).size[0] > 4 for path in stale)
    assert_all_whole(workdir)
