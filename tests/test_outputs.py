import numpy as np
import pytest
from PIL import Image

from cnnvis_tasks.outputs import atomic_write, read_metadata, save_npy, save_png


def test_png_round_trip_with_metadata(tmp_path):
    picture = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    path = save_png(tmp_path / "a" / "b" / "x.png", picture, {"target": {"index": 281, "name": "tabby"}, "p": 0.5})
    with Image.open(path) as image:
        assert image.size == (3, 2) and image.mode == "RGB"
        assert np.array_equal(np.asarray(image), picture)
    assert read_metadata(path) == {"target": {"index": 281, "name": "tabby"}, "p": 0.5}
    assert [p.name for p in path.parent.iterdir()] == ["x.png"]  # no temporary file left


def test_failed_write_leaves_nothing_and_keeps_old_file(tmp_path):
    target = tmp_path / "out.png"
    target.write_bytes(b"old")

    def explode(handle):
        handle.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, explode)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


def test_npy_round_trip(tmp_path):
    array = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
    path = save_npy(tmp_path / "r.npy", array)
    assert np.array_equal(np.load(path), array)


def test_written_files_honour_the_umask(tmp_path):
    """Not the 0600 of a temporary file: what the umask allows, 0644 under 022, 0664 under 002."""
    import subprocess
    import sys

    for umask, expected in ((0o022, 0o644), (0o002, 0o664), (0o077, 0o600)):
        target = tmp_path / f"out-{umask:03o}.png"
        code = (
            f"import os; os.umask({umask}); import numpy as np; from cnnvis_tasks.outputs import save_png; "
            f"save_png({str(target)!r}, np.zeros((2, 2, 3), dtype=np.uint8), {{'a': 1}})"
        )
        subprocess.run([sys.executable, "-c", code], check=True)
        assert target.stat().st_mode & 0o777 == expected, oct(target.stat().st_mode)


def test_every_png_level_keeps_pixels_and_facts_and_the_fast_levels_use_run_lengths(tmp_path):
    import io

    from PIL import Image as PILImage

    from cnnvis_tasks.outputs import read_metadata, save_png

    rng = np.random.default_rng(0)
    picture = np.zeros((60, 80, 3), dtype=np.uint8)
    picture[10:30, 20:50] = rng.integers(0, 255, size=(20, 30, 3), dtype=np.uint8)  # runs and noise
    sizes = {}
    for level in (0, 1, 3, 6, 9):
        path = save_png(tmp_path / f"l{level}.png", picture, {"technique": "x"}, level=level)
        with PILImage.open(path) as image:
            assert np.array_equal(np.asarray(image.convert("RGB")), picture)
        assert read_metadata(path) == {"technique": "x"}
        sizes[level] = path.stat().st_size
    assert sizes[0] > max(sizes[1], sizes[3], sizes[6], sizes[9])  # level 0 stores, the others compress
    plain = io.BytesIO()
    PILImage.fromarray(picture).save(plain, format="PNG", compress_level=6, pnginfo=_info({"technique": "x"}))
    assert (tmp_path / "l6.png").read_bytes() == plain.getvalue()  # level 6: the files of earlier versions
    fast = io.BytesIO()
    PILImage.fromarray(picture).save(fast, format="PNG", compress_level=1, pnginfo=_info({"technique": "x"}))
    assert (tmp_path / "l1.png").read_bytes() != fast.getvalue()  # level 1: zlib's run-length strategy


def _info(metadata):
    import json

    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("cnnvis", json.dumps(metadata, sort_keys=True))
    return info
