"""Vision transformers' activations as feature maps, and the input size a model needs.

A CNN layer gives (N, C, h, w).  torchvision's ViT gives token sequences
(N, 1 + h*w, C), the class token first; Swin keeps its patches channels-last,
(N, h, w, C); MaxViT is NCHW already.  :func:`as_feature_map` lays each out as
(N, C, h, w), so that every CAM and feature map reads one layout; a gradient
with respect to such an output is laid out by the same call (dropping tokens
and permuting are linear, so the reshaped gradient is the gradient with
respect to the reshaped activation).
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from ..errors import CnnvisError

# At most this many leading tokens (class, distillation, register tokens) are dropped
# when a model does not say what its patch grid is.
_MAX_EXTRA_TOKENS = 16


def required_input_size(model: nn.Module) -> int | None:
    """The side of the one square input ``model`` runs at (torchvision's ViT: its
    ``image_size``; MaxViT: four times its first block's grid, the stem and that
    block each halving); None when it takes any size."""
    kind = type(model).__name__
    side = getattr(model, "image_size", None)
    if kind == "VisionTransformer" and isinstance(side, int):
        return side
    if kind == "MaxVit":
        height, width = model.blocks[0].grid_size
        if height == width:
            return 4 * height
    return None


def patch_grid(model: nn.Module) -> tuple[int, int] | None:
    """(h, w) of a ViT's patch tokens, None for models that do not say."""
    side, patch = getattr(model, "image_size", None), getattr(model, "patch_size", None)
    if type(model).__name__ == "VisionTransformer" and isinstance(side, int) and isinstance(patch, int):
        return side // patch, side // patch
    return None


def _channels_last(model: nn.Module, path: str) -> bool:
    """Swin keeps (N, h, w, C) from its patch embedding's norm to its final norm
    (``features``, ``norm``); only the embedding's convolution is NCHW."""
    if type(model).__name__ != "SwinTransformer" or path.split(".")[0] not in ("features", "norm"):
        return False
    return not isinstance(model.get_submodule(path), nn.Conv2d)


def _grid_of(model: nn.Module, tokens: int) -> tuple[int, int] | None:
    """The patch grid of a sequence of ``tokens``: the model's own, else the largest
    square left once at most a few leading tokens are dropped."""
    grid = patch_grid(model)
    if grid is not None:
        return grid if grid[0] * grid[1] <= tokens else None
    for extra in range(min(tokens, _MAX_EXTRA_TOKENS + 1)):
        side = math.isqrt(tokens - extra)
        if side > 1 and side * side == tokens - extra:
            return side, side
    return None


def _describe(tensor: Tensor) -> str:
    return f"a tensor of shape {tuple(tensor.shape)}"


def as_feature_map(tensor: Tensor, model: nn.Module, path: str) -> Tensor:
    """The output of layer ``path`` of ``model`` as (N, C, h, w): a ViT's token sequence
    (N, extra + h*w, C) without its leading extra tokens, on its patch grid; Swin's
    channels-last (N, h, w, C) permuted; an (N, C, h, w) output as it is.  A clear
    error for anything else."""
    if tensor.dim() == 4:
        return tensor.permute(0, 3, 1, 2) if _channels_last(model, path) else tensor
    if tensor.dim() == 3:
        batch, tokens, channels = tensor.shape
        grid = _grid_of(model, tokens)
        if grid is not None:
            patches = tensor[:, tokens - grid[0] * grid[1] :]
            return patches.reshape(batch, grid[0], grid[1], channels).permute(0, 3, 1, 2)
        raise CnnvisError(
            f"layer {path!r} outputs {_describe(tensor)}, a sequence whose tokens do not form a square grid"
        )
    raise CnnvisError(f"layer {path!r} outputs {_describe(tensor)}, not a feature map (N, C, h, w)")


def transformer_cam_layer(model: nn.Module) -> str | None:
    """The usual CAM layer of torchvision's vision transformers, None for other models.

    ViT: the first LayerNorm of the last encoder block (the class token reads the
    patch tokens only in that block's attention: after it their gradient is zero).
    Swin: the first norm of the last stage's last block (pytorch-grad-cam's choice).
    MaxViT: the output of its last block, before pooling.
    """
    kind = type(model).__name__
    if kind == "VisionTransformer":
        last = list(model.encoder.layers.named_children())[-1][0]
        return f"encoder.layers.{last}.ln_1"
    if kind == "SwinTransformer":
        stage = len(model.features) - 1
        return f"features.{stage}.{len(model.features[stage]) - 1}.norm1"
    if kind == "MaxVit":
        return f"blocks.{len(model.blocks) - 1}"
    return None
