"""What every benchmark script shares: its command as typed, and its section of RESULTS.md."""

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
