"""The end of a run: the summary read from the jobs' records and the image check, and
its exit status (a technique that failed on every result fails the run)."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from cnnvis_tasks.workflow import run_report
from cnnvis_tasks.workflow.config import check_config
from cnnvis_tasks.workflow.plan import PREDICTIONS, make_plan
from cnnvis_tasks.workflow.run_report import (
    RunReport,
    Tally,
    exit_status,
    failed_techniques,
    finish_run,
    read_rows,
    read_run,
    report_lines,
    shorten,
    summary_lines,
)

MODEL = "efficientnet_lite0"
NO_CLASS = "label 'misc' is neither a class index, a WordNet ID nor a class name of efficientnet_lite0"
BROKEN = "cannot read image images/broken.png: not a recognised image file"


def make_config(layout="pictures", target="label"):
    return check_config(
        {
            "images": {"folder": "images"},
            "results": "results",
            "chunk_size": 2,
            "layout": layout,
            "device": "cpu",
            "share_passes": False,
            "models": {MODEL: {"weights": "random"}},
            "techniques": {
                "kernels": {"count": 4, "models": {MODEL: {"layers": ["_conv_stem"]}}},
                "saliency": {
                    "size": 32,
                    "methods": ["vanilla"],
                    "renderings": ["gray"],
                    "target": target,
                    "models": {MODEL: {}},
                },
            },
        },
        check_model_names=False,
    )


def statuses(labels=("misc", "misc", "n02123045"), broken=True):
    found = [
        {
            "name": f"{label}/{n}.png",
            "path": f"images/{label}/{n}.png",
            "label": label,
            "status": "ok",
            "size": [64, 64],
        }
        for n, label in enumerate(labels)
    ]
    if broken:
        found.append({"name": "broken.png", "path": "images/broken.png", "status": "failed", "reason": BROKEN})
    return found


def write_record(path: str, technique: str, rows: list[dict], indent: int | None = 1) -> None:
    """A record as the runner writes it (json.dumps, indent 1)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps({"technique": technique, "model": MODEL, "rows": rows}, indent=indent))


def row(image, ok=True, reason=None, **more):
    return {"image": image, "setting": "s", "status": "ok" if ok else "failed", "reason": reason, **more}


def write_records(plan, fails=lambda technique, image: None, skip=()) -> None:
    """Every job's record: each image's row failed with ``fails(technique, image)``, or ok;
    jobs over no image have one row.  Records of ``skip`` techniques are not written."""
    for job in plan.jobs:
        if job.technique == PREDICTIONS or job.technique in skip:
            continue
        images = job.images or [None]
        rows = []
        for image in images:
            reason = fails(job.technique, image)
            rows.append(row(image, ok=reason is None, reason=reason))
        write_record(job.outputs[0].path, job.technique, rows)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def label_failure(technique, image):
    """Saliency on a label that names no class fails, as the runner says it."""
    if technique == "saliency" and "/misc/" in image:
        return f"image {image}: {NO_CLASS}"
    return None


# --- reasons ----------------------------------------------------------------------------


def test_a_reason_loses_its_image_path_and_fits_one_line():
    assert shorten(f"image images/a b.png: {NO_CLASS}", "images/a b.png") == NO_CLASS
    assert shorten(BROKEN, "images/broken.png") == "cannot read image: not a recognised image file"
    assert shorten("images/x.png: the model failed on it: RuntimeError: oom", "images/x.png") == (
        "the model failed on it: RuntimeError: oom"
    )
    assert shorten("images/x.png is 3x3000 pixels", "images/x.png") == "the image is 3x3000 pixels"
    assert shorten("Traceback:\n  line 2\n  line 3") == "Traceback: …"
    assert shorten("  a   b  ") == "a b"
    assert shorten(None) == shorten("") == "no reason given"
    long = shorten("x" * 500)
    assert len(long) == run_report.REASON_WIDTH and long.endswith("…")


def test_counts_keep_the_most_common_reasons_when_every_image_has_its_own(monkeypatch):
    monkeypatch.setattr(run_report, "MAX_DISTINCT", 10)
    counter = Counter()
    for _ in range(50):
        run_report._count(counter, "common")
    for n in range(100):
        run_report._count(counter, f"rare {n}")
    assert len(counter) <= 10 and counter.most_common(1) == [("common", 50)]


# --- reading records ----------------------------------------------------------------------


@pytest.mark.parametrize("indent", [1, None, 2])
def test_rows_are_read_alike_from_the_runner_s_layout_and_any_other(tmp_path, indent):
    odd = 'a reason with "quotes", {braces} and\na second line'
    rows = [
        row("a.png"),
        row("b{x}.png", ok=False, reason=odd),
        row(None, measured={"status": "failed", "nested": [{"status": "failed"}]}),
        row("c.png", ok=False, reason="c.png: broken"),
    ]
    write_record(tmp_path / "r.json", "saliency", rows, indent=indent)
    found = read_rows(str(tmp_path / "r.json"))
    assert found.ok == 2
    assert [r["reason"] for r in found.others] == [odd, "c.png: broken"]
    assert found.others[0]["image"] == "b{x}.png"


def test_a_missing_or_broken_record_reads_as_none(tmp_path):
    assert read_rows(str(tmp_path / "missing.json")) is None
    (tmp_path / "cut.json").write_text('{\n "technique": "saliency",\n "rows": [\n  {\n   "status": "ok"')
    assert read_rows(str(tmp_path / "cut.json")) is None
    (tmp_path / "list.json").write_text("[1, 2]")
    assert read_rows(str(tmp_path / "list.json")) is None


# --- the report ---------------------------------------------------------------------------


def test_the_report_counts_images_results_and_reasons_per_technique(workdir):
    plan = make_plan(make_config(), statuses(), exists=None)
    write_records(plan, label_failure)
    Path("results/summary.csv").write_text("image\n")
    report = read_run(plan)
    assert (report.images_used, report.images_left_out) == (3, 1)
    assert report.image_reasons == Counter({"cannot read image: not a recognised image file": 1})
    saliency = report.tallies[("saliency", MODEL)]
    assert (saliency.written, saliency.failed, saliency.left_out) == (1, 2, 0)
    assert saliency.reasons == Counter({NO_CLASS: 2})
    assert report.tallies[("kernels", MODEL)].written == 1
    assert failed_techniques(report) == [] and exit_status(report) == 0 and exit_status(report, False) == 1
    lines = report_lines(report)
    assert lines[0] == "cnnvis: run finished: 2 techniques on 1 model, 2 results written, 2 failed (in results/)"
    assert lines[1] == "  images: 3 used, 1 left out: cannot read image: not a recognised image file (1)"
    assert "  kernels on efficientnet_lite0: 1 written" in lines
    at = lines.index("  saliency on efficientnet_lite0: 1 written, 2 failed, most common reasons:")
    assert lines[at + 1].split() == ["2", *NO_CLASS.split()]
    assert lines[-2:] == ["  summary: results/summary.csv", "  gallery: results/index.html (not written)"]
    assert summary_lines(plan) == lines


def test_a_technique_that_failed_on_every_result_fails_the_run_naming_it(workdir):
    plan = make_plan(make_config(), statuses(labels=("misc", "misc", "misc")), exists=None)
    write_records(plan, label_failure)
    report = read_run(plan)
    assert failed_techniques(report) == [f"saliency on efficientnet_lite0: all 3 results failed: {NO_CLASS} (3)"]
    assert exit_status(report) == 1
    assert "  saliency on efficientnet_lite0: all 3 results failed, most common reasons:" in report_lines(report)
    printed = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(run_report, "_emit", printed.append)
        with pytest.raises(Exception, match="saliency on efficientnet_lite0: all 3 results failed: label 'misc'"):
            finish_run(plan, success=True)
        assert "all 3 results failed" in printed[0]
        finish_run(plan, success=False)  # the run failed already: print, raise nothing
    assert printed[1].startswith("cnnvis: run stopped (a job failed): ")


def test_a_technique_whose_every_image_was_left_out_of_its_jobs_failed(workdir):
    # target: label, and no image has a label: the plan leaves every image out of its jobs
    plan = make_plan(make_config(), statuses(labels=(None, None), broken=False), exists=None)
    write_records(plan)
    report = read_run(plan)
    saliency = report.tallies[("saliency", MODEL)]
    assert (saliency.jobs, saliency.failed, saliency.left_out) == (0, 0, 2)
    (message,) = failed_techniques(report)
    assert message.startswith("saliency on efficientnet_lite0: all 2 results failed: the image has no label (target:")
    assert message.endswith("… (2)") and exit_status(report) == 1
    lines = report_lines(report)
    assert lines[0].endswith("1 result written, 0 failed, 2 left out (in results/)")
    assert (
        "  saliency on efficientnet_lite0: all 2 results failed, 2 left out of its jobs, most common reasons:" in lines
    )


def test_a_technique_with_no_image_to_take_at_all_has_not_failed(workdir):
    plan = make_plan(make_config(), statuses(labels=()), exists=None)  # one image, unreadable
    write_records(plan)
    report = read_run(plan)
    assert report.tallies[("saliency", MODEL)].jobs == 0 and report.tallies[("kernels", MODEL)].written == 1
    assert failed_techniques(report) == [] and exit_status(report) == 0
    lines = report_lines(report)
    assert "  saliency on efficientnet_lite0: no results: no image to take" in lines
    assert "  images: 0 used, 1 left out: cannot read image: not a recognised image file (1)" in lines


def test_missing_records_are_reported_not_raised(workdir):
    plan = make_plan(make_config(), statuses(), exists=None)
    write_records(plan, skip=("saliency", "kernels"))  # the run stopped early
    failed_job = next(job for job in plan.jobs if job.technique == "saliency")
    Path(failed_job.log).parent.mkdir(parents=True, exist_ok=True)
    Path(failed_job.log).write_text("Traceback ...\n")  # its log, no record: it failed
    report = read_run(plan)
    saliency, kernels = report.tallies[("saliency", MODEL)], report.tallies[("kernels", MODEL)]
    assert (saliency.written, saliency.unfinished, saliency.not_run) == (0, 1, 0)
    assert (kernels.written, kernels.unfinished, kernels.not_run) == (0, 0, 1)
    assert failed_techniques(report) == []  # no result failed: its jobs did
    lines = report_lines(report, success=False)
    assert f"  saliency on efficientnet_lite0: 0 written, 1 job failed (see {failed_job.log})" in lines
    assert "  kernels on efficientnet_lite0: 0 written, 1 job did not run" in lines
    assert any(line.startswith("  1 job did not run (the run stopped first") for line in lines)


def test_the_chunk_layout_reads_the_image_check(workdir):
    plan = make_plan(make_config("chunks", target="top1"), statuses(broken=False), exists=None)
    checked = statuses()
    Path("results").mkdir()
    Path("results/images.json").write_text(json.dumps({"images": checked}, indent=1))
    for rule in plan.chunk_rules:
        if rule.technique != PREDICTIONS:
            for chunk in rule.chunks:
                images = [plan.images[name] for name in plan.chunks[chunk]] if rule.folder else [None]
                write_record(rule.record.format(chunk=chunk), rule.technique, [row(image) for image in images])
    report = read_run(plan)
    assert (report.images_used, report.images_left_out) == (3, 1)
    assert report.tallies[("saliency", MODEL)].written == 3 and exit_status(report) == 0


def test_the_summary_stays_short_however_many_techniques_and_reasons():
    report = RunReport("results", "results/summary.csv", "results/index.html", True, True, 10**6, 5)
    report.image_reasons = Counter({f"reason {n}": n for n in range(1, 6)})
    for n in range(30):
        tally = report.tally(f"technique-{n}", f"model-{n % 3}")
        tally.jobs, tally.written = 4, 1000
        if n % 2:
            tally.failed = 10
            tally.reasons = Counter({f"why {k}": k + 1 for k in range(5)})
    lines = report_lines(report)
    assert len(lines) <= 20, "\n".join(lines)
    assert all(len(line) < 200 for line in lines)
    assert lines[-3] == "  23 more technique-model pairs: 23,000 written, 80 failed"


def test_a_failure_to_report_prints_one_line_and_raises_nothing(workdir, monkeypatch):
    printed = []
    monkeypatch.setattr(run_report, "_emit", printed.append)

    def broken(plan):
        raise ValueError("no rows\nmore")

    monkeypatch.setattr(run_report, "read_run", broken)
    assert finish_run(make_plan(make_config(), statuses(), exists=None), success=True) is None
    assert printed == ["cnnvis: cannot summarise the run: ValueError: no rows"]


def test_a_tally_without_results_has_not_failed():
    assert not Tally("t", "m").all_failed and Tally("t", "m", failed=1).all_failed
    assert Tally("t", "m", left_out=1).all_failed and not Tally("t", "m", written=1, failed=9).all_failed
    assert not Tally("t", "m", failed=1, not_run=1).all_failed  # the job that did not run might have made one


# --- real runs ------------------------------------------------------------------------------


def run_config(images_folder: str) -> dict:
    return {
        "images": {"folder": images_folder},
        "threads": 1,
        "device": "cpu",
        "models": {MODEL: {"weights": "random"}},
        "techniques": {
            "kernels": {"count": 4, "models": {MODEL: {"layers": ["_conv_stem"]}}},
            "saliency": {
                "size": 32,
                "methods": ["vanilla"],
                "renderings": ["gray"],
                "target": "label",
                "models": {MODEL: {}},
            },
        },
    }


@pytest.mark.slow
def test_a_run_whose_technique_failed_on_every_image_exits_non_zero_naming_it(tmp_path):
    from test_workflow import REPO, make_copy, snakemake

    workdir = make_copy(tmp_path / "wf", images=(), config=run_config("ds"))
    (workdir / "ds" / "misc").mkdir(parents=True)  # a folder whose name is no class: the labels
    for name in ("chelsea.png", "coffee.png"):
        (workdir / "ds" / "misc" / name).write_bytes((REPO / "images" / name).read_bytes())
    result = snakemake(workdir, expect=1)
    assert (workdir / "results" / "index.html").is_file()  # the run itself went through
    # the plan leaves out an image whose label names no class of the model, or its job fails on it
    message = re.search(r"^saliency on efficientnet_lite0: all 2 results failed: (.*)$", result.stderr, re.M)
    assert message and message.group(1).startswith("label 'misc' ") and message.group(1).endswith(" (2)")
    assert "cnnvis: run finished: 2 techniques on 1 model, 1 result written, " in result.stderr
    assert "  kernels on efficientnet_lite0: 1 written\n" in result.stderr


@pytest.mark.slow
def test_a_run_that_went_well_exits_zero_with_its_summary(tmp_path):
    from test_workflow import make_copy, snakemake

    config = run_config("images")
    config["techniques"]["saliency"]["target"] = "top1"
    workdir = make_copy(tmp_path / "wf", config=config)
    (workdir / "images" / "notes.png").write_text("not a picture\n")
    assert "cnnvis:" not in snakemake(workdir, "--dry-run").stderr  # a dry run prints no summary
    lines = snakemake(workdir).stderr.splitlines()
    at = lines.index("cnnvis: run finished: 2 techniques on 1 model, 3 results written, 0 failed (in results/)")
    assert lines[at + 1 : at + 6] == [
        "  images: 2 used, 1 left out: cannot read image: not a recognised image file (1)",
        "  kernels on efficientnet_lite0: 1 written",
        "  saliency on efficientnet_lite0: 2 written",
        "  summary: results/summary.csv",
        "  gallery: results/index.html",
    ]
