import io

import numpy as np
import pytest
import torch
from conftest import CAT
from PIL import Image

from cnnvis_tasks.errors import CnnvisError
from cnnvis_tasks.io.images import load_batches, load_image, open_rgb, resize_shorter_side

# A 4 x 6 RGB pattern with distinct, exactly representable colours.
PATTERN = np.array(
    [[[(r * 40) % 256, (c * 40) % 256, (r * c * 10) % 256] for c in range(6)] for r in range(4)], dtype=np.uint8
)


def _save(image: Image.Image, path, **kwargs):
    image.save(path, **kwargs)
    return path


@pytest.mark.parametrize("fmt,suffix", [("PNG", ".png"), ("TIFF", ".tif"), ("BMP", ".bmp"), ("WEBP", ".webp")])
def test_lossless_formats_decode_exactly(tmp_path, fmt, suffix):
    kwargs = {"lossless": True} if fmt == "WEBP" else {}
    path = _save(Image.fromarray(PATTERN), tmp_path / f"p{suffix}", format=fmt, **kwargs)
    tensor = load_image(path, size=0)
    assert tensor.shape == (3, 4, 6)
    assert torch.equal((tensor * 255).round().to(torch.uint8).permute(1, 2, 0), torch.from_numpy(PATTERN))


def test_jpeg_decodes_close(tmp_path):
    flat = np.full((16, 16, 3), (200, 100, 50), dtype=np.uint8)
    path = _save(Image.fromarray(flat), tmp_path / "p.jpg", quality=95)
    pixels = (load_image(path, size=0) * 255).permute(1, 2, 0).numpy()
    assert np.abs(pixels - flat).max() <= 3


def test_gif_gives_first_frame(tmp_path):
    red = Image.new("RGB", (8, 8), (255, 0, 0))
    blue = Image.new("RGB", (8, 8), (0, 0, 255))
    path = tmp_path / "anim.gif"
    red.save(path, save_all=True, append_images=[blue])
    tensor = load_image(path, size=0)
    assert tensor[0].mean() > 0.95 and tensor[2].mean() < 0.05


@pytest.mark.parametrize(
    "mode,value,expected",
    [
        ("L", 128, (128, 128, 128)),
        ("1", 1, (255, 255, 255)),
        ("CMYK", (0, 255, 255, 0), (255, 0, 0)),
        ("I;16", 65535, (255, 255, 255)),
        ("I;16", 32896, (128, 128, 128)),
    ],
)
def test_modes_become_rgb(tmp_path, mode, value, expected):
    image = Image.new(mode, (5, 3), value)
    fmt = "TIFF" if mode == "CMYK" else "PNG"
    path = _save(image, tmp_path / f"m.{fmt.lower()}", format=fmt)
    rgb = np.asarray(open_rgb(path))
    assert rgb.shape == (3, 5, 3)
    assert np.abs(rgb.astype(int) - np.array(expected)).max() <= 1


def test_alpha_is_composited_over_white(tmp_path):
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    rgba.putpixel((0, 0), (10, 20, 30, 255))
    path = _save(rgba, tmp_path / "a.png")
    rgb = np.asarray(open_rgb(path))
    assert tuple(rgb[0, 0]) == (10, 20, 30)
    assert tuple(rgb[3, 3]) == (255, 255, 255)
    la = _save(Image.new("LA", (2, 2), (0, 128)), tmp_path / "la.png")
    assert np.abs(np.asarray(open_rgb(la)).astype(int) - 127).max() <= 1  # 50% black over white


def test_palette_with_transparency(tmp_path):
    image = Image.new("P", (3, 3), 0)
    image.putpalette([0, 255, 0] + [0, 0, 255] * 255)
    image.putpixel((1, 1), 1)
    path = _save(image, tmp_path / "p.png", transparency=0)
    rgb = np.asarray(open_rgb(path))
    assert tuple(rgb[0, 0]) == (255, 255, 255) and tuple(rgb[1, 1]) == (0, 0, 255)


def test_exif_orientation_applied(tmp_path):
    image = Image.new("RGB", (6, 4), (0, 0, 0))
    image.putpixel((0, 0), (255, 255, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = _save(image, tmp_path / "o.jpg", exif=exif, quality=100)
    upright = open_rgb(path)
    assert upright.size == (4, 6)
    assert np.asarray(upright)[0, 3].mean() > 200  # the corner moved to the top right


def test_decompression_bomb_refused(tmp_path, monkeypatch):
    path = _save(Image.new("RGB", (64, 64)), tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(CnnvisError, match="decompression bomb"):
        open_rgb(path)


@pytest.mark.parametrize("content,match", [(b"not an image at all", "not a recognised image"), (None, "not found")])
def test_unreadable_and_missing(tmp_path, content, match):
    path = tmp_path / "bad.png"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CnnvisError, match=match) as info:
        open_rgb(path)
    assert str(path) in str(info.value)


def test_truncated_file(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buffer, format="PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(CnnvisError, match="cut.png"):
        open_rgb(path)


def test_resize_keeps_aspect_and_224_is_untouched(tmp_path):
    cat = open_rgb(CAT)  # 451 x 300
    assert resize_shorter_side(cat, 224).size == (337, 224)
    assert resize_shorter_side(cat, 0) is cat
    square = Image.fromarray(np.random.default_rng(1).integers(0, 255, (224, 224, 3), dtype=np.uint8))
    path = _save(square, tmp_path / "sq.png")
    tensor = load_image(path, 224)
    assert torch.equal((tensor * 255).round().to(torch.uint8).permute(1, 2, 0), torch.from_numpy(np.array(square)))


def test_load_batches_groups_sizes_and_bounds_memory(tmp_path):
    paths = []
    for i, size in enumerate([(8, 8), (8, 12), (8, 8), (8, 8), (8, 12)]):
        paths.append(_save(Image.new("RGB", size, (i * 40, 0, 0)), tmp_path / f"{i}.png"))
    seen = list(load_batches(paths, size=0, batch_size=3))
    assert [indices for indices, _ in seen] == [[0, 2], [1], [3], [4]]
    for indices, batch in seen:
        assert batch.shape[0] == len(indices) <= 3
        for row, index in enumerate(indices):
            assert abs(float(batch[row, 0, 0, 0]) * 255 - index * 40) < 0.5
    with pytest.raises(CnnvisError):
        list(load_batches(paths, 0, 0))


@pytest.mark.parametrize(
    "values, expected",
    [
        (np.array([[0.0, 0.5, 1.0]], dtype=np.float32), [0, 128, 255]),  # fractions of white
        (np.array([[-2.0, 0.0, 2.0]], dtype=np.float32), [0, 128, 255]),  # stretched
        (np.array([[100.0, 100.0, 100.0]], dtype=np.float32), [0, 0, 0]),  # constant, outside 0..1
    ],
)
def test_float_images_are_scaled_by_their_range(tmp_path, values, expected):
    path = tmp_path / "f.tif"
    Image.fromarray(values, mode="F").save(path)
    assert np.asarray(open_rgb(path))[0, :, 0].tolist() == expected


def test_twelve_bit_data_in_sixteen_bits_is_not_dark(tmp_path):
    path = tmp_path / "twelve.png"
    Image.fromarray(np.array([[0, 2048, 4095]], dtype=np.uint16)).save(path)
    assert np.asarray(open_rgb(path))[0, :, 0].tolist() == [0, 128, 255]


def test_nan_or_inf_fails_naming_the_image(tmp_path):
    from cnnvis_tasks.errors import CnnvisError

    for bad in (np.nan, np.inf):
        path = tmp_path / f"bad{bad}.tif"
        Image.fromarray(np.array([[0.5, bad]], dtype=np.float32), mode="F").save(path)
        with pytest.raises(CnnvisError, match=f"cannot read image {path}: it holds NaN or infinite values"):
            open_rgb(path)
