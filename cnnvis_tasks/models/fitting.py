"""A checkpoint's weights in an architecture: the architecture built for the checkpoint
(its head sized from the checkpoint's rows, Inception's auxiliary heads as the
checkpoint holds them), a strict load whose mismatch is one line naming the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnvis_tasks.errors import CnnvisError
from cnnvis_tasks.models.sources import (
    PRETRAINED_BUILDER_KWARGS,
    Built,
    build_architecture,
    build_hf,
    classifier_rows,
    is_on_meta,
    on_meta,
)
from cnnvis_tasks.models.spec import HF, MODULE, TORCHSCRIPT, TORCHVISION, ModelSpec


def state_problem(expected: dict[str, tuple[int, ...]], given: dict[str, tuple[int, ...]]) -> str | None:
    """What keeps tensors of shapes ``given`` from loading into a model whose state has
    shapes ``expected`` (missing, unexpected, mismatched keys, a few named); None: they fit."""
    missing = [key for key in expected if key not in given]
    unexpected = [key for key in given if key not in expected]
    shapes = [key for key in expected if key in given and tuple(given[key]) != tuple(expected[key])]
    details = []
    if missing:
        details.append("missing " + _few(missing))
    if unexpected:
        details.append("unexpected " + _few(unexpected))
    if shapes:
        key = shapes[0]
        more = f" (and {len(shapes) - 1} more)" if len(shapes) > 1 else ""
        details.append(
            f"size mismatch for {key}: {list(given[key])} in the file, {list(expected[key])} in the model{more}"
        )
    return "; ".join(details) or None


def _few(keys: list[str], limit: int = 3) -> str:
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def _shapes(state: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in state.items()}


def _load_into(model: nn.Module, state: dict[str, torch.Tensor], spec: ModelSpec, path: Path) -> nn.Module:
    """Strict load; a mismatch becomes a one-line error naming the file.  Half-precision
    weights (fp16, bf16) become the model's own precision: the techniques compute in it."""
    expected = model.state_dict()
    problem = state_problem(_shapes(expected), _shapes(state))
    if problem:
        raise CnnvisError(f"weights file {path} does not fit {spec.arch}: {problem}")
    state = {
        key: value.to(expected[key].dtype)
        if value.is_floating_point() and expected[key].is_floating_point() and value.dtype != expected[key].dtype
        else value
        for key, value in state.items()
    }
    model.load_state_dict(state, strict=True, assign=True)
    return model


def from_checkpoint(spec: ModelSpec, path: Path, pretrained: bool = False) -> tuple[Built, list[str] | None, str]:
    """The architecture with the checkpoint's weights, its head sized from the checkpoint;
    with the class names the checkpoint holds and its form."""
    from cnnvis_tasks.models.checkpoints import fit_state_dict, head_size, read_checkpoint

    checkpoint = read_checkpoint(path, trust_pickle=spec.trust_pickle, torchscript=spec.source == TORCHSCRIPT)
    if checkpoint.module is not None:  # a TorchScript archive or a trusted pickled model
        return Built(checkpoint.module, head_key=None), checkpoint.classes, checkpoint.form
    if spec.source == TORCHSCRIPT:
        raise CnnvisError(f"{path} holds weights, not a TorchScript archive: give its architecture as arch")
    spec = _with_auxiliary_heads(spec, checkpoint.state, pretrained)
    if spec.source == HF:
        built = build_hf(spec, from_folder=False, num_classes=None)
    else:
        built = on_meta(lambda: build_architecture(spec, pretrained=pretrained))
    state = fit_state_dict(checkpoint.state, built.module.state_dict().keys())
    rows = head_size(state, [built.head_key] if built.head_key else [])
    if rows is not None and rows != classifier_rows(built) and spec.source != MODULE:
        built = _rebuild(spec, rows, pretrained)
        state = fit_state_dict(checkpoint.state, built.module.state_dict().keys())
    built.module = _load_into(built.module, state, spec, path)
    if is_on_meta(built.module):  # a buffer the checkpoint does not hold: build for real
        real = build_architecture(spec, pretrained=pretrained, num_classes=rows)
        real.module = _load_into(real.module, state, spec, path)
        built = real
    return built, checkpoint.classes, checkpoint.form


def _with_auxiliary_heads(spec: ModelSpec, state: dict[str, Any], pretrained: bool) -> ModelSpec:
    """Inception v3 and GoogLeNet as fine-tuned from torchvision's weights (the usual start):
    with their input transform, and with the auxiliary heads the checkpoint holds or not
    (``arch_args`` say otherwise where given)."""
    from dataclasses import replace

    if spec.source != TORCHVISION or spec.target not in PRETRAINED_BUILDER_KWARGS or pretrained:
        return spec
    auxiliary = any(part in f".{key}" for key in state for part in (".AuxLogits.", ".aux1.", ".aux2."))
    defaults = {**PRETRAINED_BUILDER_KWARGS[spec.target], "aux_logits": auxiliary}
    return replace(spec, arch_args={**defaults, **spec.arch_args})


def _rebuild(spec: ModelSpec, num_classes: int, pretrained: bool = False) -> Built:
    if spec.source == HF:
        return build_hf(spec, from_folder=False, num_classes=num_classes)
    return on_meta(lambda: build_architecture(spec, pretrained=pretrained, num_classes=num_classes))
