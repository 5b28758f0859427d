"""Vision transformers' activations as feature maps, and the input size a model needs.

A CNN layer gives (N, C, h, w).  A ViT gives token sequences (N, extra + h*w, C):
its prefix tokens first (torchvision's and Hugging Face's class token, DeiT's
distillation token, timm's ``num_prefix_tokens``: class, distillation and register
tokens), then the patches row by row.  Swin keeps its patches channels-last,
(N, h, w, C) (torchvision's, and timm's models whose ``output_fmt`` is NHWC); so do
the layer norms and linear layers of a 4-D tensor.  MaxViT is NCHW already.
:func:`as_feature_map` lays each out as (N, C, h, w), so that every CAM and feature
map reads one layout; a gradient with respect to such an output is laid out by the
same call (dropping tokens and permuting are linear, so the reshaped gradient is the
gradient with respect to the reshaped activation).

torchvision's models are recognised by their class; timm's and Hugging Face's by
what they say of themselves (``patch_embed.img_size`` / ``strict_img_size`` /
``grid_size``, ``num_prefix_tokens``, ``output_fmt``, ``pretrained_cfg``;
``config.image_size`` / ``patch_size``), so that their other token models need no
entry of their own.
"""

from __future__ import annotations

import math
import weakref

import torch
from torch import Tensor, nn

from cnnvis_tasks.errors import CnnvisError
from cnnvis_tasks.models.layers import meta_copy

# At most this many leading tokens (class, distillation, register tokens) are dropped
# when a model does not say what its patch grid is.
_MAX_EXTRA_TOKENS = 16
# The pre-attention norm of a transformer block: timm's and Hugging Face's names.
_PRE_ATTENTION_NORMS = ("norm1", "layernorm_before")
# Hugging Face models: the configured side if the model takes no other (a meta probe, once per model).
_CONFIGURED_SIDES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _from(model: nn.Module, package: str, name: str | None = None) -> bool:
    """Whether ``model``'s class (or a base of it) comes from ``package`` (and is called ``name``)."""
    return any(
        cls.__module__.split(".")[0] == package and (name is None or cls.__name__ == name)
        for cls in type(model).__mro__
    )


def _square(size) -> int | None:
    """The side of a square ``size`` (an int or an (h, w) pair), else None."""
    if isinstance(size, int) and not isinstance(size, bool):
        return size
    if isinstance(size, (tuple, list)) and len(size) == 2 and size[0] == size[1] and isinstance(size[0], int):
        return size[0]
    return None


def required_input_size(model: nn.Module) -> int | None:
    """The side of the one square input ``model`` runs at, None when it takes any size.

    torchvision's ViT: its ``image_size``; MaxViT: four times its first block's grid
    (the stem and that block each halving).  timm: ``patch_embed.img_size`` of a strict
    patch embedding (ViT, DeiT, EVA, Swin, ...; not with ``dynamic_img_size``), else
    the size of a model whose ``pretrained_cfg`` says ``fixed_input_size``.  Hugging
    Face: ``config.image_size`` of a model that takes no other (ViT, DeiT; not Swin,
    DINOv2, ConvNeXt), found by running it on the meta device at twice that side.
    """
    if _from(model, "torchvision"):
        kind = type(model).__name__
        side = getattr(model, "image_size", None)
        if kind == "VisionTransformer" and isinstance(side, int):
            return side
        if kind == "MaxVit":
            height, width = model.blocks[0].grid_size
            if height == width:
                return 4 * height
        return None
    if getattr(model, "dynamic_img_size", False):
        return None
    embed = getattr(model, "patch_embed", None)
    embedded = _square(getattr(embed, "img_size", None))
    if getattr(embed, "strict_img_size", False) and embedded:
        return embedded
    declared = getattr(model, "pretrained_cfg", None)
    if isinstance(declared, dict) and declared.get("fixed_input_size"):
        return embedded or _square(tuple(declared.get("input_size", ()))[-2:])
    return _configured_side(model)


def _configured_side(model: nn.Module) -> int | None:
    """``config.image_size`` of a Hugging Face model that fails at twice that side."""
    config = getattr(model, "config", None)
    side = _square(getattr(config, "image_size", None))
    if side is None or not _from(model, "transformers"):
        return None
    if model not in _CONFIGURED_SIDES:
        channels = getattr(config, "num_channels", 3)
        # one that cannot run on meta keeps its configured size, as Hugging Face's image processors do
        flexible = _runs_on_meta(model, (1, channels, side, side)) and _runs_on_meta(
            model, (1, channels, 2 * side, 2 * side)
        )
        _CONFIGURED_SIDES[model] = 0 if flexible else side
    return _CONFIGURED_SIDES[model] or None


def _runs_on_meta(model: nn.Module, shape: tuple[int, ...]) -> bool:
    try:
        with torch.no_grad():
            meta_copy(model)(torch.empty(shape, device="meta"))
    except Exception:
        return False
    return True


def patch_grid(model: nn.Module) -> tuple[int, int] | None:
    """(h, w) of a fixed-size ViT's patch tokens (torchvision's, timm's ``patch_embed.grid_size``,
    Hugging Face's ``config.image_size // config.patch_size``), None for models that do not say."""
    if _from(model, "torchvision"):
        side, patch = getattr(model, "image_size", None), getattr(model, "patch_size", None)
        if type(model).__name__ == "VisionTransformer" and isinstance(side, int) and isinstance(patch, int):
            return side // patch, side // patch
        return None
    if required_input_size(model) is None:
        return None
    grid = getattr(getattr(model, "patch_embed", None), "grid_size", None)
    if isinstance(grid, (tuple, list)) and len(grid) == 2 and all(isinstance(n, int) for n in grid):
        return int(grid[0]), int(grid[1])
    config = getattr(model, "config", None)
    side, patch = _square(getattr(config, "image_size", None)), _square(getattr(config, "patch_size", None))
    if side and patch and _from(model, "transformers"):
        return side // patch, side // patch
    return None


def _is_nhwc(fmt) -> bool:
    return isinstance(fmt, str) and fmt.upper() == "NHWC"  # timm's Format is a str enum


def _channels_last(model: nn.Module, path: str, tensor: Tensor) -> bool:
    """Whether the 4-D output ``tensor`` of layer ``path`` is (N, h, w, C).

    torchvision's Swin keeps it from its patch embedding's norm to its final norm
    (``features``, ``norm``); only the embedding's convolution is NCHW.  Elsewhere: a
    module that says ``output_fmt`` NHWC, any non-convolution of a model that says so
    (timm's Swin), and a norm over the last dimension or a linear layer whose width is
    the tensor's last dimension (a ConvNeXt block's LayerNorm and MLP).
    """
    if _from(model, "torchvision"):
        if type(model).__name__ != "SwinTransformer" or path.split(".")[0] not in ("features", "norm"):
            return False
        return not isinstance(model.get_submodule(path), nn.Conv2d)
    try:
        module = model.get_submodule(path)
    except AttributeError:
        return False
    if isinstance(module, nn.modules.conv._ConvNd):
        return False
    if _is_nhwc(getattr(module, "output_fmt", None)) or _is_nhwc(getattr(model, "output_fmt", None)):
        return True
    if isinstance(module, nn.Linear):
        return module.out_features == tensor.shape[-1]
    shape = getattr(module, "normalized_shape", None)
    if isinstance(shape, (tuple, list, torch.Size)) and len(shape) == 1 and shape[0] == tensor.shape[-1]:
        # LayerNorm2d (timm) and channels_first LayerNorms (Hugging Face's ConvNeXt) permute to NCHW themselves
        return "2d" not in type(module).__name__.lower() and getattr(module, "data_format", "") != "channels_first"
    return False


def _grid_of(model: nn.Module, tokens: int) -> tuple[int, int] | None:
    """The patch grid of a sequence of ``tokens``: the model's own, else the largest
    square left once at most a few leading tokens (first the model's
    ``num_prefix_tokens``) are dropped."""
    grid = patch_grid(model)
    if grid is not None:
        if _from(model, "torchvision"):
            return grid if grid[0] * grid[1] <= tokens else None
        if 0 <= tokens - grid[0] * grid[1] <= _MAX_EXTRA_TOKENS:
            return grid
    # a stage of a hierarchical model, a model of any input size: a square grid
    prefix = getattr(model, "num_prefix_tokens", None)
    extras = range(min(tokens, _MAX_EXTRA_TOKENS + 1))
    if isinstance(prefix, int) and 0 <= prefix < tokens:
        extras = [prefix, *extras]
    for extra in extras:
        side = math.isqrt(tokens - extra)
        if side > 1 and side * side == tokens - extra:
            return side, side
    return None


def _describe(tensor: Tensor) -> str:
    return f"a tensor of shape {tuple(tensor.shape)}"


def as_feature_map(tensor: Tensor, model: nn.Module, path: str) -> Tensor:
    """The output of layer ``path`` of ``model`` as (N, C, h, w): a ViT's token sequence
    (N, extra + h*w, C) without its leading extra tokens, on its patch grid; a
    channels-last (N, h, w, C) output permuted; an (N, C, h, w) output as it is.  A
    clear error for anything else."""
    if tensor.dim() == 4:
        return tensor.permute(0, 3, 1, 2) if _channels_last(model, path, tensor) else tensor
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


def _is_token_model(model: nn.Module) -> bool:
    """A model whose blocks read token sequences: timm's with ``num_prefix_tokens`` (ViT,
    DeiT, EVA, BEiT, ...) or channels-last ``output_fmt`` (Swin), Hugging Face's with a
    ``config.patch_size`` (ViT, DeiT, Swin, DINOv2, BEiT; its ConvNeXt has no such block)."""
    if hasattr(model, "num_prefix_tokens") or _is_nhwc(getattr(model, "output_fmt", None)):
        return True
    return _from(model, "transformers") and getattr(getattr(model, "config", None), "patch_size", None) is not None


def transformer_cam_layer(model: nn.Module) -> str | None:
    """The usual CAM layer of a vision transformer, None for other models.

    ViT: the first LayerNorm of the last encoder block (the class token reads the
    patch tokens only in that block's attention: after it their gradient is zero).
    Swin: the first norm of the last stage's last block (pytorch-grad-cam's choice).
    torchvision's MaxViT: the output of its last block, before pooling.  For timm's
    and Hugging Face's token models the last block's pre-attention norm is the last
    module named ``norm1`` (timm, DINOv2) or ``layernorm_before`` (Hugging Face's ViT,
    DeiT, Swin, BEiT); a timm token model without one is an error saying to name the
    layer.  A Hugging Face model without one is left to the CNN rule.
    """
    if _from(model, "torchvision"):
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
    if not _is_token_model(model):
        return None
    norms = [name for name, _ in model.named_modules() if name.rsplit(".", 1)[-1] in _PRE_ATTENTION_NORMS]
    if norms:
        return norms[-1]
    if _from(model, "transformers"):
        return None
    raise CnnvisError(no_token_layer_message(model))


def no_token_layer_message(model: nn.Module) -> str:
    return (
        f"cannot tell which layer of {type(model).__name__} (a token model) to explain; "
        "give one with --layer (see: cnnvis-tasks layers)"
    )
