"""docs/examples/python_api.py runs as it stands, quickly, and writes the pictures it says."""

from __future__ import annotations

import os
import resource
import subprocess
import sys

from conftest import REPO
from PIL import Image

EXAMPLE = REPO / "docs" / "examples" / "python_api.py"
STEMS = ("astronaut", "chelsea", "coffee", "rocket")


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def test_the_python_example_writes_its_pictures(tmp_path):
    out = tmp_path / "out"
    before = children_cpu_seconds()
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,  # the example finds the images next to itself
        env={**os.environ, "OUT": str(out)},
    )
    assert done.returncode == 0, done.stderr
    # CPU time, not wall time: other processes on a busy machine do not count
    assert children_cpu_seconds() - before < 30
    assert f"pictures in {out}" in done.stdout
    assert "integrated-gradients (4, 3, 128, 128) classes [0, 1, 2, " in done.stdout
    expected = {f"grad-cam-cat-{stem}.png": (128, 128) for stem in STEMS}
    expected |= {f"integrated-gradients-{stem}.png": (128, 128) for stem in STEMS}
    expected["saliency-cat.png"] = (192, 128)  # chelsea.png is 3:2, shorter side 128
    assert sorted(path.name for path in out.iterdir()) == sorted(expected)
    for name, size in expected.items():
        with Image.open(out / name) as image:
            assert (image.format, image.mode, image.size) == ("PNG", "RGB", size), name
            image.load()  # the whole file decodes
