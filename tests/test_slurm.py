"""SLURM through Snakemake's executor plugin: profiles/slurm's settings (quick),
then (slow) the tiny config of test_workflow.py run through profiles/slurm on a
one-node cluster on localhost (tests/slurm_cluster.py), and a GPU rule submitted
with --gpus=1.

The slow tests need root, Debian's slurm-wlm and munge, and snakemake-executor-plugin-slurm.
Where CI is set or CNNVIS_SLURM_TEST=1, missing packages are installed (apt-get,
pip); elsewhere the tests are skipped, saying what is missing.  Once the cluster's
packages are there, a cluster that does not come up is a failure, not a skip."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import slurm_cluster
import yaml
from PIL import Image
from test_workflow import TINY, make_copy, planned

REPO = Path(__file__).resolve().parent.parent
PLUGIN = "snakemake-executor-plugin-slurm"
# Fast status checks for a cluster on this machine; squeue since there is no
# accounting database (sacct would only say "accounting storage is disabled").
FAST = [
    "--slurm-status-command",
    "squeue",
    "--seconds-between-status-checks",
    "2",
    "--slurm-init-seconds-before-status-checks",
    "2",
    "--max-status-checks-per-second",
    "1",
]
GPU_TRES = re.compile(r"\bTresPerJob=\S*gres[:/]gpu[:=]1\b")


def install_wanted() -> bool:
    return os.environ.get("CNNVIS_SLURM_TEST") == "1" or bool(os.environ.get("CI"))


def plugin_requirement() -> str:
    """The plugin as pyproject's `slurm` extra names it."""
    import tomllib

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"].get("optional-dependencies", {})
    return next((r for r in extras.get("slurm", []) if r.startswith(PLUGIN)), PLUGIN)


def plugin_installed() -> bool:
    result = subprocess.run([sys.executable, "-c", "import snakemake_executor_plugin_slurm"], capture_output=True)
    return result.returncode == 0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if sys.version_info < (3, 11):
        pytest.skip(f"{PLUGIN} needs Python >= 3.11")
    if not plugin_installed():
        if not install_wanted():
            pytest.skip(f"{PLUGIN} is not installed (pip install -e '.[slurm]'); set CNNVIS_SLURM_TEST=1 to install it")
        result = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", plugin_requirement()],
            capture_output=True,
            text=True,
            timeout=900,
        )
        if result.returncode != 0 or not plugin_installed():
            pytest.skip(f"could not install {PLUGIN}: {result.stderr[-2000:]}")
    missing = slurm_cluster.missing_binaries()
    if missing:
        if not install_wanted():
            pytest.skip(
                f"slurm-wlm not installed (no {', '.join(missing)}); "
                "set CNNVIS_SLURM_TEST=1 to install it (Debian, as root)"
            )
        try:
            slurm_cluster.install()
        except slurm_cluster.Unavailable as error:
            pytest.skip(f"could not install slurm-wlm and munge: {error}")
        except subprocess.TimeoutExpired:
            pytest.skip("apt-get install slurm-wlm munge timed out")
    local = slurm_cluster.LocalSlurm(tmp_path_factory.mktemp("slurm"))
    try:
        local.start()
    except slurm_cluster.Unavailable as error:
        local.stop()
        pytest.skip(f"no local SLURM cluster: {error}")
    except slurm_cluster.ClusterError as error:
        local.stop()
        pytest.fail(f"the local SLURM cluster did not come up: {error}")
    try:
        yield local
    finally:
        local.stop()


def run_profile(cluster, workdir: Path, *args: str, timeout: float = 1800) -> tuple[int, str]:
    """Snakemake with profiles/slurm (and fast status checks); returns (status, output)."""
    env = cluster.environment()
    env.update(CNNVIS_OFFLINE="1", TORCH_HOME=str(workdir / "torch-home"))
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "--workflow-profile",
        "profiles/slurm",
        *FAST,
        "--slurm-keep-successful-logs",
        "--verbose",
        *args,
    ]
    with open(workdir / "snakemake.out", "w") as out:
        result = subprocess.run(command, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=timeout)
    return result.returncode, (workdir / "snakemake.out").read_text(errors="replace")


def planned_outputs(workdir: Path) -> list[str]:
    """Every output file or folder, and log, of the jobs a dry run would run."""
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "1", "--dry-run"],
        cwd=workdir,
        env=dict(os.environ, CNNVIS_OFFLINE="1"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    outputs = []
    for line in (result.stdout + result.stderr).splitlines():
        for key in ("    output: ", "    log: "):
            if line.startswith(key):
                outputs += line.removeprefix(key).split(", ")
    return outputs


def run_id(output: str) -> str:
    match = re.search(r"SLURM run ID: (\S+)", output)
    assert match, output[-4000:]
    return match.group(1)


def slurm_jobs(cluster, name: str) -> list[dict]:
    """The jobs of one run (all of them carry the run ID as job name), as squeue
    lists them (finished jobs stay listed: MinJobAge is an hour)."""
    text = cluster.run("squeue", "--noheader", "--states=all", "--name", name, "--format=%i|%T|%k").stdout
    jobs = []
    for line in text.splitlines():
        jobid, state, comment = line.strip().split("|", 2)
        rule = comment.removeprefix("rule_").split("_wildcards_")[0]
        jobs.append({"id": jobid, "state": state, "rule": rule})
    return jobs


def show_job(cluster, jobid: str) -> str:
    return cluster.run("scontrol", "--oneliner", "show", "job", jobid).stdout


def check_picture(path: Path) -> None:
    with Image.open(path) as image:
        assert image.format == "PNG", path
        image.load()


# --- the profile (no cluster needed) --------------------------------------------------


def test_the_slurm_profile_asks_for_what_the_issue_says_and_cannot_stall(tmp_path):
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    assert profile["executor"] == "slurm"
    assert {"runtime", "mem_mb"} <= set(profile["default-resources"])
    assert profile["slurm-logdir"] == "results/logs/slurm"
    assert profile["max-status-checks-per-second"] <= 1 and profile["seconds-between-status-checks"] >= 30
    # Every job is a rule of its own: arrays would hold one job each, and the plugin's
    # (2.8.0) arrays hang a run that hands them part of a rule's jobs.  So no arrays.
    assert "slurm-array-jobs" not in profile
    assert profile["jobs"] == "unlimited"
    count, _ = profile["max-jobs-per-timespan"].split("/")
    assert int(count) >= 100000
    assert "resources" not in profile


def test_snakemake_and_the_plugin_accept_every_option_of_the_slurm_profile(tmp_path):
    """A dry run through the profile: an unknown option name would stop it."""
    if not plugin_installed():
        pytest.skip(f"{PLUGIN} is not installed (pip install -e '.[slurm]')")
    workdir = make_copy(tmp_path / "wf", config=TINY)
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--workflow-profile", "profiles/slurm", "--dry-run"],
        cwd=workdir,
        env=dict(os.environ, CNNVIS_OFFLINE="1"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "profiles/slurm" in result.stderr and "Job stats" in result.stdout + result.stderr


# --- a real cluster ------------------------------------------------------------------


@pytest.mark.slow
def test_the_tiny_config_runs_through_the_slurm_profile(cluster, tmp_path):
    workdir = make_copy(tmp_path / "wf", config=TINY)
    jobs = planned(workdir, by_rule=True)
    outputs = planned_outputs(workdir)
    assert len(outputs) >= 30 and "results/index.html" in outputs

    status, output = run_profile(cluster, workdir)
    assert status == 0, output[-8000:] + "\n" + cluster.log_tail()

    # Every output is there and complete; nothing is left to do.
    for name in outputs:
        path = workdir / name
        assert path.exists(), f"{name} missing"
        if path.suffix == ".png":
            check_picture(path)
        elif path.suffix == ".npy":
            assert np.load(path).size > 0, name
        elif path.is_file() and "/logs/" not in name:  # a command's log may be empty
            assert path.stat().st_size > 0, name
    assert planned(workdir) == {}

    # Every job but the local ones (`all`, and any localrules) went through sbatch
    # and completed under SLURM.
    local = set(re.findall(r"^localrule (\w+):", output, re.M))
    assert "all" in local
    expected = {rule: count for rule, count in jobs.items() if rule not in local}
    assert expected
    ran = slurm_jobs(cluster, run_id(output))
    assert [job for job in ran if job["state"] != "COMPLETED"] == []
    counted = {}
    for job in ran:
        counted[job["rule"]] = counted.get(job["rule"], 0) + 1
    assert counted == expected, output[-6000:]
    # one sbatch call per job, no arrays
    assert len(re.findall(r"sbatch call: sbatch ", output)) == sum(expected.values())
    assert [job for job in ran if "_" in job["id"]] == [] and "Submitted array job" not in output
    # SLURM's logs under results/logs/slurm (kept for successful jobs here).
    for rule in expected:
        logs = list((workdir / "results" / "logs" / "slurm" / f"rule_{rule}").rglob("*.log"))
        assert logs, f"no SLURM log for rule {rule}"
    # device: cpu, so no job asked for a GPU.
    for job in ran:
        assert not GPU_TRES.search(show_job(cluster, job["id"])), job


@pytest.mark.slow
def test_a_gpu_rule_is_submitted_with_gpus_1(cluster, tmp_path):
    """With device cuda every compute rule declares gpu=1; the plugin turns that
    into sbatch --gpus=1 and SLURM gives the job the (fake) GPU.  The command then
    fails where torch has no CUDA, which is expected here."""
    workdir = make_copy(tmp_path / "wf", config=TINY)
    picture = "results/efficientnet_lite0/class-viz/class1-none.png"
    rule = "class_viz_efficientnet_lite0_none"
    status, output = run_profile(cluster, workdir, "--config", "device=cuda", "--", picture)

    calls = [line for line in output.splitlines() if "sbatch call: sbatch " in line and f"rule_{rule}" in line]
    assert len(calls) == 1, output[-6000:]
    assert " --gpus=1" in calls[0], calls[0]
    assert "SLURM sbatch failed" not in output
    match = re.search(r"Job \d+ has been submitted with SLURM jobid (\d+)", output)
    assert match, output[-6000:]
    record = show_job(cluster, match.group(1))
    assert GPU_TRES.search(record), record  # what slurmctld received
    state = re.search(r"\bJobState=(\S+)", record).group(1)
    assert state in ("COMPLETED", "FAILED"), record  # it ran on the node
    # Inside the job, SLURM exposed the GPU it allocated.
    slurm_logs = list((workdir / "results" / "logs" / "slurm" / f"rule_{rule}").rglob("*.log"))
    assert len(slurm_logs) == 1, slurm_logs
    assert "'CUDA_VISIBLE_DEVICES': '0'" in slurm_logs[0].read_text(errors="replace")
    if status != 0:
        log = (workdir / "results" / "logs" / "efficientnet_lite0" / "class-viz" / "none.log").read_text()
        assert state == "FAILED" and "CUDA is not available" in log, log
    else:
        check_picture(workdir / picture)
