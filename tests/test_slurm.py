"""SLURM through Snakemake's executor plugin: profiles/slurm's settings (quick),
then (slow) the tiny config of test_workflow.py run through profiles/slurm on a
one-node cluster on localhost (tests/slurm_cluster.py), a GPU group submitted
with --gpus=1, and 300 images with and without job groups: the sbatch calls counted.

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
from test_grouping import dry_run_submissions, make_copy
from test_workflow import TINY, planned

from cnnvis_tasks.workflow.grouping import group_components, submissions

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
        line = line.strip()  # a group's jobs are indented under it
        for key in ("output: ", "log: "):
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
    # Job groups, not arrays: the plugin (2.8.0) never submits a group job as an array,
    # and its arrays hang a run that hands them part of a rule's jobs.
    assert "slurm-array-jobs" not in profile
    assert profile["jobs"] == "unlimited"
    count, _ = profile["max-jobs-per-timespan"].split("/")
    assert int(count) >= 100000
    assert group_components(profile) > 1
    # The only limit is one GPU per cluster job (scope local): nothing caps the whole run.
    assert profile["resources"] == ["gpu=1"] and profile["set-resource-scopes"] == ["gpu=local"]


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


def expected_submissions(workdir: Path, *args: str) -> dict[str, int]:
    """What a dry run through profiles/slurm says will go to sbatch: per group (named as
    the plugin names the job, `rule_GROUP` in its comment) its cluster jobs, per rule
    outside the groups 1 (the local `all` left out)."""
    groups, alone = dry_run_submissions(workdir, *args)
    expected = {name: len(jobs) for name, jobs in groups.items()}
    expected.update({rule: 1 for rule in alone if rule != "all"})
    return expected


def sbatch_calls(output: str) -> int:
    return len(re.findall(r"sbatch call: sbatch ", output))


def counted_submissions(ran: list[dict], expected: dict[str, int]) -> dict[str, int]:
    """The SLURM jobs per group or rule: a group job's comment is rule_GROUP_RULE..."""
    counted: dict[str, int] = {}
    for job in ran:
        name = job["rule"]
        if name not in expected:
            name = next((group for group in expected if name.startswith(group + "_")), name)
        counted[name] = counted.get(name, 0) + 1
    return counted


def slurm_logs(workdir: Path, name: str) -> list[Path]:
    """SLURM's logs of a group's jobs (group_GROUP_RULE.../) or of a rule's."""
    root = workdir / "results" / "logs" / "slurm"
    if name.startswith("compute-"):
        return [log for folder in root.glob(f"group_{name}_*") for log in folder.rglob("*.log")]
    return list((root / f"rule_{name}").rglob("*.log"))


@pytest.mark.slow
def test_the_tiny_config_runs_through_the_slurm_profile(cluster, tmp_path):
    workdir = make_copy(tmp_path / "wf", config=TINY)
    outputs = planned_outputs(workdir)
    assert len(outputs) >= 30 and "results/index.html" in outputs
    # --cores: the CPUs of one cluster job (the local node has 2), not of the whole run
    expected = expected_submissions(workdir, "--cores", "2")

    status, output = run_profile(cluster, workdir, "--cores", "2")
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
    # and completed under SLURM, one each (the pictures layout has no groups).
    local = set(re.findall(r"^localrule (\w+):", output, re.M))
    assert "all" in local
    assert expected and not [name for name in expected if name.startswith("compute-")]
    ran = slurm_jobs(cluster, run_id(output))
    assert [job for job in ran if job["state"] != "COMPLETED"] == []
    assert counted_submissions(ran, expected) == expected, output[-6000:]
    # one sbatch call per group job or job, no arrays
    assert sbatch_calls(output) == sum(expected.values())
    assert [job for job in ran if "_" in job["id"]] == [] and "Submitted array job" not in output
    # SLURM's logs under results/logs/slurm (kept for successful jobs here).
    for name in expected:
        assert slurm_logs(workdir, name), f"no SLURM log for {name}"
    # device: cpu, so no job asked for a GPU.
    for job in ran:
        assert not GPU_TRES.search(show_job(cluster, job["id"])), job


def many_images(folder: Path, count: int, size: int) -> None:
    """``count`` small random pictures (``size`` px square)."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        old.unlink()
    rng = np.random.default_rng(0)
    for index in range(count):
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{index:04d}.png")


# 300 images at 64 px in 16 chunks of the chunk layout: the model's predictions and one
# cheap technique per chunk (2 rules x 16 chunks), and the image check, summary, class
# tables and gallery.
COUNTED = {
    "images": {"folder": "images"},
    "chunk_size": 20,
    "layout": "chunks",
    "threads": 1,
    "device": "cpu",
    "models": {"efficientnet_lite0": {"weights": "default"}},
    "techniques": {"saliency": {"size": 64, "methods": ["vanilla"], "models": {"efficientnet_lite0": {}}}},
}


def results_files(workdir: Path) -> set[str]:
    """Every picture and record a run wrote (its logs and benchmarks left out)."""
    results = workdir / "results"
    return {
        str(path.relative_to(results))
        for path in results.rglob("*")
        if path.is_file() and path.relative_to(results).parts[0] not in ("logs", "benchmarks", ".cache")
    }


@pytest.mark.slow
def test_job_groups_cut_the_sbatch_calls(cluster, tmp_path):
    """300 images through profiles/slurm, once with one job per sbatch call
    (--group-components compute=1: as before groups) and once with the profile's
    groups: the sbatch calls counted, and the same files written."""
    runs = {}
    for label, args in (("one job per call", ("--group-components", "compute=1")), ("grouped", ())):
        workdir = make_copy(tmp_path / label.replace(" ", "-"), config=COUNTED)
        many_images(workdir / "images", 300, 64)
        expected = expected_submissions(workdir, "--cores", "2", *args)
        status, output = run_profile(cluster, workdir, "--cores", "2", *args)
        assert status == 0, output[-8000:] + "\n" + cluster.log_tail()
        ran = slurm_jobs(cluster, run_id(output))
        assert [job for job in ran if job["state"] != "COMPLETED"] == [], output[-6000:]
        assert planned(workdir) == {}
        runs[label] = {
            "workdir": workdir,
            "calls": sbatch_calls(output),
            "expected": expected,
            "jobs": len(ran),
            "output": output,
        }
    before, after = runs["one job per call"], runs["grouped"]
    n = group_components(yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text()))
    compute = {name: count for name, count in before["expected"].items() if name.startswith("compute-")}
    other = len(before["expected"]) - len(compute)
    print(
        f"\nsbatch calls for 300 images ({sum(compute.values())} compute jobs, {other} others): "
        f"{before['calls']} one job per call, {after['calls']} with group-components compute={n}"
    )
    assert before["calls"] == before["jobs"] == sum(compute.values()) + other
    assert after["calls"] == after["jobs"] == submissions(compute, n) + other
    assert counted_submissions(slurm_jobs(cluster, run_id(after["output"])), after["expected"]) == after["expected"]
    assert all(slurm_logs(after["workdir"], name) for name in after["expected"])
    assert after["calls"] < before["calls"] / 4
    # Each cluster job asked for at most the 2 CPUs --cores gives it.
    for line in after["output"].splitlines():
        if "sbatch call: sbatch " in line:
            cpus = re.search(r"--cpus-per-task[= ](\d+)", line)
            assert cpus is None or int(cpus.group(1)) <= 2, line
    assert results_files(before["workdir"]) == results_files(after["workdir"])


GPU = {
    "images": {"folder": "images"},
    "chunk_size": 1,
    "chunk_count": 2,
    "layout": "chunks",
    "threads": 1,
    "models": {"efficientnet_lite0": {"weights": "default"}},
    "techniques": {"saliency": {"size": 64, "methods": ["vanilla"], "models": {"efficientnet_lite0": {}}}},
}


@pytest.mark.slow
def test_a_gpu_group_is_submitted_with_gpus_1(cluster, tmp_path):
    """With device cuda every compute rule declares gpu=1; a rule's two chunks, one
    group, go to SLURM as one sbatch call that asks for one GPU (gpu is limited to 1 per
    cluster job: its jobs take turns on it), and SLURM gives the job the (fake) GPU.
    The commands then fail where torch has no CUDA, which is expected here."""
    workdir = make_copy(tmp_path / "wf", config=GPU)
    records = [f"results/records/efficientnet_lite0/saliency/vanilla/chunk00{i}of002.json" for i in (0, 1)]
    # --retries 0: the jobs fail here (no CUDA), and the profile would submit them again
    status, output = run_profile(cluster, workdir, "--retries", "0", "--config", "device=cuda", "--", *records)

    calls = [line for line in output.splitlines() if "sbatch call: sbatch " in line]
    assert len(calls) == 1, output[-6000:]  # both jobs in one cluster job
    assert "rule_compute-saliency_efficientnet_lite0_vanilla" in calls[0], calls[0]
    assert " --gpus=1" in calls[0], calls[0]
    assert "SLURM sbatch failed" not in output
    match = re.search(r"Job \S+ has been submitted with SLURM jobid (\d+)", output)  # a group: its uuid
    assert match, output[-6000:]
    record = show_job(cluster, match.group(1))
    assert GPU_TRES.search(record), record  # what slurmctld received
    state = re.search(r"\bJobState=(\S+)", record).group(1)
    assert state in ("COMPLETED", "FAILED"), record  # it ran on the node
    # Inside the job, SLURM exposed the GPU it allocated.
    logs = slurm_logs(workdir, "compute-saliency_efficientnet_lite0_vanilla")
    assert len(logs) == 1, logs
    assert "'CUDA_VISIBLE_DEVICES': '0'" in logs[0].read_text(errors="replace")
    if status != 0:
        folder = workdir / "results" / "logs" / "efficientnet_lite0" / "saliency" / "vanilla"
        text = "".join(log.read_text() for log in folder.glob("*.log"))
        assert state == "FAILED" and "CUDA is not available" in text, text
    else:
        assert all((workdir / path).exists() for path in records)
