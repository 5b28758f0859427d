import matplotlib
import numpy as np
import pytest
import torch

from cnnvis_tasks import render


def test_normalize01_range_and_degenerate():
    scaled, degenerate = render.normalize01(torch.tensor([2.0, 4.0, 6.0]))
    assert torch.allclose(scaled, torch.tensor([0.0, 0.5, 1.0])) and not degenerate
    zeros, degenerate = render.normalize01(torch.zeros(3, 3))
    assert degenerate and torch.equal(zeros, torch.zeros(3, 3))
    nan, degenerate = render.normalize01(torch.full((2, 2), float("nan")))
    assert degenerate and not torch.isnan(nan).any()


def test_gradient_color_is_global_min_max():
    gradient = torch.zeros(3, 2, 2)
    gradient[0, 0, 0] = -1.0
    gradient[2, 1, 1] = 3.0
    picture, degenerate = render.gradient_color(gradient)
    assert picture.shape == (2, 2, 3) and picture.dtype == np.uint8 and not degenerate
    assert picture[0, 0, 0] == 0 and picture[1, 1, 2] == 255
    assert picture[0, 1, 1] == round(0.25 * 255)  # zero maps to 1/4 of the range


def test_gradient_gray_clips_at_percentile():
    gradient = torch.zeros(3, 20, 50)
    gradient[1] = torch.arange(1000.0).view(20, 50) / 1000  # magnitudes 0..0.999
    gradient[0, 19, 49] = -50.0  # one outlier, beyond the 99th percentile
    picture, _ = render.gradient_gray(gradient)
    ceiling = torch.quantile(gradient.abs().amax(0).flatten(), 0.99)
    expected = (gradient.abs().amax(0).clamp(max=float(ceiling)) / ceiling * 255 + 0.5).to(torch.uint8)
    assert np.array_equal(picture[..., 0], expected.numpy())
    assert (picture[..., 0] == 255).sum() >= 10  # the outlier no longer dominates
    black, degenerate = render.gradient_gray(torch.zeros(3, 4, 4))
    assert degenerate and black.max() == 0


def test_heatmap_uses_matplotlib_colormap():
    values = torch.tensor([[0.0, 1.0]])
    picture = render.heatmap(values, "viridis")
    cmap = matplotlib.colormaps["viridis"]
    assert np.array_equal(picture[0, 0], (np.array(cmap(0.0)[:3]) * 255 + 0.5).astype(np.uint8))
    assert np.array_equal(picture[0, 1], (np.array(cmap(1.0)[:3]) * 255 + 0.5).astype(np.uint8))


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_overlay_blends_with_alpha(alpha):
    image = torch.full((3, 2, 2), 0.2)
    map01 = torch.tensor([[0.0, 1.0], [0.5, 0.25]])
    heat = render.heatmap(map01, "jet").astype(np.float64) / 255
    expected = ((1 - alpha) * 0.2 + alpha * heat) * 255 + 0.5
    assert np.array_equal(render.overlay(image, map01, alpha, "jet"), np.clip(expected, 0, 255).astype(np.uint8))


def test_channel_grid_scales_each_channel_and_enlarges_tiles():
    activation = torch.zeros(4, 7, 7)
    activation[0] = torch.linspace(0, 1, 49).view(7, 7)
    activation[1] = torch.linspace(100, 200, 49).view(7, 7)  # same shape, other range
    picture, constant = render.channel_grid(activation, count=4)
    assert constant == 2  # channels 2 and 3 are all zero
    factor = 10  # 7 px tiles enlarged to >= 64 px
    tile = 7 * factor
    assert picture.shape == (2 + 2 * (tile + 2), 2 + 2 * (tile + 2), 3)
    first = picture[2 : 2 + tile, 2 : 2 + tile, 0]
    second = picture[2 : 2 + tile, 4 + tile : 4 + 2 * tile, 0]
    assert np.abs(first.astype(int) - second).max() <= 1 and first.min() == 0 and first.max() == 255


def test_kernel_grid_colour_and_gray():
    rgb = torch.randn(25, 3, 11, 11, generator=torch.Generator().manual_seed(0))
    picture = render.kernel_grid(rgb, count=25)
    assert picture.shape[0] == picture.shape[1] == 2 + 5 * (66 + 2)  # 11 px tiles x6
    assert not np.array_equal(picture[..., 0], picture[..., 1])  # really in colour
    gray = render.kernel_grid(torch.randn(8, 16, 3, 3), count=4)
    assert np.array_equal(gray[..., 0], gray[..., 1]) and np.array_equal(gray[..., 1], gray[..., 2])


@pytest.mark.parametrize(
    "count, nrow, padding, pad_value, size",
    [
        (1, 1, 2, 1.0, (5, 7)),
        (2, 1, 2, 1.0, (4, 4)),
        (5, 3, 2, 1.0, (6, 9)),
        (7, 3, 0, 0.0, (3, 2)),
        (9, 3, 2, 1.0, (64, 64)),
        (10, 4, 3, 0.5, (5, 5)),
        (3, 8, 1, -2.0, (2, 3)),
    ],
)
def test_make_grid_matches_torchvision(count, nrow, padding, pad_value, size):
    from torchvision.utils import make_grid

    tiles = torch.rand(count, 3, *size, generator=torch.Generator().manual_seed(count))
    ours = render.make_grid(tiles, nrow=nrow, padding=padding, pad_value=pad_value)
    theirs = make_grid(tiles, nrow=nrow, padding=padding, pad_value=pad_value)
    assert ours.shape == theirs.shape and torch.equal(ours, theirs)


# --- the NumPy rendering gives the pictures the torch rendering of 22d3227 gave ------------


def _maps(seed: int) -> list[torch.Tensor]:
    """CAM-like (smooth, upsampled), noisy and degenerate maps of picture sizes."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 1, 7, 7, generator=generator) ** 3
    smooth = torch.nn.functional.interpolate(coarse, size=(224, 298), mode="bilinear", align_corners=False)[0, 0]
    noisy = torch.randn(231, 173, generator=generator) * 1e-3
    noisy[5, 7] = float("nan")
    return [smooth, noisy, torch.zeros(9, 11), torch.full((4, 6), 3.5)]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("colormap", ["jet", "viridis", "tab10", "gray"])
def test_cam_pictures_are_those_of_the_torch_rendering(seed, colormap):
    import render_before as before

    for values in _maps(seed):
        ours, degenerate = render.normalize01(values)
        theirs, was_degenerate = before.normalize01(values)
        assert torch.equal(ours, theirs) and degenerate == was_degenerate
        image = torch.rand(3, *values.shape, generator=torch.Generator().manual_seed(seed))
        assert np.array_equal(render.to_uint8(ours), before.to_uint8(theirs))
        assert np.array_equal(render.heatmap(ours, colormap), before.heatmap(theirs, colormap))
        for alpha in (0.0, 0.3, 0.5, 0.85):
            assert np.array_equal(
                render.overlay(image, ours, alpha, colormap), before.overlay(image, theirs, alpha, colormap)
            )


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_saliency_pictures_are_those_of_the_torch_rendering(seed):
    import render_before as before

    generator = torch.Generator().manual_seed(seed)
    gradients = [
        torch.randn(3, 224, 298, generator=generator) * 1e-2,
        torch.randn(3, 67, 45, generator=generator) ** 3,  # heavy tails: the clip matters
        torch.zeros(3, 8, 8),
    ]
    gradients[1][0, 3, 4] = float("nan")
    for gradient in gradients:
        for name in ("gradient_color", "gradient_gray"):
            ours, degenerate = getattr(render, name)(gradient)
            theirs, was_degenerate = getattr(before, name)(gradient)
            assert np.array_equal(ours, theirs) and degenerate == was_degenerate, name


def test_grid_tiles_are_those_of_the_torch_rendering():
    import render_before as before

    activation = torch.randn(12, 9, 7, generator=torch.Generator().manual_seed(0))
    activation[3] = 0
    picture, constant = render.channel_grid(activation, count=10)
    tiles = before.channel_tiles(activation, 10)
    enlarged = [before.to_uint8(t.repeat_interleave(10, 0).repeat_interleave(10, 1)) for t in tiles]
    assert constant == 1 and picture.shape == (2 + 3 * 92, 2 + 4 * 72, 3)  # 9 x 7 tiles x10, 4 a row
    for k, tile in enumerate(enlarged):
        y, x = divmod(k, 4)
        assert np.array_equal(picture[2 + y * 92 : 92 + y * 92, 2 + x * 72 : 72 + x * 72], tile)
    assert (picture[0] == 255).all()  # the padding is white


def test_the_quantile_is_torchs_to_the_last_bit():
    generator = np.random.default_rng(0)
    for k in range(60):
        values = np.abs(generator.standard_normal(int(generator.integers(2, 50_000)))).astype(np.float32)
        values *= np.float32(10.0 ** generator.integers(-6, 3))
        q = (0.99, 0.95, 0.5, 0.999, 0.0, 1.0)[k % 6]
        assert render._quantile(values, q) == torch.quantile(torch.from_numpy(values), q).item()
