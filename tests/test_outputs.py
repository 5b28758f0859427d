import numpy as np
import pytest
from PIL import Image

from cnnvis_tasks.io.outputs import atomic_write, read_metadata, save_npy, save_png


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
            f"import os; os.umask({umask}); import numpy as np; from cnnvis_tasks.io.outputs import save_png; "
            f"save_png({str(target)!r}, np.zeros((2, 2, 3), dtype=np.uint8), {{'a': 1}})"
        )
        subprocess.run([sys.executable, "-c", code], check=True)
        assert target.stat().st_mode & 0o777 == expected, oct(target.stat().st_mode)


def test_every_png_level_keeps_pixels_and_facts_and_the_fast_levels_use_our_writer(tmp_path):
    import io

    from PIL import Image as PILImage

    from cnnvis_tasks.io.outputs import read_metadata, save_png

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
    assert _filters((tmp_path / "l1.png").read_bytes()) == {1}  # level 1: ours, every row Sub-filtered
    assert len(_filters(plain.getvalue())) > 1  # where Pillow picks a filter per row


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """The (type, data) chunks of a PNG file, each CRC checked (a reader of our own)."""
    import struct
    import zlib

    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, at = [], 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        assert struct.unpack(">I", data[at + 8 + length : at + 12 + length])[0] == zlib.crc32(kind + body)
        chunks.append((kind, body))
        at += 12 + length
    return chunks


def _filters(data: bytes) -> set[int]:
    import struct
    import zlib

    chunks = _chunks(data)
    width, height, _depth, color = struct.unpack(">IIBB", chunks[0][1][:10])
    channels = {0: 1, 2: 3, 6: 4}[color]
    lines = np.frombuffer(zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT")), np.uint8)
    return set(lines.reshape(height, 1 + width * channels)[:, 0].tolist())


@pytest.mark.parametrize(
    "shape", [(1, 1), (1, 1, 3), (7, 5), (5, 7, 3), (9, 13, 4), (33, 2, 1), (224, 298, 3)], ids=str
)
def test_the_fast_writer_decodes_to_the_same_pixels(tmp_path, shape):
    """Gray, RGB and RGBA pictures of any size, noise included (every Sub difference wraps
    around), read back by Pillow and by a decoder written here (zlib and a running sum)."""
    import struct
    import zlib

    from cnnvis_tasks.io import png

    picture = np.random.default_rng(sum(shape)).integers(0, 256, size=shape, dtype=np.uint8)
    data = png.encode_png(picture, {"cnnvis": '{"a": 1}', "other": "caf\u00e9", "wide": "\u732b \u2713"}, level=2)
    path = tmp_path / "x.png"
    path.write_bytes(data)
    with Image.open(path) as image:
        expected = picture[..., 0] if picture.ndim == 3 and picture.shape[2] == 1 else picture
        assert np.array_equal(np.asarray(image), expected)
        assert image.text == {"cnnvis": '{"a": 1}', "other": "caf\u00e9", "wide": "\u732b \u2713"}
    chunks = _chunks(data)
    width, height = struct.unpack(">II", chunks[0][1][:8])
    channels = 1 if picture.ndim == 2 else picture.shape[2]
    lines = np.frombuffer(zlib.decompress(chunks[-2][1]), np.uint8).reshape(height, 1 + width * channels)
    assert (lines[:, 0] == 1).all()
    restored = np.cumsum(lines[:, 1:].reshape(height, width, channels).astype(np.int64), axis=1) % 256
    assert np.array_equal(restored.reshape(picture.shape), picture)


def test_pictures_the_fast_writer_does_not_take_go_through_pillow(tmp_path):
    """A palette or gray-and-alpha image, 16-bit arrays: Pillow writes them at any level."""
    palette = Image.new("P", (4, 3), 5)
    palette.putpalette([v for k in range(256) for v in (k, 255 - k, 7)])
    path = save_png(tmp_path / "p.png", palette, {"a": 1}, level=1)
    with Image.open(path) as image:
        assert image.mode == "P" and np.array_equal(
            np.asarray(image.convert("RGB")), np.asarray(palette.convert("RGB"))
        )
    gray_alpha = Image.new("LA", (4, 3), (10, 200))
    with Image.open(save_png(tmp_path / "c.png", gray_alpha, level=2)) as image:
        assert image.mode == "LA" and np.array_equal(np.asarray(image), np.asarray(gray_alpha))
    wide = np.arange(12, dtype=np.uint16).reshape(3, 4) * 1000
    with Image.open(save_png(tmp_path / "w.png", wide, level=1)) as image:
        assert np.array_equal(np.asarray(image), wide)
    assert read_metadata(path) == {"a": 1}


def _info(metadata):
    import json

    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("cnnvis", json.dumps(metadata, sort_keys=True))
    return info
