"""Facts of the machine the workflow runs on: a GPU, the command's folder."""

from __future__ import annotations

import glob
import os


def gpu_visible() -> bool:
    """Whether this machine shows a CUDA GPU.  Importing torch takes seconds, at every
    Snakemake start (and every cluster job): it is asked only where the machine
    shows an NVIDIA device at all."""
    hidden = os.environ.get("CUDA_VISIBLE_DEVICES") in ("", "-1")
    if hidden or not glob.glob(os.path.join(os.sep, "dev", "nvidia[0-9]*")):
        return False
    import torch

    return torch.cuda.is_available()


def uses_gpu(device: str) -> bool:
    """Whether compute jobs use a GPU: ``cuda``/``cuda:N``, or ``auto`` where one exists."""
    if device.startswith("cuda"):
        return True
    return device == "auto" and gpu_visible()


def put_on_path(folder: str, command: str) -> None:
    """Put ``folder`` on PATH (for the jobs this process starts) if ``command`` is there and PATH lacks it."""
    path = os.environ.get("PATH", "")
    if os.path.isfile(os.path.join(folder, command)) and folder not in path.split(os.pathsep):
        os.environ["PATH"] = os.pathsep.join([folder, path])
