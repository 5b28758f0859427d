"""What every benchmark script shares: its command as typed, its section of RESULTS.md,
and reading a process's memory."""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HEADER = "# cnnvis benchmarks\n\nEach section is written by one script in `bench/`; see `bench/README.md`.\n"


def display_command() -> str:
    """This script's command line, with paths inside the repository made relative."""

    def shown(path: Path) -> str:
        return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)

    return shlex.join([shown(Path(sys.executable)), shown(Path(sys.argv[0]).resolve()), *sys.argv[1:]])


def write_section(path: Path, text: str) -> None:
    """Replace the section ``text`` starts with in ``path`` (or append it), keeping the others."""
    old = path.read_text() if path.is_file() else HEADER
    title = text.split("\n", 1)[0]
    pattern = re.compile(rf"^{re.escape(title)}\n.*?(?=^## |\Z)", re.M | re.S)
    if pattern.search(old):
        new = pattern.sub(lambda _m: text.rstrip("\n") + "\n\n", old, count=1)
    else:
        new = old.rstrip("\n") + "\n\n" + text
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(new.rstrip("\n") + "\n")


def status_mib(key: str, pid: int | str = "self") -> float | None:
    """A memory line of ``/proc/PID/status`` (``VmRSS``, ``VmHWM``, ...) in MiB; None
    where there is no such file (not Linux, or the process has ended)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None
