"""Spreading concurrent jobs over the GPUs of one machine.

Each job that asks for ``cuda`` (or ``auto``) where several GPUs are visible
claims one: an exclusive, non-blocking ``flock`` on that GPU's lock file in a
lock folder shared by this user's jobs.  The lock is held until the process
exits; the kernel drops it when the process dies, so a crashed job frees its
GPU.  When every GPU is held, the job shares the least-used one: each GPU has
numbered slots (``gpu-0.lock``, ``gpu-0.1.lock``, ...), and a claim takes the
first free slot in the order slot 0 of every GPU, then slot 1 of every GPU, and
so on.  ``cuda:N`` claims nothing.  Indices are those torch sees, i.e. relative
to ``CUDA_VISIBLE_DEVICES``; lock files are named after the GPU itself (its
UUID where torch reports it), so jobs with different masks still agree.
"""

from __future__ import annotations

import errno
import os
import re
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

# Above this many jobs on one GPU, further jobs share the GPU of the last slot tried
# without a lock (no machine runs that many; the bound keeps a claim quick).
MAX_SLOTS = 64

_HELD: dict[Path, IO] = {}  # lock file -> its open file: this process's claims, held until it exits
_THIS_JOB: dict[str, int] = {}  # the index spread_over_gpus claimed, so a second session reuses it


@dataclass
class GpuClaim:
    """A claimed GPU: its index among the visible ones, how many jobs used it when
    claimed, this one included (1: alone), and the lock file held (None: no lock)."""

    index: int
    jobs: int
    lock: Path | None


def lock_folder() -> Path:
    """``$CNNVIS_GPU_LOCKS``, else ``cnnvis-gpu-locks-UID`` in the system temp folder."""
    folder = os.environ.get("CNNVIS_GPU_LOCKS")
    if folder:
        return Path(folder)
    return Path(tempfile.gettempdir()) / f"cnnvis-gpu-locks-{os.getuid()}"  # one folder per user


def _private_folder(folder: Path) -> None:
    """Create ``folder`` 0700; refuse one that is not a folder of this user's (another
    user's folder in /tmp must not decide, or see, our claims)."""
    try:
        folder.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        pass
    info = folder.lstat()
    if not folder.is_dir() or folder.is_symlink() or info.st_uid != os.getuid():
        raise OSError(errno.EPERM, "not a folder owned by this user", str(folder))


def _try_lock(path: Path) -> IO | None:
    """The open lock file if this process now holds its exclusive lock, else None."""
    import fcntl  # POSIX only: elsewhere spread_over_gpus falls back to cuda:0

    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    handle = os.fdopen(fd, "r+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    except BaseException:
        handle.close()
        raise
    return handle


def _slot_file(folder: Path, name: str, slot: int) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    return folder / (f"gpu-{safe}.lock" if slot == 0 else f"gpu-{safe}.{slot}.lock")


def claim_gpu(count: int, folder: Path, names: Sequence[str] | None = None) -> GpuClaim:
    """Claim one of ``count`` GPUs by a lock in ``folder``: a free one if any, else the least used.

    ``names`` name the GPUs' lock files (default: their indices).  The lock is
    held until this process exits (or :func:`release` is called).  Raises
    ``OSError`` when the folder cannot be used.
    """
    if count < 1:
        raise ValueError(f"no GPU to claim among {count}")
    names = [str(index) for index in range(count)] if names is None else list(names)
    if len(names) != count:
        raise ValueError(f"{len(names)} names for {count} GPUs")
    _private_folder(folder)
    for slot in range(MAX_SLOTS):
        for index, name in enumerate(names):
            path = _slot_file(folder, name, slot)
            handle = _try_lock(path)
            if handle is not None:
                _HELD[path] = handle
                # Every GPU has `slot` slots held, and GPUs before this one also slot `slot`.
                return GpuClaim(index=index, jobs=slot + 1, lock=path)
    return GpuClaim(index=0, jobs=MAX_SLOTS + 1, lock=None)


def release(claim: GpuClaim) -> None:
    """Give a claim back before the process exits (tests; a job keeps its claim)."""
    handle = _HELD.pop(claim.lock, None) if claim.lock is not None else None
    if handle is not None:
        handle.close()


def _gpu_names(count: int) -> list[str]:
    """Names of the visible GPUs that do not depend on ``CUDA_VISIBLE_DEVICES``:
    torch's UUID where it reports one, else the mask's entry, else the index."""
    import torch

    visible = [entry.strip() for entry in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if entry.strip()]
    names = []
    for index in range(count):
        uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
        if uuid:
            names.append(str(uuid))
        elif len(visible) == count:
            names.append(visible[index])
        else:
            names.append(str(index))
    return names


def spread_over_gpus(device, quiet: bool = False):
    """``device`` with a GPU index claimed for this job, where it says plain ``cuda``
    and several GPUs are visible; any other device unchanged.  The claimed GPU
    becomes torch's current device (so nothing starts a context on cuda:0).  Says
    on stderr which GPU it took (unless ``quiet``), and that it shares one when
    all were taken (always)."""
    import torch

    if device.type != "cuda" or device.index is not None or torch.cuda.device_count() < 2:
        return device
    if "index" not in _THIS_JOB:
        _THIS_JOB["index"] = _claim_for_this_job(torch.cuda.device_count(), quiet)
    torch.cuda.set_device(_THIS_JOB["index"])
    return torch.device("cuda", _THIS_JOB["index"])


def _claim_for_this_job(count: int, quiet: bool) -> int:
    folder = lock_folder()
    try:
        claim = claim_gpu(count, folder, _gpu_names(count))
    except (OSError, ImportError) as error:  # ImportError: no fcntl (not POSIX)
        reason = getattr(error, "strerror", None) or error
        print(f"warning: cannot claim a GPU in {folder} ({reason}); using cuda:0", file=sys.stderr)
        return 0
    if claim.jobs > 1:
        print(
            f"warning: all {count} GPUs are taken by other cnnvis jobs; sharing cuda:{claim.index} "
            f"(with about {claim.jobs - 1} other job(s))",
            file=sys.stderr,
        )
    elif not quiet:
        print(f"device: cuda:{claim.index} of {count} (claimed: {claim.lock})", file=sys.stderr)
    return claim.index
