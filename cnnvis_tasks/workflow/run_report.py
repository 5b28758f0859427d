"""The end of a run: what it made and what failed, in a few lines, and whether it failed.

Snakemake's ``onsuccess`` and ``onerror`` handlers call :func:`finish_run`.  It reads
what the run wrote: every job's record (:data:`~.plan.RECORD_PATTERN`: each row's
status and reason), the image check (``images.json``; in the pictures layout the
plan holds the same, decoded at the start), and whether ``summary.csv`` and the
gallery exist.  Reasons are counted once each image's path is taken out of them, so
that a million images failing for one cause make one line.  A technique (on a model)
that made none of its results (each failed, or its image was left out of its jobs:
too large, no label, a label that names no class) makes the run fail; one that had no
image to take at all (none usable) does not.

Reads records, never pictures: one file per job.  Torch-free; Snakemake's logger and
error are used when Snakemake runs it.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from cnnvis_tasks.workflow.plan import PREDICTIONS, Plan

PREFIX = "cnnvis:"
MAX_TABLES = 8  # technique-model lines; beyond, those without trouble are folded into one
MAX_REASON_LINES = 6  # failure reasons shown under the technique lines, over all of them
REASONS_PER_TABLE = 2
INLINE_REASONS = 2  # on the images line, and in the message of a technique that failed
REASON_WIDTH = 100
MAX_DISTINCT = 2000  # distinct reasons kept per count: reasons that name each image would fill memory


def shorten(reason: Any, image: str | None = None, width: int = REASON_WIDTH) -> str:
    """A reason on one line of at most ``width`` characters, the image's path taken out
    (``image PATH: why`` and ``PATH: why`` become ``why``; ``cannot read image PATH: why``
    becomes ``cannot read image: why``), so that reasons of many images count as one."""
    text = str(reason or "").strip()
    lines = text.splitlines()
    text = " ".join(lines[0].split()) if lines else ""
    if not text:
        return "no reason given"
    if image:
        text = text.replace(image, "\0")
        text = re.sub(r"^(image )?\0:\s*", "", text).replace(" \0:", ":").replace("\0", "the image")
    if len(lines) > 1:
        text += " …"
    if len(text) > width:
        text = text[: width - 1].rstrip() + "…"
    return text or "no reason given"


def _count(counter: Counter, key: str) -> None:
    """``counter[key] += 1``, keeping at most :data:`MAX_DISTINCT` keys (the most common)."""
    counter[key] += 1
    if len(counter) > MAX_DISTINCT:
        kept = counter.most_common(MAX_DISTINCT // 2)
        counter.clear()
        counter.update(dict(kept))


def _counted(counter: Counter, limit: int) -> str:
    """``reason (count); reason (count)``, the most common first."""
    return "; ".join(f"{reason} ({count:,})" for reason, count in counter.most_common(limit))


@dataclass
class Tally:
    """The results of one technique on one model."""

    technique: str
    model: str
    written: int = 0
    failed: int = 0
    left_out: int = 0  # images the plan kept out of its jobs (too large, no label, ...)
    jobs: int = 0
    unfinished: int = 0  # jobs that have a log but no record: they failed
    not_run: int = 0  # jobs that have neither
    log: str | None = None  # the log of the first unfinished job
    reasons: Counter = field(default_factory=Counter)  # why results were not made: failed or left out

    @property
    def name(self) -> str:
        return f"{self.technique} on {self.model}"

    @property
    def all_failed(self) -> bool:
        """None of its results was made and at least one failed or was left out (every
        job's record read: one that did not run might have made some)."""
        return self.written == 0 and self.failed + self.left_out > 0 and not (self.unfinished or self.not_run)


@dataclass
class RunReport:
    """What a run made, read from its files (:func:`read_run`)."""

    results: str
    summary: str
    gallery: str
    summary_exists: bool = False
    gallery_exists: bool = False
    images_used: int = 0
    images_left_out: int = 0
    image_reasons: Counter = field(default_factory=Counter)
    tallies: dict[tuple[str, str], Tally] = field(default_factory=dict)

    def tally(self, technique: str, model: str) -> Tally:
        key = (technique, model)
        if key not in self.tallies:
            self.tallies[key] = Tally(technique, model)
        return self.tallies[key]


# Records and images.json are written by json.dumps(indent=1): each row of their list is
# an object at indent 2 and its status a key at indent 3.  A string holds no raw newline,
# so these patterns find exactly the rows: counting them is many times faster than
# parsing (a million images: a second, not ten, and no gigabyte of dicts), and only
# the rows that are not ok are parsed.  A file of another layout is parsed whole.
LAYOUT_HEAD = b'{\n "'
LAYOUT_TAILS = (b"\n ]\n}", b"[]\n}")  # the list of rows is the object's last key
ROW_START, ROW_END = b"\n  {", b"\n  }"
ROW_OK = b'\n   "status": "ok"'
ROW_NOT_OK = re.compile(rb'\n   "status": "(?!ok")[^"\\]*"')


@dataclass
class Rows:
    """The rows of a record (or of images.json): how many are ok, and the others."""

    ok: int = 0
    others: list[dict[str, Any]] = field(default_factory=list)


def _scan_rows(data: bytes) -> Rows | None:
    """The rows of a file in json.dumps(indent=1)'s layout, or None when it is not."""
    if not data.startswith(LAYOUT_HEAD) or not data.rstrip().endswith(LAYOUT_TAILS):
        return None
    rows = Rows(ok=data.count(ROW_OK))
    for match in ROW_NOT_OK.finditer(data):
        start, end = data.rfind(ROW_START, 0, match.start()), data.find(ROW_END, match.end())
        if start < 0 or end < 0:
            return None
        try:
            rows.others.append(json.loads(data[start : end + len(ROW_END)]))
        except ValueError:
            return None
    return rows if rows.ok + len(rows.others) == data.count(ROW_START) else None


def read_rows(path: str, key: str = "rows") -> Rows | None:
    """The rows of a job's record (``{"technique", "model", "rows": [...]}``; ``key``
    "images": the image check's), or None when it is missing or cannot be read."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    scanned = _scan_rows(data)
    if scanned is not None:
        return scanned
    try:
        items = json.loads(data).get(key)
    except (ValueError, AttributeError):
        return None
    if not isinstance(items, list):
        return None
    rows = Rows()
    for item in items:
        if isinstance(item, dict) and item.get("status") == "ok":
            rows.ok += 1
        elif isinstance(item, dict):
            rows.others.append(item)
    return rows


def _records(plan: Plan) -> Iterator[tuple[str, str, str, str]]:
    """(technique, model, record, log) of every job over techniques (not predictions)."""
    for job in plan.jobs:
        for part in job.parts:
            if part.technique != PREDICTIONS:
                yield part.technique, part.model, part.outputs[0].path, job.log
    for rule in plan.chunk_rules:
        parts = [part for part in rule.parts if part.technique != PREDICTIONS]
        for chunk in rule.chunks if parts else ():
            log = rule.log.format(chunk=chunk)
            for part in parts:
                yield part.technique, part.model, part.record.format(chunk=chunk), log


def image_rows(plan: Plan) -> Rows:
    """Every entry of the image source by status: the plan's (the pictures layout decodes
    every image at the start), or in the chunk layout, whose start only lists them, the
    image check's ``images.json`` when it can be read."""
    if plan.layout == "chunks":
        rows = read_rows(plan.image_status_file, "images")
        if rows is not None:
            return rows
    rows = Rows()
    for status in plan.statuses:
        if status.get("status") == "ok":
            rows.ok += 1
        else:
            rows.others.append(status)
    return rows


def read_run(plan: Plan) -> RunReport:
    """The report of a run from its files: one read per job's record, one of the image
    check (chunk layout), a look at the log of each job without a record."""
    report = RunReport(plan.results, plan.summary_file, plan.gallery_page)
    report.summary_exists = os.path.isfile(plan.summary_file)
    report.gallery_exists = os.path.isfile(plan.gallery_page)
    images = image_rows(plan)
    report.images_used, report.images_left_out = images.ok, len(images.others)
    for status in images.others:
        _count(report.image_reasons, shorten(status.get("reason"), str(status.get("path") or "")))
    for table in plan.gallery_tables:  # the gallery's order; the plan's images left out of each
        tally = report.tally(table["section"], table["table"])
        for name, reason in (table.get("failures") or {}).items():
            tally.left_out += 1
            _count(tally.reasons, shorten(reason, plan.images.get(name)))
    for technique, model, path, log in _records(plan):
        tally = report.tally(technique, model)
        tally.jobs += 1
        rows = read_rows(path)
        if rows is None:
            if os.path.exists(log):
                tally.unfinished += 1
                tally.log = tally.log or log
            else:
                tally.not_run += 1
            continue
        tally.written += rows.ok
        tally.failed += len(rows.others)
        for row in rows.others:
            _count(tally.reasons, shorten(row.get("reason"), row.get("image")))
    return report


def failed_techniques(report: RunReport) -> list[str]:
    """One message per technique (on a model) whose every result failed or was left out,
    with the most common reasons, counted; empty when none did."""
    return [
        f"{tally.name}: {_all_failed(tally)}: {_counted(tally.reasons, INLINE_REASONS)}"
        for tally in report.tallies.values()
        if tally.all_failed
    ]


def _all_failed(tally: Tally) -> str:
    count = tally.failed + tally.left_out
    return "its only result failed" if count == 1 else f"all {count:,} results failed"


def exit_status(report: RunReport, success: bool = True) -> int:
    """The run's exit status: 1 when Snakemake's run failed or a technique failed on
    every result (:func:`failed_techniques`), else 0."""
    return 0 if success and not failed_techniques(report) else 1


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}" if count == 1 else f"{count:,} {word}s"


def _table_line(tally: Tally) -> str:
    """``saliency on m: 10 written, 2 failed, 1 left out``, and its jobs that left no record."""
    if tally.all_failed:
        parts = [_all_failed(tally)] + ([f"{tally.left_out:,} left out of its jobs"] if tally.left_out else [])
    elif not tally.jobs:
        parts = ["no results: no image to take"]
    else:
        parts = [f"{tally.written:,} written"] + ([f"{tally.failed:,} failed"] if tally.failed else [])
        parts += [f"{tally.left_out:,} left out"] if tally.left_out else []
    if tally.unfinished:
        parts.append(f"{_plural(tally.unfinished, 'job')} failed (see {tally.log})")
    if tally.not_run:
        parts.append(f"{_plural(tally.not_run, 'job')} did not run")
    return f"  {tally.name}: " + ", ".join(parts)


def _reasons_shown(tallies: list[Tally]) -> dict[int, int]:
    """How many reasons each table (by position) shows: one each first, then up to
    :data:`REASONS_PER_TABLE`, within :data:`MAX_REASON_LINES` in all."""
    shown = dict.fromkeys(range(len(tallies)), 0)
    budget = MAX_REASON_LINES
    for most in range(1, REASONS_PER_TABLE + 1):
        for position, tally in enumerate(tallies):
            if budget and shown[position] < min(most, len(tally.reasons)):
                shown[position] += 1
                budget -= 1
    return shown


def report_lines(report: RunReport, success: bool = True) -> list[str]:
    """The summary of a run as plain text: a line per technique and model (at most
    :data:`MAX_TABLES`, the others folded into one) under their most common failure
    reasons, counted; about 20 lines at most however many images."""
    tallies = list(report.tallies.values())
    written, failed = sum(t.written for t in tallies), sum(t.failed for t in tallies)
    left_out = sum(t.left_out for t in tallies)
    techniques, models = {t.technique for t in tallies}, {t.model for t in tallies}
    lines = [
        f"{PREFIX} {'run finished' if success else 'run stopped (a job failed)'}: "
        f"{_plural(len(techniques), 'technique')} on {_plural(len(models), 'model')}, "
        f"{_plural(written, 'result')} written, {failed:,} failed"
        + (f", {left_out:,} left out" if left_out else "")
        + f" (in {report.results}/)"
    ]
    images = f"  images: {report.images_used:,} used, {report.images_left_out:,} left out"
    if report.images_left_out:
        images += f": {_counted(report.image_reasons, INLINE_REASONS)}"
        images += "; …" if len(report.image_reasons) > INLINE_REASONS else ""
    lines.append(images)
    shown, rest = tallies, []
    if len(tallies) > MAX_TABLES:
        troubled = [t for t in tallies if t.failed or t.left_out or t.unfinished or t.not_run or not t.jobs]
        shown = troubled[: MAX_TABLES - 1]
        rest = [t for t in tallies if not any(t is s for s in shown)]
    reasons = _reasons_shown(shown)
    for position, tally in enumerate(shown):
        lines.append(_table_line(tally) + (", most common reasons:" if reasons[position] else ""))
        lines += [f"      {count:>7,}  {why}" for why, count in tally.reasons.most_common(reasons[position])]
    if rest:
        lines.append(
            f"  {_plural(len(rest), 'more technique-model pair' if shown else 'technique-model pair')}: "
            f"{sum(t.written for t in rest):,} written, "
            f"{sum(t.failed for t in rest):,} failed"
        )
    not_run = sum(t.not_run for t in tallies)
    if not_run:
        lines.append(
            f"  {_plural(not_run, 'job')} did not run (the run stopped first, or did not ask for them): "
            "their results are not counted"
        )
    for title, path, exists in (
        ("summary", report.summary, report.summary_exists),
        ("gallery", report.gallery, report.gallery_exists),
    ):
        if not exists:
            path += " (not written)"
        elif not success:
            path += " (of an earlier run)"
        lines.append(f"  {title}: {path}")
    return lines


def summary_lines(plan: Plan, success: bool = True) -> list[str]:
    """The plan's run, read from its files, as lines of text (:func:`report_lines`)."""
    return report_lines(read_run(plan), success)


def _emit(text: str) -> None:
    """To Snakemake's log (the terminal's stderr and the run's log file), else to stderr."""
    try:
        from snakemake.logging import logger

        logger.info(text)
    except Exception:
        try:
            print(text, file=sys.stderr, flush=True)
        except Exception:
            pass


def _failure(message: str) -> Exception:
    """Snakemake's WorkflowError (printed as its other errors are), or a RuntimeError without Snakemake."""
    try:
        from snakemake.exceptions import WorkflowError
    except ImportError:
        return RuntimeError(message)
    return WorkflowError(message)


def finish_run(plan: Plan, success: bool) -> None:
    """Print the summary of a run (Snakemake's ``onsuccess``: ``success`` True; ``onerror``:
    False).  After a successful run in which a technique failed on every result, raise
    Snakemake's WorkflowError naming it: Snakemake then exits with status 1.  A failure
    to read or summarise prints one line and raises nothing: the run's own status stands."""
    try:
        report = read_run(plan)
        _emit("\n".join(report_lines(report, success)))
        failures = failed_techniques(report) if success and exit_status(report, success) else []
    except Exception as error:  # the report must never change how the run ends
        message = str(error).splitlines()[0] if str(error) else "no message"
        _emit(f"{PREFIX} cannot summarise the run: {type(error).__name__}: {message}")
        return
    if failures:
        raise _failure("\n".join(failures))
