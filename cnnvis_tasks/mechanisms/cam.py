"""Class activation maps: the mechanism of the CAM family.

A class activation map is ``ReLU(sum_k alpha_k A_k)`` over the channels ``A_k``
of one layer.  Methods differ only in the weights ``alpha``, a function of the
activations and of the gradient of the target's logit with respect to them:
one number per channel, or one per channel and position (HiResCAM, LayerCAM).
Grad-CAM's is the spatial mean of the gradient
(:mod:`cnnvis_tasks.techniques.grad_cam`).  Another method is another weighting
function passed to :func:`class_activation_map`.  Score-CAM, which re-runs
the model instead of taking a gradient, is :mod:`.score_cam`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnvis_tasks.errors import CnnvisError
from cnnvis_tasks.io.outputs import read_cache, write_cache
from cnnvis_tasks.mechanisms.capture import (
    Call,
    capture_outputs,
    captured_tensor,
    device_calls,
    meta_calls,
    trace_calls,
)
from cnnvis_tasks.mechanisms.targets import request_targets, target_indices
from cnnvis_tasks.mechanisms.tokens import (
    as_feature_map,
    no_token_layer_message,
    required_input_size,
    transformer_cam_layer,
)
from cnnvis_tasks.models.layers import architecture_key

Weighting = Callable[[Tensor, Tensor], Tensor]


@dataclass
class CamResult:
    cams: Tensor  # (N, h, w) float, at the layer's resolution, unnormalised
    targets: Tensor  # (N,) long: the class each map explains
    logits: Tensor  # (N, classes)
    layer: str


def class_activation_map(
    model: nn.Module,
    images: Tensor,
    layer: str,
    targets: Tensor | None,
    weighting: Weighting,
) -> CamResult:
    """CAM of ``layer`` for each image's target class, with channel weights from ``weighting``.

    ``targets`` None explains each image's top-1 class.  The score is the
    pre-softmax logit.  The model must be in eval mode (images independent) and
    this must not run under ``torch.inference_mode``.
    """
    # The activation is captured as a leaf: autograd records only the part of
    # the network after the layer, which is all the gradient needs.
    wanted = request_targets(targets, images.shape[0], images.device)
    with torch.enable_grad():
        with capture_outputs(model, [layer], as_leaf=True) as outputs:
            logits = model(images)
        output = captured_tensor(outputs, layer)
        activations = as_feature_map(output.detach(), model, layer)  # a transformer's tokens on their grid
        targets = target_indices(wanted, logits, images.shape[0])
        score = logits.gather(1, targets[:, None]).sum()  # images independent: per-image grads
        (gradients,) = torch.autograd.grad(score, output, allow_unused=True)
    if gradients is not None:
        gradients = as_feature_map(gradients, model, layer)
    cams = weighted_cam(activations, gradients, weighting)
    return CamResult(cams=cams, targets=targets, logits=logits.detach(), layer=layer)


def weighted_cam(activations: Tensor, gradients: Tensor | None, weighting: Weighting) -> Tensor:
    """``ReLU(sum_k alpha_k A_k)``: (N, h, w) maps from (N, C, h, w) activations and the
    gradients of the score with respect to them (None: the score does not depend on
    the layer at all, the gradients are zero)."""
    if gradients is None:
        gradients = torch.zeros_like(activations)
    weights = weighting(activations, gradients)
    if weights.dim() == 2:  # one weight per channel; else one per channel and position (HiResCAM, LayerCAM)
        weights = weights[:, :, None, None]
    return F.relu((weights * activations).sum(dim=1))


def upsample_cam(cams: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear upsampling of (N, h, w) maps to ``size`` = (H, W); values not normalised."""
    return F.interpolate(cams[:, None], size=tuple(size), mode="bilinear", align_corners=False)[:, 0]


def _passes_through(module: nn.Module) -> bool:
    """Pooling, dropout, identity and flatten modules: never a CAM layer."""
    kind = type(module)
    return (
        kind.__module__ in ("torch.nn.modules.pooling", "torch.nn.modules.dropout", "torch.nn.modules.flatten")
        or kind.__name__ == "Identity"
        or "pool" in kind.__name__.lower()
    )


def default_cam_layer(model: nn.Module, input_size: tuple[int, int] | None = None) -> str:
    """The layer a person would pick for Grad-CAM: for vision transformers (torchvision's,
    timm's, Hugging Face's) the usual one (:func:`.tokens.transformer_cam_layer`), else the
    last spatial feature map.

    The latter is the choice of :func:`traced_cam_layer` at ``input_size`` (None: the
    size the model needs, else 224 x 224), remembered on disk
    (:func:`cam_layer_cache`) under a digest of the architecture and the input
    size, so that a later job of the same model reads a file instead of tracing
    (a trace of EfficientNet-Lite0 costs seconds).  Only choices from the
    shape-only meta trace are kept: it reads no weights, so they hold for any
    checkpoint of the architecture.  An entry that cannot be read, or names no
    module of the model, is ignored.  A last spatial map inside a patch embedding
    (a token model the first rule does not know) is an error saying to name the layer.
    """
    transformer = transformer_cam_layer(model)
    if transformer is not None:
        return transformer
    layer = _last_spatial_layer(model, input_size)
    if any(part.startswith("patch_embed") for part in layer.split(".")):
        raise CnnvisError(no_token_layer_message(model))
    return layer


def _last_spatial_layer(model: nn.Module, input_size: tuple[int, int] | None) -> str:
    """:func:`traced_cam_layer` at ``input_size``, remembered (:func:`default_cam_layer`)."""
    if input_size is None:
        side = required_input_size(model) or 224
        input_size = (side, side)
    shape = (1, 3, *input_size)
    modules = dict(model.named_modules())
    key = hashlib.sha256(json.dumps([CAM_LAYER_CACHE_VERSION, shape, architecture_key(model)]).encode()).hexdigest()
    path = cam_layer_cache() / f"{key}.json"
    cached = read_cache(path)
    if cached.get("key") == key and cached.get("layer") in modules and cached["layer"]:
        return cached["layer"]
    calls = meta_calls(model, shape)
    if calls is None:  # a real forward: its choice might depend on the weights, so it is not kept
        return _last_feature_map_layer(device_calls(model, shape), modules)
    layer = _last_feature_map_layer(calls, modules)
    write_cache(path, {"key": key, "layer": layer})
    return layer


# Raise when the rule of _last_feature_map_layer changes, so old choices are not read.
CAM_LAYER_CACHE_VERSION = 1


def cam_layer_cache() -> Path:
    """The folder of remembered automatic layers: ``$CNNVIS_CACHE/cam-layer``, else
    ``$XDG_CACHE_HOME/cnnvis/cam-layer``, else ``~/.cache/cnnvis/cam-layer``."""
    root = os.environ.get("CNNVIS_CACHE")
    if not root:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cnnvis"
    return Path(root) / "cam-layer"


def traced_cam_layer(model: nn.Module, input_size: tuple[int, int] = (224, 224)) -> str:
    """The last spatial feature map, from a trace of every module call (nothing remembered).

    One forward (meta device when possible) records every module call.  The
    chosen tensor is the last produced 4-D output with h*w > 1 whose innermost
    producing module is not pooling / dropout / identity / flatten.  Several
    modules may return that same tensor (containers return their last child's
    output); the innermost one called exactly once wins, else the innermost one
    (Grad-CAM then uses its last call).  An in-place op's output counts as a
    new tensor (the version counter tells), so VGG gives the ReLU, not the conv.
    E.g. VGG16 ``features.29``, ResNet50 ``layer4.2``, DenseNet121
    ``features.norm5``, EfficientNet-Lite0 ``_swish`` (its last call is the head).
    """
    return _last_feature_map_layer(trace_calls(model, (1, 3, *input_size)), dict(model.named_modules()))


def _last_feature_map_layer(calls: list[Call], modules: dict[str, nn.Module]) -> str:
    times_called = Counter(call.path for call in calls)
    producers: dict[tuple[int, int], list[str]] = {}  # in order of first production
    outputs: dict[tuple[int, int], Tensor] = {}
    for call in calls:
        if isinstance(call.output, Tensor):
            key = (id(call.output), call.version)
            producers.setdefault(key, []).append(call.path)
            outputs[key] = call.output
    chosen = None
    for key, names in producers.items():
        output = outputs[key]
        if output.dim() == 4 and output.shape[2] * output.shape[3] > 1 and not _passes_through(modules[names[0]]):
            chosen = names
    if chosen is None:
        raise CnnvisError("found no layer with a spatial (N, C, h, w) output; name a layer for Grad-CAM")
    once = [name for name in chosen if times_called[name] == 1]
    return once[0] if once else chosen[0]
