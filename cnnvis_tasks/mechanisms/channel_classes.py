"""Which classes a channel pushes up and down: the mean gradient of each class's logit at a layer.

For channel ``c`` of a layer and class ``k``: the gradient of logit ``k`` with
respect to the channel's activation, summed over its positions and averaged over
images.  Where the layer feeds a global average pool and a linear head directly,
that is the head's weight from the channel to the class (its weight path); before
it, the rest of the network's local slope.

The sum over positions is the derivative of the logits along one direction (the
channel raised by one everywhere), so the whole table costs whichever is fewer:
one forward-mode pass per channel (:func:`torch.autograd.forward_ad`, channels
batched) or one backward per class (batched with ``is_grads_batched``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from cnnvis_tasks.mechanisms.capture import capture_outputs, captured_tensor, get_module
from cnnvis_tasks.mechanisms.tokens import as_feature_map


def class_gradients(model: nn.Module, images: Tensor, layer: str, batch: int = 16) -> Tensor:
    """(classes, channels): each class logit's gradient at ``layer`` (normalised ``images``,
    model in eval mode), summed over positions and over the images."""
    with torch.no_grad():
        with capture_outputs(model, [layer]) as outputs:
            logits = model(images[:1])
        channels = as_feature_map(captured_tensor(outputs, layer), model, layer).shape[1]
    if channels < logits.shape[1]:
        try:
            return _by_channel(model, images, layer, channels, batch)
        except (RuntimeError, NotImplementedError):  # an operation without forward-mode derivatives (attention)
            pass
    return _by_class(model, images, layer, batch * 4)


def _by_class(model: nn.Module, images: Tensor, layer: str, class_batch: int) -> Tensor:
    with torch.enable_grad():
        with capture_outputs(model, [layer], as_leaf=True) as outputs:
            logits = model(images)
        output = captured_tensor(outputs, layer)
        count, classes = logits.shape
        found = []
        for start in range(0, classes, class_batch):
            picked = torch.arange(start, min(start + class_batch, classes), device=logits.device)
            wanted = torch.zeros((len(picked), count, classes), device=logits.device, dtype=logits.dtype)
            wanted[torch.arange(len(picked)), :, picked] = 1.0
            try:
                (gradients,) = torch.autograd.grad(
                    logits, output, grad_outputs=wanted, is_grads_batched=True, retain_graph=True
                )
            except RuntimeError:  # an operation vmap cannot batch: one class at a time
                gradients = torch.stack(
                    [torch.autograd.grad(logits, output, grad_outputs=w, retain_graph=True)[0] for w in wanted]
                )
            maps = as_feature_map(gradients.flatten(0, 1), model, layer)  # (classes x images, C, h, w)
            found.append(maps.sum(dim=(2, 3)).view(len(picked), count, -1).sum(dim=1))
    return torch.cat(found).detach()


def _by_channel(model: nn.Module, images: Tensor, layer: str, channels: int, batch: int) -> Tensor:
    """Forward mode: the images repeated once per channel of a group, each copy's layer output
    given the tangent "this channel, everywhere"."""
    import torch.autograd.forward_ad as forward_ad
    from torch.nn.attention import SDPBackend, sdpa_kernel

    count = images.shape[0]
    group = max(1, batch // count)
    module = get_module(model, layer)
    found = []
    for start in range(0, channels, group):
        picked = list(range(start, min(start + group, channels)))
        tangent: dict[str, Tensor] = {}

        def hook(_module, _inputs, output, picked=picked, tangent=tangent):
            if "value" not in tangent:
                tangent["value"] = _channel_tangent(output, model, layer, picked, count)
            return forward_ad.make_dual(output, tangent["value"])

        # attention's fused kernels have no forward-mode derivative; its plain form has
        with forward_ad.dual_level(), torch.no_grad(), sdpa_kernel([SDPBackend.MATH]):
            handle = module.register_forward_hook(hook)
            try:
                logits = model(images.repeat(len(picked), 1, 1, 1))
            finally:
                handle.remove()
            slope = forward_ad.unpack_dual(logits).tangent
        if slope is None:  # the logits do not depend on the layer
            slope = torch.zeros_like(logits)
        found.append(slope.view(len(picked), count, -1).sum(dim=1).T)  # (classes, picked)
    return torch.cat(found, dim=1).detach()


def _channel_tangent(output: Tensor, model: nn.Module, layer: str, picked: list[int], count: int) -> Tensor:
    """In the layer output's own layout (tokens, channels last, ...): for the copies of channel
    ``picked[j]``, one at every position of that channel, zero elsewhere.  The layout's map to
    (N, C, h, w) is linear, so its transpose applied to the indicator gives exactly that."""
    with torch.enable_grad():
        probe = torch.zeros_like(output).requires_grad_(True)
        feature = as_feature_map(probe, model, layer)
        indicator = torch.zeros_like(feature)
        for j, channel in enumerate(picked):
            indicator[j * count : (j + 1) * count, channel] = 1.0
        (tangent,) = torch.autograd.grad(feature, probe, grad_outputs=indicator)
    return tangent
