"""Saliency maps: vanilla gradients, guided backpropagation and deconvnet.

The three methods differ only in how the gradient passes back through each
ReLU-family activation (``mask`` is where the activation passes its input):

* ``vanilla``: ``grad_in = grad_out * mask`` (the ordinary gradient)
* ``guided``:  ``grad_in = mask * max(grad_out, 0)`` (Springenberg et al.)
* ``deconv``:  ``grad_in = max(grad_out, 0)`` (Zeiler & Fergus)

The rule is applied by a ``TorchFunctionMode`` active during the forward pass,
which swaps every ReLU-family call (modules, functional, tensor methods,
in-place variants, ReLU6 / hardtanh / clamp with a lower bound of 0) for an
autograd function carrying the rule.  This needs no hooks and no knowledge
of the architecture, and catches modules that are called several times.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from cnnvis_tasks.mechanisms.targets import request_targets, target_indices

METHODS = ("vanilla", "guided", "deconv")

_INF = math.inf


# Argument parsers: each takes the call's (args, kwargs) as its own signature and
# returns (input, lo, hi, inplace).  A parser's TypeError (unexpected arguments
# such as ``out=``) means "not ours": the call passes through untouched.
def _relu(input, inplace=False):
    return input, 0, _INF, inplace


def _relu_method(input):
    return input, 0, _INF, False


def _relu_(input):
    return input, 0, _INF, True


def _relu6(input, inplace=False):
    return input, 0, 6, inplace


def _f_hardtanh(input, min_val=-1.0, max_val=1.0, inplace=False):
    return input, min_val, max_val, inplace


def _c_hardtanh(input, min_val=-1.0, max_val=1.0):
    return input, min_val, max_val, False


def _c_hardtanh_(input, min_val=-1.0, max_val=1.0):
    return input, min_val, max_val, True


def _clamp(input, min=None, max=None):
    return input, min, _INF if max is None else max, False


def _clamp_(input, min=None, max=None):
    return input, min, _INF if max is None else max, True


def _clamp_min(input, min):
    return input, min, _INF, False


def _clamp_min_(input, min):
    return input, min, _INF, True


_PARSERS = {
    F.relu: _relu,
    torch.relu: _relu_method,
    torch.Tensor.relu: _relu_method,
    torch.relu_: _relu_,  # also F.relu_
    torch.Tensor.relu_: _relu_,
    F.relu6: _relu6,
    F.hardtanh: _f_hardtanh,
    torch._C._nn.hardtanh: _c_hardtanh,
    torch._C._nn.hardtanh_: _c_hardtanh_,  # also F.hardtanh_
    torch.clamp: _clamp,
    torch.clip: _clamp,
    torch.Tensor.clamp: _clamp,
    torch.Tensor.clip: _clamp,
    torch.clamp_: _clamp_,
    torch.clip_: _clamp_,
    torch.Tensor.clamp_: _clamp_,
    torch.Tensor.clip_: _clamp_,
    torch.clamp_min: _clamp_min,
    torch.Tensor.clamp_min: _clamp_min,
    torch.clamp_min_: _clamp_min_,
    torch.Tensor.clamp_min_: _clamp_min_,
}


def _is_scalar(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _parse(func, args, kwargs):
    """(input, lo, hi, inplace) if ``func(*args, **kwargs)`` is a ReLU-family call, else None."""
    parser = _PARSERS.get(func)
    if parser is None:
        return None
    try:
        x, lo, hi, inplace = parser(*args, **kwargs)
    except TypeError:
        return None
    if not (isinstance(x, torch.Tensor) and x.is_floating_point()):
        return None
    if not (_is_scalar(lo) and lo == 0 and _is_scalar(hi) and hi > 0):
        return None
    return x, lo, hi, inplace


class _RuledActivation(torch.autograd.Function):
    """Runs the original activation; its backward applies the method's rule."""

    @staticmethod
    def forward(ctx, x, func, args, kwargs, lo, hi, inplace, method):
        out = func(x, *args, **kwargs)
        if inplace:
            ctx.mark_dirty(x)
            out = x
        ctx.method, ctx.lo, ctx.hi = method, lo, hi
        if method != "deconv":
            # The output tells where the input was inside (lo, hi), as PyTorch's own
            # ReLU backward uses it; cheaper than keeping a separate mask.
            ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        # The mode may still be active: plain aten calls must not be intercepted.
        with torch._C.DisableTorchFunction():
            if ctx.method != "vanilla":
                grad_out = grad_out.clamp_min(0)
            if ctx.method != "deconv":
                (out,) = ctx.saved_tensors
                if ctx.hi == _INF:
                    grad_out = torch.ops.aten.threshold_backward(grad_out, out, ctx.lo)
                else:
                    grad_out = torch.ops.aten.hardtanh_backward(grad_out, out, ctx.lo, ctx.hi)
        return grad_out, None, None, None, None, None, None, None


class _ReluRuleMode(TorchFunctionMode):
    """Swaps ReLU-family calls for ``_RuledActivation``; counts them in ``.count``."""

    def __init__(self, method: str):
        super().__init__()
        self.method = method
        self.count = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        parsed = _parse(func, args, kwargs)
        if parsed is None:
            return func(*args, **kwargs)
        x, lo, hi, inplace = parsed
        self.count += 1
        if args and args[0] is x:
            rest_args, rest_kwargs = args[1:], kwargs
        else:  # input given by keyword
            rest_args, rest_kwargs = args, {k: v for k, v in kwargs.items() if k != "input"}
        return _RuledActivation.apply(x, func, rest_args, rest_kwargs, lo, hi, inplace, self.method)


@contextlib.contextmanager
def relu_backward_rule(method: str):
    """Apply ``method``'s gradient rule to every ReLU-family call made inside.

    Yields an object whose ``.count`` is the number of ReLU-family calls seen.
    Run the forward pass inside; the backward may run inside or after.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
    mode = _ReluRuleMode(method)
    with mode:  # TorchFunctionMode's __exit__ pops the mode even on error
        yield mode


@dataclass
class SaliencyResult:
    """Gradients of each image's target logit with respect to that image."""

    gradients: torch.Tensor  # (N, C, H, W) float32, d logit[i, target_i] / d input_i, detached
    targets: torch.Tensor  # (N,) long, the class index used per image
    logits: torch.Tensor  # (N, num_classes) detached, from the same forward pass


def saliency(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor | None = None,
    method: str = "vanilla",
) -> SaliencyResult:
    """Gradient of each image's target logit with respect to the (normalised) image.

    targets None -> top-1 prediction per image; else a (N,) long tensor of class
    indices.  ``method`` is one of ``METHODS``.  The model (in eval mode) and
    ``images`` are left unchanged; parameter ``.grad`` fields are not written.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
    x = images.detach().clone().requires_grad_(True)
    wanted = request_targets(targets, x.shape[0], x.device)
    # Vanilla is the ordinary gradient: plain autograd, without the mode's cost.
    rule_context = contextlib.nullcontext() if method == "vanilla" else relu_backward_rule(method)
    with torch.enable_grad():
        with rule_context as rule:
            logits = model(x)
        targets = target_indices(wanted, logits, x.shape[0])
        if method != "vanilla" and rule.count == 0:
            warnings.warn(
                f"the model ran no ReLU-family activation (GELU, SiLU and the like have no {method} rule), "
                f"so {method!r} saliency equals vanilla gradients",
                stacklevel=2,
            )
        # Images are independent in eval mode, so one backward of the summed scores
        # gives each image the gradient of its own target logit.
        score = logits.gather(1, targets[:, None]).sum()
        (grad,) = torch.autograd.grad(score, x)
    return SaliencyResult(gradients=grad.detach().float(), targets=targets.detach(), logits=logits.detach())
