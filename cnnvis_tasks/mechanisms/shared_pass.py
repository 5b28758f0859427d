"""One forward and one backward for several techniques over the same images.

Vanilla saliency needs the gradient of each image's target logit with respect
to the (normalised) input; every gradient-based CAM needs a layer's activation
and the gradient of the same logit with respect to it; feature maps need a
layer's activation.  :func:`shared_pass` runs the model once with every
requested layer captured (:func:`capture_outputs`: downstream modules get a
clone, so the recorded tensors stay intact) and takes every gradient of one
target set with one ``torch.autograd.grad`` call.  The numbers are those of
:func:`.relu_rules.saliency`, :func:`.cam.class_activation_map` and
:func:`.capture.feature_maps`: the same kernels on the same inputs (a clone's
backward passes its gradient unchanged), checked bit for bit in
``tests/test_shared_pass.py``.

Callers that explain different target classes (one job ``--target label``,
another the top-1 class) ask for one backward per target set; the forward is
still run once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from cnnvis_tasks.mechanisms.capture import capture_outputs, captured_tensor, feature_maps
from cnnvis_tasks.mechanisms.targets import request_targets, target_indices
from cnnvis_tasks.mechanisms.tokens import as_feature_map


@dataclass(frozen=True)
class BackwardRequest:
    """One backward: the target class per image (None or None entries: the top-1
    class) and the gradients wanted, of the input and of some captured layers."""

    targets: Sequence[int | None] | None
    input_gradient: bool = False
    layers: tuple[str, ...] = ()


@dataclass
class Pass:
    """What one forward and one backward give, per image: the logits (None when no
    backward was asked: the forward then stops after the last layer wanted), the
    captured activations (detached), the class each image explains and the
    gradients of its logit with respect to the input (normalised) and to layers."""

    logits: Tensor | None
    activations: dict[str, Tensor]
    targets: Tensor | None = None
    input_gradient: Tensor | None = None
    gradients: dict[str, Tensor | None] = field(default_factory=dict)

    def select(self, picked: Sequence[int]) -> Pass:
        """The same pass for the images at ``picked`` only."""

        def some(value: Tensor | None) -> Tensor | None:
            return None if value is None else value[list(picked)]

        return Pass(
            logits=some(self.logits),
            activations={path: some(value) for path, value in self.activations.items()},
            targets=some(self.targets),
            input_gradient=some(self.input_gradient),
            gradients={path: some(value) for path, value in self.gradients.items()},
        )


def shared_pass(
    model: nn.Module, images: Tensor, layers: Sequence[str], backwards: Sequence[BackwardRequest]
) -> list[Pass]:
    """One forward of ``images`` (in the model's input space) capturing ``layers`` (and
    every layer a backward asks for), then one backward per request: a :class:`Pass`
    per request, sharing logits and activations (one :class:`Pass` without gradients
    when none is asked).  The model must be in eval mode (images independent)."""
    wanted = list(dict.fromkeys([*layers, *(path for request in backwards for path in request.layers)]))
    if not backwards:
        return [Pass(logits=None, activations=feature_maps(model, images, wanted))]
    x = images.detach().clone().requires_grad_(True)
    requested = [request_targets(request.targets, x.shape[0], x.device) for request in backwards]
    with torch.enable_grad():
        with capture_outputs(model, wanted) as outputs:
            logits = model(x)
        captured = {path: captured_tensor(outputs, path) for path in wanted}
        # As (N, C, h, w) (a transformer's tokens on their grid); no feature map: an error before any backward.
        maps = {path: as_feature_map(output, model, path) for path, output in captured.items()}
        passes = []
        for number, (request, asked) in enumerate(zip(backwards, requested)):
            targets = target_indices(asked, logits, x.shape[0])
            # Images are independent in eval mode: one backward of the summed scores
            # gives each image the gradient of its own target logit.
            score = logits.gather(1, targets[:, None]).sum()
            sources = ([x] if request.input_gradient else []) + [captured[path] for path in request.layers]
            differentiable = [source for source in sources if source.requires_grad]
            found = torch.autograd.grad(
                score, differentiable, retain_graph=number < len(backwards) - 1, allow_unused=True
            )
            by_source = dict(zip(map(id, differentiable), found))
            gradients = [by_source.get(id(source)) for source in sources]
            input_gradient = gradients.pop(0) if request.input_gradient else None
            if request.input_gradient and input_gradient is None:
                raise RuntimeError("the logits do not depend on the input")  # as saliency's own backward says
            passes.append(
                Pass(
                    logits=None,
                    activations={},
                    targets=targets.detach(),
                    input_gradient=None if input_gradient is None else input_gradient.detach().float(),
                    gradients={
                        path: None if gradient is None else as_feature_map(gradient, model, path)
                        for path, gradient in zip(request.layers, gradients)
                    },
                )
            )
    activations = {path: value.detach() for path, value in maps.items()}
    for one in passes:
        one.logits, one.activations = logits.detach(), activations
    return passes
