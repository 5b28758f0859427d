"""Image parameterisations for gradient ascent, and the random transforms of robust mode.

Two parameterisations share one small interface (``parameters()``, ``normalized()``,
``pixels()``):

* :class:`PixelImage` - the normalised image itself is optimised (the seed's plain mode);
* :class:`FourierImage` - decorrelated, whitened Fourier coefficients are optimised and
  mapped through a colour matrix and a sigmoid to pixels (Olah et al. 2017,
  "Feature Visualization", Distill).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from cnnvis_tasks.mechanisms.pixels import stats, to_model_space, to_pixels

# Square root of ImageNet's colour covariance, as published with Lucid (Olah et al. 2017).
# Rows: R, G, B; columns: the decorrelated channels.
_COLOR_SQRT_COV = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])

# Spatial values of the inverse FFT are divided by this before the sigmoid.  With
# orthonormal FFT and 1/f scaling, unit steps in coefficient space would otherwise
# saturate the sigmoid within a few Adam steps (the constant Lucid uses).
_SPATIAL_DAMPING = 4.0


def color_matrix() -> torch.Tensor:
    """The 3x3 colour-correlation matrix M (rgb = M @ decorrelated), largest column norm 1."""
    return _COLOR_SQRT_COV / _COLOR_SQRT_COV.norm(dim=0).max()


def decorrelated_to_rgb(x: torch.Tensor, matrix: torch.Tensor | None = None) -> torch.Tensor:
    """Map (N, 3, H, W) decorrelated colour channels to RGB (before any squashing).

    ``matrix`` is :func:`color_matrix` already on ``x``'s device (a loop passes it
    to avoid a host-to-device copy per call)."""
    matrix = color_matrix().to(x) if matrix is None else matrix
    return torch.einsum("ck,nkhw->nchw", matrix, x)


def rgb_to_decorrelated(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`decorrelated_to_rgb`."""
    return torch.einsum("ck,nkhw->nchw", torch.linalg.inv(color_matrix()).to(x), x)


class PixelImage:
    """Plain parameterisation: the normalised image ``(x - mean) / std`` is the parameter."""

    def __init__(self, normalized: torch.Tensor, *, mean, std):
        self.param = normalized.detach().clone().requires_grad_(True)
        self.mean = stats(mean, normalized.device)
        self.std = stats(std, normalized.device)

    def parameters(self) -> list[torch.Tensor]:
        return [self.param]

    def normalized(self) -> torch.Tensor:
        return self.param

    def pixels(self) -> torch.Tensor:
        """De-normalised and clipped to [0, 1]."""
        return to_pixels(self.param, self.mean, self.std)


class FourierImage:
    """Decorrelated Fourier-space parameterisation.

    The parameters are the real 2-D FFT coefficients of each decorrelated colour
    channel, divided by their spatial frequency (so that equal-sized steps give a
    whitened, natural-image-like 1/f spectrum).  The inverse FFT is mapped through
    :func:`color_matrix` and a sigmoid to pixels in [0, 1]; all-zero coefficients
    give a constant grey (0.5) image.
    """

    def __init__(
        self,
        n: int,
        height: int,
        width: int,
        *,
        mean,
        std,
        generator: torch.Generator | None = None,
        sd: float = 0.01,
        device=None,
    ):
        self.size = (height, width)
        fy = torch.fft.fftfreq(height)[:, None]
        fx = torch.fft.rfftfreq(width)[None, :]
        freq = torch.sqrt(fy**2 + fx**2).clamp_min(1.0 / max(height, width))
        self.scale = (1.0 / freq).to(device)
        self.color = color_matrix().to(device)
        # One draw shared by every image of the batch: a batch equals separate runs.
        coeffs = torch.randn(1, 3, height, width // 2 + 1, 2, generator=generator) * sd
        self.param = coeffs.expand(n, -1, -1, -1, -1).contiguous().to(device).requires_grad_(True)
        self.mean = stats(mean, device)
        self.std = stats(std, device)

    def parameters(self) -> list[torch.Tensor]:
        return [self.param]

    def pixels(self) -> torch.Tensor:
        spectrum = torch.view_as_complex(self.param) * self.scale
        x = torch.fft.irfft2(spectrum, s=self.size, norm="ortho") / _SPATIAL_DAMPING
        return torch.sigmoid(decorrelated_to_rgb(x, self.color))

    def normalized(self) -> torch.Tensor:
        return to_model_space(self.pixels(), self.mean, self.std)


def random_transform(
    x: torch.Tensor,
    generator: torch.Generator | None = None,
    *,
    pad: int = 8,
    jitter: float = 8.0,
    scale: tuple[float, float] = (0.95, 1.05),
    degrees: float = 5.0,
) -> torch.Tensor:
    """Pad, then warp with one random shift / zoom / rotation; differentiable in ``x``.

    ``x`` (N, C, H, W) is padded by ``pad`` px of zeros (in normalised space that is the
    mean colour) on every side, giving (N, C, H + 2 pad, W + 2 pad); ``pad=0`` keeps the
    shape.  The canvas is then shifted by up to +-``jitter`` px, zoomed by a factor in
    ``scale`` and rotated by up to +-``degrees`` with bilinear ``grid_sample``; revealed
    regions are zero too.  The whole batch shares one draw (so a batch equals separate
    runs); random numbers come from ``generator`` (CPU).
    """
    if pad:
        x = F.pad(x, (pad, pad, pad, pad))
    n, c, h, w = x.shape
    r = torch.rand(4, generator=generator, dtype=torch.float64).tolist()
    angle = math.radians((2 * r[0] - 1) * degrees)
    zoom = scale[0] + (scale[1] - scale[0]) * r[1]
    tx, ty = (2 * r[2] - 1) * jitter, (2 * r[3] - 1) * jitter
    # theta maps output to input positions in [-1, 1] units; rotating in pixel units
    # (the h/w factors) keeps non-square images from being sheared.
    cos, sin = math.cos(angle) / zoom, math.sin(angle) / zoom
    entries = (cos, -sin * h / w, 2 * tx / w, sin * w / h, cos, 2 * ty / h)
    theta = x.new_empty(2, 3)
    # Filled from Python floats, each a kernel argument: a tensor built on the host
    # would be a copy to the GPU in every step, and such a copy waits for the GPU.
    for entry, value in zip(theta.view(-1), entries):
        entry.fill_(value)
    grid = F.affine_grid(theta.expand(n, 2, 3), [n, c, h, w], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
