#!/usr/bin/env python3
"""Prove that a refactor kept behaviour: run the workflow with a pinned commit's code and
with the current tree, on the same config and images, and compare every output.

    .venv/bin/python scripts/compare_outputs.py --against 1831ffc \\
        --config config.yaml --config config/seed.yaml [--baseline-dir DIR] [--cores 2]

For each config, the pinned commit is checked out with ``git worktree add --detach``
and Snakemake runs that tree's Snakefile with ``PYTHONPATH`` set to it, so that the
Snakemake process (which plans with ``cnnvis_tasks.workflow``) and every job's
``cnnvis-tasks`` import the old package (Python's path finder comes before the
editable install's finder; checked before each run: a ``-v`` import trace of a dry run
and of ``cnnvis-tasks --help`` must show no ``cnnvis_tasks`` module from any other
tree).  The current tree runs the same way with ``PYTHONPATH`` set to its copy (below).

Identical paths: the outputs record image and results paths (PNG text facts, JSON
records, the summary, the gallery) and the images' sizes and modification times, so both
runs see the very same ones.  They run one after the other in the same working directory
(``--directory``), a fixed folder under the temporary directory whose entries are symbolic
links to a snapshot of the repository root's inputs (hard links, else copies, of every entry
but the package, Git's and Snakemake's state and the results folder: the config's relative
paths, such as ``images/``, resolve as in the repository, nothing named ``cnnvis_tasks`` can
be imported from the working directory, and a working tree that changes meanwhile changes
nothing); both write the same results path (the config's own when relative, else
``results``) with a fresh ``.snakemake/``, and each finished results folder is moved out
before the next run.  The config is read once, at the start, and the new tree's files
(tracked and untracked, not ignored) are copied at the start, so that the new run uses the
tree as it was when the command was given.

``--baseline-dir DIR`` keeps the pinned commit's outputs in DIR (one folder per commit
and config, with the snapshot of the inputs and the config they were built from) and
reuses them when its marker names the same commit, config hash, working folder and cores.

Compared: every file under the two results folders except ``logs/``, ``benchmarks/``,
``.cache/`` and ``.snakemake/``, and those a ``--skip GLOB`` names (what a later change
altered on purpose).  PNG: decoded pixels (mode, size and every value) and
the text chunks (the facts: the ``cnnvis`` chunk's JSON, key by key), except ``--ignore-key`` keys.  ``.npy``:
dtype, shape and values.  ``.json``: parsed, keys that are timings dropped.  ``.csv``:
bytes, or with ``--ignore-key`` keys, cell by cell without those columns and without the
summary rows whose ``metric`` is one (measures a later change added).  A file that a
``--close GLOB`` names is equal where its numbers are within ``--tolerance`` (absolute or
relative) and at most 1 % of its pixels differ (a plot's line moved by a last-digit change
of what it plots, which its facts show and are compared).  Anything
else: bytes.  A file in one run only is a difference, and so is a different Snakemake
exit status or a different run report (Snakemake's ``cnnvis:`` lines).

Prints one line per difference and a summary per config; exits 1 when anything
differs, 2 when the comparison could not be made, 0 otherwise.

A config is a file (read once, at the start) or ``REV:PATH``, the file as a commit has it:
``--config 1831ffc:config.yaml`` compares on the pinned commit's own config when the
working tree's has keys the old code does not know.  ``--new-tree DIR`` compares against
another tree than this repository's (e.g. a worktree of the pinned commit itself: every
file must then be identical), ``--keep-new DIR`` keeps the new run's outputs, and
``--compare-dirs OLD NEW`` only compares two results folders that already exist.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import fcntl
import fnmatch
import hashlib
import io
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

# Folders of a results tree that are not compared, at any depth.
SKIPPED_FOLDERS = {"logs", "benchmarks", ".cache", ".snakemake"}
# JSON keys that are timings (dropped before comparing): a name made of words joined by
# "_" or "-" of which one is a timing word (e.g. "seconds", "load_seconds", "elapsed_s").
TIMING_WORDS = {
    "seconds",
    "secs",
    "sec",
    "elapsed",
    "duration",
    "durations",
    "runtime",
    "walltime",
    "wall",
    "time",
    "times",
    "timing",
    "timings",
    "timestamp",
    "started",
    "finished",
    "ms",
}
TIMING_KEY = re.compile(r".+[_\-](?:s|ms)$")  # "..._s", "..._ms": seconds, milliseconds
MARKER = "baseline.json"
MARKER_VERSION = 2
RUN_REPORT_PREFIX = "cnnvis:"
# Entries of the repository root not mirrored into the working folder of the runs.
NOT_MIRRORED = {".git", ".snakemake", ".venv", "cnnvis_tasks", "__pycache__", ".pytest_cache", ".ruff_cache"}
MAX_LINES_PER_FILE = 6  # differing keys or lines listed for one file
# --close: numbers equal within this (absolute or relative: a change of a logit, some 10
# in size, in float32's last digits is about 1e-5), and at most this share of a picture's
# pixels may differ
CLOSE_TOLERANCE = 1e-4
CLOSE_PIXELS = 0.01


class Failure(Exception):
    """The comparison could not be made (exit status 2)."""


def log(message: str) -> None:
    print(f"[compare] {message}", file=sys.stderr, flush=True)


def git(repo: Path, *args: str, check: bool = True) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if check and done.returncode != 0:
        raise Failure(f"git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


# ------------------------------------------------------------------ comparison


@dataclass
class Report:
    compared: int = 0
    identical: int = 0
    differ: int = 0
    only_old: int = 0
    only_new: int = 0
    lines: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.differ or self.only_old or self.only_new)

    def summary(self) -> str:
        return (
            f"{self.compared} files compared, {self.identical} identical, {self.differ} differ, "
            f"{self.only_old} only in old, {self.only_new} only in new"
        )


def listed_files(root: Path) -> dict[str, Path]:
    """Every file (or symbolic link) under ``root`` by its relative path, skipped folders left out."""
    found: dict[str, Path] = {}
    for folder, folders, files in os.walk(root):
        here = Path(folder)
        kept = []
        for name in folders:
            if name in SKIPPED_FOLDERS:
                continue
            if (here / name).is_symlink():
                files.append(name)  # compared as a link, not followed
            else:
                kept.append(name)
        folders[:] = sorted(kept)
        for name in files:
            path = here / name
            found[path.relative_to(root).as_posix()] = path
    return found


def is_timing_key(key: str) -> bool:
    words = re.split(r"[_\-.\s]+", key.lower())
    return any(word in TIMING_WORDS for word in words) or bool(TIMING_KEY.match(key.lower()))


def without_keys(value: Any, drop) -> Any:
    """``value`` with every dict key for which ``drop(key)`` is true removed, at any depth."""
    if isinstance(value, dict):
        return {key: without_keys(item, drop) for key, item in value.items() if not drop(key)}
    if isinstance(value, list):
        return [without_keys(item, drop) for item in value]
    return value


def short(value: Any, width: int = 60) -> str:
    text = json.dumps(value, sort_keys=True, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def near(old: Any, new: Any, tolerance: float) -> bool:
    """Two numbers (not booleans) within ``tolerance``, absolute or relative."""
    numbers = all(isinstance(value, (int, float)) and not isinstance(value, bool) for value in (old, new))
    return tolerance > 0 and numbers and math.isclose(old, new, rel_tol=tolerance, abs_tol=tolerance)


def json_differences(old: Any, new: Any, where: str = "", tolerance: float = 0.0) -> Iterator[str]:
    """Where two parsed JSON values differ: ``key.path: old -> new`` (lists element by element;
    numbers within ``tolerance`` are equal)."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new), key=str):
            path = f"{where}.{key}" if where else str(key)
            if key not in new:
                yield f"{path}: only in old"
            elif key not in old:
                yield f"{path}: only in new"
            else:
                yield from json_differences(old[key], new[key], path, tolerance)
    elif isinstance(old, list) and isinstance(new, list):
        if len(old) != len(new):
            yield f"{where or '(top)'}: {len(old)} items in old, {len(new)} in new"
        for index, (a, b) in enumerate(zip(old, new)):
            yield from json_differences(a, b, f"{where}[{index}]", tolerance)
    elif near(old, new, tolerance):
        return
    elif old != new or type(old) is not type(new):
        yield f"{where or '(top)'}: {short(old)} -> {short(new)}"


def limited(items: Iterator[str] | list[str], limit: int = MAX_LINES_PER_FILE) -> list[str]:
    items = list(items)
    if len(items) > limit:
        return items[:limit] + [f"… {len(items) - limit} more"]
    return items


def compare_png(old: Path, new: Path, ignore: set[str], tolerance: float = 0.0) -> list[str]:
    problems: list[str] = []
    with Image.open(old) as a, Image.open(new) as b:
        texts = (dict(getattr(a, "text", {})), dict(getattr(b, "text", {})))
        if a.mode != b.mode or a.size != b.size:
            problems.append(f"image {a.mode} {a.size[0]}x{a.size[1]} -> {b.mode} {b.size[0]}x{b.size[1]}")
        else:
            # A palette picture is compared by its colours, not its indices.
            pa = np.asarray(a.convert("RGBA") if a.mode in ("P", "PA") else a)
            pb = np.asarray(b.convert("RGBA") if b.mode in ("P", "PA") else b)
            delta = np.abs(pa.astype(np.int64) - pb.astype(np.int64))
            moved = int(np.count_nonzero(delta.reshape(delta.shape[0], delta.shape[1], -1).any(axis=-1)))
            # within a tolerance, a plot of numbers that moved in their last digits may draw
            # a line a hair's breadth elsewhere: a few pixels (its facts are compared to the tolerance)
            allowed = CLOSE_PIXELS * a.size[0] * a.size[1] if tolerance else 0
            if moved > allowed:
                problems.append(f"pixels differ: {moved} pixels, max difference {int(delta.max())}")
    for key in sorted(set(texts[0]) | set(texts[1])):
        if key in ignore:
            continue
        if key not in texts[1]:
            problems.append(f"text key {key!r} only in old")
            continue
        if key not in texts[0]:
            problems.append(f"text key {key!r} only in new")
            continue
        a_text, b_text = texts[0][key], texts[1][key]
        if a_text == b_text:
            continue
        try:
            a_json, b_json = json.loads(a_text), json.loads(b_text)
        except ValueError:
            problems.append(f"text key {key!r} differs: {short(a_text)} -> {short(b_text)}")
            continue
        drop = ignore.__contains__
        found = list(json_differences(without_keys(a_json, drop), without_keys(b_json, drop), key, tolerance))
        problems.extend(f"text {line}" for line in limited(found))
    return problems


def compare_npy(old: Path, new: Path) -> list[str]:
    a = np.load(old, allow_pickle=False)
    b = np.load(new, allow_pickle=False)
    if a.dtype != b.dtype or a.shape != b.shape:
        return [f"array {a.dtype} {a.shape} -> {b.dtype} {b.shape}"]
    nan = a.dtype.kind in "fc"
    if np.array_equal(a, b, equal_nan=nan):
        return []
    if a.dtype.kind in "biufc":
        delta = np.abs(a.astype(np.complex128 if a.dtype.kind == "c" else np.float64) - b)
        delta = np.nan_to_num(delta, nan=np.inf)
        return [f"values differ: {int(np.count_nonzero(delta))} elements, max difference {float(delta.max()):.6g}"]
    return ["values differ"]


def compare_json(old: Path, new: Path, ignore: set[str], tolerance: float = 0.0) -> list[str]:
    try:
        a = json.loads(old.read_text(encoding="utf-8"))
        b = json.loads(new.read_text(encoding="utf-8"))
    except ValueError as error:
        return compare_bytes(old, new) and [f"not JSON ({error}); bytes differ"]
    drop = lambda key: is_timing_key(str(key)) or key in ignore  # noqa: E731
    return limited(json_differences(without_keys(a, drop), without_keys(b, drop), tolerance=tolerance))


def csv_without(text: str, ignore: set[str]) -> list[list[str]]:
    """A CSV's rows without its ``ignore`` columns (by header) and without the rows whose
    ``metric`` cell names an ``ignore`` key (a summary's rows of a measure added later)."""
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        return rows
    header = rows[0]
    kept = [k for k, name in enumerate(header) if name not in ignore]
    metric = header.index("metric") if "metric" in header else None
    return [
        [row[k] for k in kept if k < len(row)]
        for number, row in enumerate(rows)
        if number == 0 or metric is None or metric >= len(row) or row[metric] not in ignore
    ]


def same_cells(a: list[list[str]], b: list[list[str]], tolerance: float) -> bool:
    """Rows equal cell by cell; numbers within ``tolerance``."""

    def number(text: str) -> float | None:
        try:
            return float(text)
        except ValueError:
            return None

    def same(x: str, y: str) -> bool:
        if x == y:
            return True
        u, v = number(x), number(y)
        return u is not None and v is not None and near(u, v, tolerance)

    return len(a) == len(b) and all(len(r) == len(q) and all(map(same, r, q)) for r, q in zip(a, b))


def compare_csv(old: Path, new: Path, ignore: set[str], tolerance: float = 0.0) -> list[str]:
    """Bytes, or where ``ignore`` names a column or a summary's metric, the rest cell by cell
    (numbers within ``tolerance``)."""
    found = compare_bytes(old, new)
    if not found or not (ignore or tolerance):
        return found
    a = csv_without(old.read_text(encoding="utf-8"), ignore)
    b = csv_without(new.read_text(encoding="utf-8"), ignore)
    if same_cells(a, b, tolerance):
        return []
    if len(a) != len(b):
        return [f"{len(a)} rows -> {len(b)} rows (without the ignored columns and metrics)"]
    number = next(k for k, (x, y) in enumerate(zip(a, b)) if not same_cells([x], [y], tolerance))
    return [
        f"row {number + 1} differs (without the ignored columns and metrics): {short(a[number])} -> {short(b[number])}"
    ]


def compare_bytes(old: Path, new: Path) -> list[str]:
    a, b = old.read_bytes(), new.read_bytes()
    if a == b:
        return []
    try:
        a_lines, b_lines = a.decode("utf-8").splitlines(), b.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        return [f"bytes differ ({len(a)} -> {len(b)} bytes)"]
    differing = [number for number, (x, y) in enumerate(zip(a_lines, b_lines), 1) if x != y]
    if not differing:
        return [f"{len(a_lines)} lines -> {len(b_lines)} lines (the rest identical)"]
    number = differing[0]
    x, y = a_lines[number - 1], b_lines[number - 1]
    column = next((i for i, (p, q) in enumerate(zip(x, y)) if p != q), min(len(x), len(y)))
    start = max(0, column - 30)
    more = f" ({len(differing)} lines differ, {len(a_lines)} -> {len(b_lines)} lines)" if len(differing) > 1 else ""
    return [
        f"line {number} column {column + 1} differs: {x[start : column + 30]!r} -> {y[start : column + 30]!r}{more}"
    ]


def compare_file(old: Path, new: Path, ignore: set[str], tolerance: float = 0.0) -> list[str]:
    """The differences of two files (see the module doc); ``tolerance``: numbers within it
    are equal, and pixels within one level."""
    if old.is_symlink() or new.is_symlink():
        targets = [os.readlink(p) if p.is_symlink() else "(a file)" for p in (old, new)]
        return [] if targets[0] == targets[1] else [f"link {targets[0]} -> {targets[1]}"]
    suffix = old.suffix.lower()
    try:
        if suffix == ".png":
            return compare_png(old, new, ignore, tolerance)
        if suffix == ".npy":
            return compare_npy(old, new)
        if suffix == ".json":
            return compare_json(old, new, ignore, tolerance)
        if suffix == ".csv":
            return compare_csv(old, new, ignore, tolerance)
    except Exception as error:  # an unreadable file: fall back to its bytes
        found = compare_bytes(old, new)
        return [f"{found[0]} (cannot read as {suffix}: {error})"] if found else []
    return compare_bytes(old, new)


def compare_trees(
    old_root: Path,
    new_root: Path,
    ignore: set[str],
    skip: Sequence[str] = (),
    close: Sequence[str] = (),
    tolerance: float = CLOSE_TOLERANCE,
) -> Report:
    """Every file of two results folders, but those whose relative path matches a ``skip``
    pattern; those a ``close`` pattern matches within ``tolerance``."""
    report = Report()
    old_files, new_files = listed_files(old_root), listed_files(new_root)
    for files in (old_files, new_files):
        for name in [name for name in files if any(fnmatch.fnmatchcase(name, pattern) for pattern in skip)]:
            del files[name]
    for name in sorted(set(old_files) | set(new_files)):
        if name not in new_files:
            report.only_old += 1
            report.lines.append(f"{name}: only in old")
            continue
        if name not in old_files:
            report.only_new += 1
            report.lines.append(f"{name}: only in new")
            continue
        report.compared += 1
        within = tolerance if any(fnmatch.fnmatchcase(name, pattern) for pattern in close) else 0.0
        problems = compare_file(old_files[name], new_files[name], ignore, within)
        if problems:
            report.differ += 1
            report.lines.extend(f"{name}: {problem}" for problem in problems)
        else:
            report.identical += 1
    return report


# ------------------------------------------------------------------ runs


@dataclass
class Setup:
    repo: Path  # the repository root: this script, Git and the inputs (images, paths in the config)
    venv_bin: Path  # where python, snakemake and cnnvis-tasks are
    base: Path  # this repository's fixed scratch folder under the temporary directory
    cores: int

    @property
    def workdir(self) -> Path:
        return self.base / "run"


def results_name(config: Path) -> str:
    """The results path both runs write (relative to the working folder): the config's own when
    it is a plain relative path, else ``results``."""
    try:
        import yaml

        value = (yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("results")
    except Exception:
        value = None
    if isinstance(value, str) and value.strip("/") and not os.path.isabs(value):
        parts = Path(value.strip("/")).parts
        if ".." not in parts and "." not in parts and parts[0] not in NOT_MIRRORED:
            return Path(*parts).as_posix()
    return "results"


def link_or_copy(source: Path, target: Path) -> None:
    """``target`` as a hard link to ``source`` (the same bytes and times, nothing copied; a file
    replaced in the repository later, as Git does, leaves it alone), else a copy with its times."""
    if source.is_symlink():
        target.symlink_to(os.readlink(source))
        return
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def snapshot_inputs(repo: Path, results: str, into: Path) -> None:
    """What the config may name (images, manifests, weights, ``module:`` code): every entry of
    the repository root but the package, Git's, Snakemake's and Python's state and the top folder
    of the results path, hard-linked (or copied) into ``into``, so that both runs read the very
    same files (bytes and modification times, which records keep) even when the working tree
    changes under them, and a kept baseline is compared on the inputs it was built from."""
    top = Path(results).parts[0]
    into.mkdir(parents=True)
    for entry in sorted(repo.iterdir()):
        if entry.name in NOT_MIRRORED or entry.name == top or entry.name.endswith(".egg-info"):
            continue
        if entry.is_dir() and not entry.is_symlink():
            for folder, folders, files in os.walk(entry):
                folders[:] = [name for name in folders if name not in NOT_MIRRORED]
                here = into / Path(folder).relative_to(repo)
                here.mkdir(parents=True, exist_ok=True)
                for name in files + [name for name in folders if (Path(folder) / name).is_symlink()]:
                    link_or_copy(Path(folder) / name, here / name)
        else:
            link_or_copy(entry, into / entry.name)


def snapshot_tree(tree: Path, into: Path) -> None:
    """The files of a working tree (tracked and untracked, Git's ignored ones left out) copied
    into ``into``: the code a run uses stays as it was when the comparison started."""
    listed = git(tree, "ls-files", "-z", "--cached", "--others", "--exclude-standard").split("\0")
    into.mkdir(parents=True)
    for name in sorted(set(filter(None, listed))):
        source = tree / name
        if not (source.is_file() or source.is_symlink()):
            continue  # deleted in the working tree
        (into / name).parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            (into / name).symlink_to(os.readlink(source))
        else:
            shutil.copy2(source, into / name)


def prepare_workdir(setup: Setup, inputs: Path, results: str) -> Path:
    """A fresh working folder (no ``.snakemake/``, no results) whose entries are symbolic links
    to the snapshot of the inputs: the config's relative paths resolve as in the repository, and
    nothing named ``cnnvis_tasks`` can be imported from the working directory."""
    workdir = setup.workdir
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    for entry in sorted(inputs.iterdir()):
        (workdir / entry.name).symlink_to(entry)
    return workdir


def run_env(setup: Setup, tree: Path, scratch: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(tree)  # the tree's package before the editable install's finder
    env["PATH"] = f"{setup.venv_bin}{os.pathsep}{env.get('PATH', '')}"
    env["CNNVIS_CACHE"] = str(scratch / "cnnvis-cache")  # no remembered choices from another tree's run
    for name in ("PYTHONHOME", "PYTHONSTARTUP", "PYTHONVERBOSE", "VIRTUAL_ENV_DISABLE_PROMPT"):
        env.pop(name, None)
    return env


IMPORT_TRACE = re.compile(r"(/[^\s'\"]*?/)cnnvis_tasks/")


def package_roots(trace: str) -> set[str]:
    """The folders holding a ``cnnvis_tasks`` whose files appear in a ``python -v`` trace."""
    return {match.rstrip("/") for match in IMPORT_TRACE.findall(trace)}


def snakemake_command(setup: Setup, tree: Path, config: Path, results: str, *extra: str) -> list[str]:
    return [
        str(setup.venv_bin / "snakemake"),
        "--cores",
        str(setup.cores),
        "--configfile",
        str(config),
        "--config",
        f"results={results}",
        "-s",
        str(tree / "Snakefile"),
        "--directory",
        str(setup.workdir),
        # the tree's own workflow profile (Snakemake would take the working folder's, the inputs')
        "--workflow-profile",
        str(tree / "profiles" / "default") if (tree / "profiles" / "default").is_dir() else "none",
        *extra,
    ]


def check_code(setup: Setup, tree: Path, config: Path, results: str, env: dict[str, str]) -> str:
    """Check that Snakemake's process and the jobs' ``cnnvis-tasks`` import ``cnnvis_tasks`` from
    ``tree`` and from nowhere else (a ``python -v`` trace of a dry run and of ``cnnvis-tasks
    --help``); returns the package file Python loads there.  A tree whose code fails is no
    reason to stop: its run fails, and the comparison says so."""
    expected = os.path.realpath(tree)
    where = subprocess.run(
        [str(setup.venv_bin / "python"), "-c", "import cnnvis_tasks; print(cnnvis_tasks.__file__)"],
        cwd=setup.workdir,
        env=env,
        capture_output=True,
        text=True,
    )
    loaded = where.stdout.strip() if where.returncode == 0 else "(import failed)"
    problems = []
    if where.returncode == 0 and not os.path.realpath(loaded).startswith(expected + os.sep):
        problems.append(f"python imports {loaded}")
    verbose = env | {"PYTHONVERBOSE": "1"}
    for label, command in (
        ("snakemake -n", snakemake_command(setup, tree, config, results, "-n", "--quiet", "all")),
        ("cnnvis-tasks --help", [str(setup.venv_bin / "cnnvis-tasks"), "--help"]),
    ):
        done = subprocess.run(command, cwd=setup.workdir, env=verbose, capture_output=True, text=True)
        roots = {os.path.realpath(root) for root in package_roots(done.stderr)}
        if roots - {expected}:
            problems.append(f"{label} loads cnnvis_tasks from {sorted(roots)}")
        elif not roots:
            problems.append(f"{label} imports no cnnvis_tasks module (exit status {done.returncode})")
        if done.returncode != 0:
            noise = ("#", "import ", "Processing ", "Adding directory", "Python ", 'Type "help"')
            lines = [line for line in (done.stdout + done.stderr).splitlines() if not line.startswith(noise)]
            log(f"{label} with the code of {tree} fails (exit status {done.returncode}):\n" + "\n".join(lines[-15:]))
    if problems:
        raise Failure(f"the run would not use (only) the code of {tree}: " + "; ".join(problems))
    return loaded


@contextlib.contextmanager
def killed_on_exit(process: subprocess.Popen) -> Iterator[subprocess.Popen]:
    try:
        yield process
    finally:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def run_workflow(
    setup: Setup, label: str, tree: Path, config: Path, inputs: Path, results: str, into: Path
) -> dict[str, Any]:
    """Run the workflow of ``tree`` on ``config`` in the working folder (on the snapshot
    ``inputs``) and move its results folder to ``into``; returns what the marker records of the run."""
    prepare_workdir(setup, inputs, results)
    scratch = Path(tempfile.mkdtemp(prefix=f"{label}-", dir=setup.base))
    try:
        env = run_env(setup, tree, scratch)
        loaded = check_code(setup, tree, config, results, env)
        log(f"{label}: Snakemake and cnnvis-tasks import cnnvis_tasks from {tree} only ({loaded})")
        prepare_workdir(setup, inputs, results)  # what the dry run wrote (model files, caches) goes
        command = snakemake_command(setup, tree, config, results, "--keep-going")
        into.parent.mkdir(parents=True, exist_ok=True)
        log_path = into.parent / f"{into.name}.snakemake.log"
        log(f"{label}: {' '.join(command)}  (output: {log_path})")
        started = time.monotonic()
        with (
            open(log_path, "w", encoding="utf-8") as handle,
            killed_on_exit(
                subprocess.Popen(
                    command,
                    cwd=setup.workdir,
                    env=env,
                    stdout=handle,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            ) as process,
        ):
            status = process.wait()
        seconds = time.monotonic() - started
        log(f"{label}: Snakemake exited {status} after {seconds:.0f} s")
        if status != 0:
            tail = "\n".join(log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-20:])
            log(f"{label}: the run failed; the end of its output:\n{tail}")
        produced = setup.workdir / results
        if into.exists():
            shutil.rmtree(into)
        if produced.exists():
            shutil.move(str(produced), str(into))
        else:
            into.mkdir(parents=True)
        return {
            "exit_status": status,
            "seconds": round(seconds, 1),
            "package": loaded,
            "log": str(log_path),
            "run_report": run_report(log_path),
        }
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.rmtree(setup.workdir, ignore_errors=True)


def run_report(log_path: Path) -> list[str]:
    """The run report at the end of Snakemake's output: each ``cnnvis:`` line and the indented
    lines under it, the log's path and anything that reads as a duration left out."""
    lines: list[str] = []
    inside = False
    for line in log_path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith(RUN_REPORT_PREFIX):
            inside = True
        elif not (inside and line[:1].isspace() and line.strip()):
            inside = False
        if inside:
            lines.append(re.sub(r"\b\d+(\.\d+)?\s?(s|ms|seconds|min|minutes|h)\b", "<time>", line.rstrip()))
    return lines


@contextlib.contextmanager
def worktree(repo: Path, commit: str, path: Path) -> Iterator[Path]:
    """A detached worktree of ``commit`` at ``path``, removed on the way out."""
    if path.exists() or path.is_symlink():
        git(repo, "worktree", "remove", "--force", str(path), check=False)
        shutil.rmtree(path, ignore_errors=True)
    git(repo, "worktree", "prune")
    git(repo, "worktree", "add", "--detach", str(path), commit)
    try:
        yield path
    finally:
        git(repo, "worktree", "remove", "--force", str(path), check=False)
        shutil.rmtree(path, ignore_errors=True)
        git(repo, "worktree", "prune", check=False)


@dataclass
class Config:
    label: str  # as given on the command line
    path: Path  # its file name (in the working tree, or in the commit)
    text: bytes  # read once, at the start


def read_config(repo: Path, commit: str, name: str) -> Config:
    """``name``: a file (read now: it may change while the runs go), or ``REV:PATH`` (the file as
    commit REV has it).  A working-tree config that differs from the pinned commit's own is
    noted: the old code may reject what the new one added (then compare on ``COMMIT:PATH``)."""
    path = Path(name)
    if not path.exists() and ":" in name and not path.is_absolute():
        revision, inside = name.split(":", 1)
        done = subprocess.run(["git", "-C", str(repo), "show", f"{revision}:{inside}"], capture_output=True)
        if done.returncode != 0:
            raise Failure(done.stderr.decode(errors="replace").strip())
        return Config(name, Path(inside), done.stdout)
    if not path.is_file():
        path = repo / name
    if not path.is_file():
        raise Failure("no such file")
    text = path.read_bytes()
    with contextlib.suppress(ValueError):
        inside = path.resolve().relative_to(repo).as_posix()
        pinned = subprocess.run(["git", "-C", str(repo), "show", f"{commit}:{inside}"], capture_output=True)
        if pinned.returncode == 0 and pinned.stdout != text:
            log(
                f"{name} differs from {commit[:12]}:{inside}: if the old code rejects it, compare on the pinned "
                f"config with --config {commit[:12]}:{inside}"
            )
    return Config(name, path, text)


def compare_config(
    args: argparse.Namespace, setup: Setup, commit: str, config: Config, new_tree: Path, stack
) -> tuple[Report, bool]:
    """Build (or reuse) the pinned commit's outputs and the new tree's on ``config``, and compare them."""
    text = config.text
    config_sha256 = hashlib.sha256(text).hexdigest()
    key = f"{commit[:12]}-{config.path.stem}-{config_sha256[:12]}"
    if args.baseline_dir:
        old_home = Path(args.baseline_dir).resolve() / key
    else:
        old_home = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="old-", dir=setup.base))) / key
    old_results, inputs, config_copy = old_home / "results", old_home / "inputs", old_home / "config" / config.path.name
    wanted = {  # what a kept baseline must match ("config", the name it was given, is not compared)
        "version": MARKER_VERSION,
        "commit": commit,
        "config_sha256": config_sha256,
        "workdir": str(setup.workdir),
        "cores": setup.cores,
    }
    marker_path = old_home / MARKER
    marker = {}
    if marker_path.is_file():
        with contextlib.suppress(ValueError):
            marker = json.loads(marker_path.read_text(encoding="utf-8"))
    reuse = all(marker.get(name) == value for name, value in wanted.items())
    if reuse and old_results.is_dir() and inputs.is_dir() and config_copy.read_bytes() == text:
        results = marker["results"]
        log(f"{config.label}: reusing the outputs of {commit[:12]} in {old_results} (built {marker.get('built')})")
        old_run = marker["run"]
    else:
        if old_home.exists():
            shutil.rmtree(old_home)
        config_copy.parent.mkdir(parents=True)
        config_copy.write_bytes(text)
        results = results_name(config_copy)
        snapshot_inputs(setup.repo, results, inputs)
        old_tree = setup.base / "tree-old"
        with worktree(setup.repo, commit, old_tree):
            old_run = run_workflow(setup, f"old {commit[:12]}", old_tree, config_copy, inputs, results, old_results)
        marker_path.write_text(
            json.dumps(
                wanted
                | {
                    "config": config.label,
                    "results": results,
                    "built": time.strftime("%Y-%m-%d %H:%M:%S"),
                    "run": old_run,
                },
                indent=1,
            )
            + "\n",
            encoding="utf-8",
        )
    if args.keep_new:
        new_results = Path(args.keep_new).resolve() / key / "results"
    else:
        new_results = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="new-", dir=setup.base))) / "results"
    new_run = run_workflow(setup, "new", new_tree, config_copy, inputs, results, new_results)

    report = compare_trees(old_results, new_results, set(args.ignore_key), args.skip, args.close, args.tolerance)
    if old_run["exit_status"] != new_run["exit_status"]:
        report.lines.append(f"(snakemake): exit status {old_run['exit_status']} -> {new_run['exit_status']}")
    if old_run.get("run_report") != new_run.get("run_report"):
        found = json_differences(old_run.get("run_report"), new_run.get("run_report"), "cnnvis: lines")
        report.lines.extend(f"(run report): {line}" for line in limited(found))
    log(f"{config.label}: old run {old_run['seconds']:.0f} s, new run {new_run['seconds']:.0f} s")
    same_runs = old_run["exit_status"] == new_run["exit_status"] and old_run.get("run_report") == new_run.get(
        "run_report"
    )
    return report, same_runs


def interrupted(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--against", help="the pinned commit (any revision Git knows)")
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="FILE|REV:PATH",
        help="a config file, or a config as a commit has it (e.g. 1831ffc:config.yaml); repeatable",
    )
    parser.add_argument("--baseline-dir", help="keep and reuse the pinned commit's outputs here")
    parser.add_argument("--cores", type=int, default=2, help="Snakemake's --cores (default 2)")
    parser.add_argument(
        "--ignore-key",
        action="append",
        default=[],
        metavar="KEY",
        help="a PNG text key, or a key in a PNG's JSON facts or in a JSON file, a CSV column or a summary's "
        "metric, not compared (repeatable)",
    )
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        metavar="GLOB",
        help="results files not compared, by their path in the results folder (fnmatch: '*' crosses '/'): "
        "what a later change altered on purpose (repeatable)",
    )
    parser.add_argument(
        "--close",
        action="append",
        default=[],
        metavar="GLOB",
        help="results files compared within --tolerance: their numbers (JSON, PNG facts, CSV cells) within it, "
        "at most 1%% of a picture's pixels different: what a later change computes in another order, to "
        "its last float32 digits (repeatable)",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=CLOSE_TOLERANCE,
        help=f"for --close files: absolute or relative (default {CLOSE_TOLERANCE:g})",
    )
    parser.add_argument("--new-tree", help="the tree whose code is 'new' (default: this repository's working tree)")
    parser.add_argument("--keep-new", metavar="DIR", help="keep the new run's outputs here")
    parser.add_argument("--compare-dirs", nargs=2, metavar=("OLD", "NEW"), help="only compare two results folders")
    args = parser.parse_args(argv)

    if args.compare_dirs:
        old, new = (Path(p) for p in args.compare_dirs)
        for folder in (old, new):
            if not folder.is_dir():
                parser.error(f"{folder} is not a folder")
        report = compare_trees(old, new, set(args.ignore_key), args.skip, args.close, args.tolerance)
        for line in report.lines:
            print(line)
        print(f"{old} vs {new}: {report.summary()}")
        return 0 if report.clean else 1
    if not args.against or not args.config:
        parser.error("--against and at least one --config are needed (or --compare-dirs)")
    if args.cores < 1:
        parser.error("--cores must be at least 1")

    repo = Path(git(Path(__file__).resolve().parent, "rev-parse", "--show-toplevel")).resolve()
    commit = git(repo, "rev-parse", "--verify", "--quiet", f"{args.against}^{{commit}}", check=False)
    if not commit:
        parser.error(f"{args.against!r} is no commit of {repo}")
    configs = []
    for name in args.config:
        try:
            configs.append(read_config(repo, commit, name))
        except (Failure, OSError) as error:
            parser.error(f"config {name}: {error}")
    venv_bin = Path(sys.executable).parent
    if not (venv_bin / "snakemake").exists() or not (venv_bin / "cnnvis-tasks").exists():
        parser.error(
            f"no snakemake or cnnvis-tasks beside {sys.executable}: run this with the project's .venv/bin/python"
        )

    base = Path(tempfile.gettempdir()) / f"cnnvis-compare-{hashlib.sha256(str(repo).encode()).hexdigest()[:10]}"
    base.mkdir(parents=True, exist_ok=True)
    setup = Setup(repo=repo, venv_bin=venv_bin, base=base, cores=args.cores)

    # SIGTERM (CI's timeout) unwinds like Ctrl-C: the worktree and the runs are cleaned up.
    signal.signal(signal.SIGTERM, interrupted)
    with open(base / "lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"another comparison of {repo} runs (lock {base / 'lock'}): waiting for it")
            fcntl.flock(lock, fcntl.LOCK_EX)
        source = Path(args.new_tree).resolve() if args.new_tree else repo
        new_tree = base / "tree-new"
        if new_tree.exists():
            shutil.rmtree(new_tree)
        snapshot_tree(source, new_tree)
        log(f"{commit[:12]} ({args.against}) against the working tree of {source} (copied to {new_tree})")
        log(f"working folder of the runs: {setup.workdir}")
        summaries = []
        clean = True
        try:
            for config in configs:
                with contextlib.ExitStack() as stack:
                    try:
                        report, same_runs = compare_config(args, setup, commit, config, new_tree, stack)
                    except (Failure, OSError) as error:
                        print(f"{config.label}: could not compare: {error}")
                        return 2
                    for line in report.lines:
                        print(f"{config.label}: {line}" if len(configs) > 1 else line, flush=True)
                    summaries.append(f"{config.label}: {report.summary()}")
                    clean = clean and report.clean and same_runs
        finally:
            shutil.rmtree(new_tree, ignore_errors=True)
        for line in summaries:
            print(line)
    return 0 if clean else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted")
        sys.exit(130)
