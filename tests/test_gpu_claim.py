"""Concurrent jobs spread over a machine's GPUs by lock files; no GPU needed."""

import os
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import pytest
import torch
from conftest import REPO

from cnnvis_tasks.run import gpu_claim
from cnnvis_tasks.run.gpu_claim import claim_gpu, release, spread_over_gpus


@pytest.fixture
def claims():
    """Claims made by a test, given back at its end (they are this process's locks)."""
    made = []
    yield made
    for claim in made:
        release(claim)


def take(claims, count, folder, names=None):
    claim = claim_gpu(count, folder, names)
    claims.append(claim)
    return claim


def test_four_jobs_take_four_gpus_and_a_fifth_shares_the_least_used(tmp_path, claims):
    folder = tmp_path / "locks"
    first = [take(claims, 4, folder) for _ in range(4)]
    assert [c.index for c in first] == [0, 1, 2, 3] and {c.jobs for c in first} == {1}
    assert oct(folder.stat().st_mode & 0o777) == "0o700"
    fifth, sixth = take(claims, 4, folder), take(claims, 4, folder)
    assert (fifth.index, fifth.jobs) == (0, 2) and (sixth.index, sixth.jobs) == (1, 2)
    release(first[2])  # a job ends: its GPU is the next one taken, alone
    again = take(claims, 4, folder)
    assert (again.index, again.jobs) == (2, 1)
    release(first[0])  # GPU 0 still has the fifth job; GPU 3 has one: the next goes to 0 (slot 0 free)
    assert take(claims, 4, folder).index == 0
    seventh = take(claims, 4, folder)  # every GPU has one job, 0 and 1 two: 2 gets its second
    assert (seventh.index, seventh.jobs) == (2, 2)


def test_gpus_are_named_by_their_lock_files(tmp_path, claims):
    take(claims, 2, tmp_path, ["GPU-aa/1", "GPU-bb"])
    other_mask = take(claims, 1, tmp_path, ["GPU-aa/1"])  # a job that sees only the first GPU
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu-GPU-aa_1.1.lock", "gpu-GPU-aa_1.lock"]
    assert (other_mask.index, other_mask.jobs) == (0, 2)
    with pytest.raises(ValueError):
        claim_gpu(2, tmp_path, ["one"])


def test_a_claim_is_freed_when_its_process_dies(tmp_path, claims):
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from cnnvis_tasks.run.gpu_claim import claim_gpu
        print(claim_gpu(2, Path({str(tmp_path)!r})).index, flush=True)
        input()
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    try:
        assert child.stdout.readline().strip() == b"0"
        assert take(claims, 2, tmp_path).index == 1
        assert take(claims, 2, tmp_path).jobs == 2  # both held
    finally:
        child.kill()
        child.wait()
    assert (take(claims, 2, tmp_path).index, claims[-1].jobs) == (0, 1)


def test_a_lock_folder_that_is_a_link_is_refused(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(OSError):
        claim_gpu(2, tmp_path / "link")


@pytest.fixture
def four_gpus(monkeypatch, tmp_path):
    """torch seeing four GPUs (of which none is used), locks in a private folder."""
    current = []
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: SimpleNamespace(uuid=f"uuid-{i}"))
    monkeypatch.setattr(torch.cuda, "set_device", current.append)
    monkeypatch.setenv("CNNVIS_GPU_LOCKS", str(tmp_path))
    monkeypatch.setattr(gpu_claim, "_THIS_JOB", {})
    yield current
    for path in [path for path in gpu_claim._HELD if path.is_relative_to(tmp_path)]:
        gpu_claim._HELD.pop(path).close()


def test_plain_cuda_claims_a_gpu_once_per_process(four_gpus, tmp_path, capsys):
    held = claim_gpu(4, tmp_path, ["uuid-0", "uuid-1", "uuid-2", "uuid-3"])  # another job holds GPU 0
    assert spread_over_gpus(torch.device("cuda")) == torch.device("cuda", 1)
    assert four_gpus == [1]
    assert capsys.readouterr().err == f"device: cuda:1 of 4 (claimed: {tmp_path / 'gpu-uuid-1.lock'})\n"
    assert spread_over_gpus(torch.device("cuda")) == torch.device("cuda", 1)  # the same claim, said once
    assert capsys.readouterr().err == "" and len(list(tmp_path.glob("*.lock"))) == 2
    release(held)


def test_explicit_and_cpu_devices_claim_nothing(four_gpus, tmp_path, capsys):
    assert spread_over_gpus(torch.device("cuda", 3)) == torch.device("cuda", 3)
    assert spread_over_gpus(torch.device("cpu")) == torch.device("cpu")
    assert four_gpus == [] and not list(tmp_path.glob("*.lock")) and capsys.readouterr().err == ""


def test_one_visible_gpu_claims_nothing(four_gpus, monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)  # SLURM: each job sees its own GPU
    assert spread_over_gpus(torch.device("cuda")) == torch.device("cuda")
    assert not list(tmp_path.glob("*.lock"))


def test_all_taken_says_so_once_and_shares(four_gpus, tmp_path, capsys):
    names = [f"uuid-{i}" for i in range(4)]
    held = [claim_gpu(4, tmp_path, names) for _ in range(5)]  # GPU 0 has two jobs
    assert spread_over_gpus(torch.device("cuda"), quiet=True) == torch.device("cuda", 1)
    assert capsys.readouterr().err == (
        "warning: all 4 GPUs are taken by other cnnvis jobs; sharing cuda:1 (with about 1 other job(s))\n"
    )
    for claim in held:
        release(claim)


def test_an_unusable_lock_folder_falls_back_to_the_first_gpu(four_gpus, tmp_path, monkeypatch, capsys):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("CNNVIS_GPU_LOCKS", str(tmp_path / "file"))
    assert spread_over_gpus(torch.device("cuda"), quiet=True) == torch.device("cuda", 0)
    assert capsys.readouterr().err.startswith(f"warning: cannot claim a GPU in {tmp_path / 'file'}")


def test_gpu_names_follow_the_mask_where_torch_gives_no_uuid(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: SimpleNamespace())
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2, 5")
    assert gpu_claim._gpu_names(2) == ["2", "5"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert gpu_claim._gpu_names(2) == ["0", "1"]
