"""Host-device traffic of the techniques, checked without a GPU.

The ``meta`` device stands in for a GPU: its tensors have shapes but no values,
so any place where a technique reads a value of a device tensor (``.item()``,
``.tolist()``, ``bool(...)``, a copy to the host), which on a GPU would make the
host wait, fails here.  ``HostToDevice`` records copies of host data to the
device; from pageable memory such a copy waits for the GPU's queue to drain, so
none may happen once the forward pass is queued, nor once per optimisation step.
"""

import pytest
import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from cnnvis_tasks.mechanisms.ascent import class_visualization, deep_dream, deep_dream_adam, filter_visualization
from cnnvis_tasks.mechanisms.capture import feature_maps
from cnnvis_tasks.mechanisms.relu_rules import METHODS, saliency
from cnnvis_tasks.techniques.grad_cam import grad_cam

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


# Calls that copy data: where the data comes from.
_SOURCES = {
    Tensor.to: lambda args, kwargs: args[0],
    Tensor.cuda: lambda args, kwargs: args[0],
    Tensor.copy_: lambda args, kwargs: args[1] if len(args) > 1 else kwargs["src"],
    Tensor.new_tensor: lambda args, kwargs: args[1] if len(args) > 1 else kwargs["data"],
    torch.tensor: lambda args, kwargs: args[0] if args else kwargs["data"],
    torch.as_tensor: lambda args, kwargs: args[0] if args else kwargs["data"],
    torch.asarray: lambda args, kwargs: args[0] if args else kwargs["obj"],
}


class HostToDevice(TorchFunctionMode):
    """Records each call that copies host data (a CPU tensor of any size, or Python
    data) to another device, and whether the model's forward pass had started by
    then (``watch`` a model to know)."""

    def __init__(self):
        super().__init__()
        self.copies: list[tuple[str, bool]] = []
        self.forward_started = False

    def watch(self, model: nn.Module):
        return model.register_forward_pre_hook(lambda *_: setattr(self, "forward_started", True))

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func in _SOURCES and isinstance(out, Tensor) and out.device.type != "cpu":
            source = _SOURCES[func](args, kwargs)
            if not isinstance(source, Tensor) or source.device.type == "cpu":
                self.copies.append((getattr(func, "__name__", str(func)), self.forward_started))
        return out


def meta_net() -> nn.Module:
    """A ReLU / ReLU6 CNN with 7 classes, on the meta device."""
    return (
        nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(4, 5, 3, stride=2, padding=1),
            nn.ReLU6(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(5, 7),
        )
        .eval()
        .to("meta")
    )


# Targets already on the device are left out: they are read to the host once,
# before the forward pass, on purpose (an index out of range would otherwise be a
# device-side assert, which leaves the CUDA context unusable), and meta has no data.
TARGETS = {
    "top-1": lambda: None,
    "list": lambda: [1, 6],
    "host tensor": lambda: torch.tensor([1, 6]),
}


def _copies_after_forward_started(run) -> list[str]:
    net = meta_net()
    traffic = HostToDevice()
    handle = traffic.watch(net)
    try:
        with traffic:
            run(net, torch.empty(2, 3, 8, 8, device="meta"))
    finally:
        handle.remove()
    return [name for name, started in traffic.copies if started]


@pytest.mark.parametrize("targets", TARGETS)
def test_grad_cam_copies_nothing_once_the_forward_is_queued(targets):
    def run(net, x):
        result = grad_cam(net, x, "2", TARGETS[targets]())
        assert result.cams.shape == (2, 4, 4) and result.cams.device.type == "meta"
        assert result.targets.device.type == "meta"

    assert _copies_after_forward_started(run) == []


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("targets", TARGETS)
def test_saliency_copies_nothing_once_the_forward_is_queued(method, targets):
    def run(net, x):
        result = saliency(net, x, TARGETS[targets](), method)
        assert result.gradients.shape == (2, 3, 8, 8) and result.gradients.device.type == "meta"

    assert _copies_after_forward_started(run) == []


def test_feature_maps_run_on_the_device_without_copies():
    def run(net, x):
        maps = feature_maps(net, x, ["1", "3"])
        assert maps["3"].shape == (2, 5, 4, 4) and maps["3"].device.type == "meta"

    assert _copies_after_forward_started(run) == []


def test_the_traffic_check_catches_copies_after_the_forward():
    """The checks above can fail: copies of host data made after the forward are seen."""

    def run(net, x):
        logits = net(x)
        logits.gather(1, torch.tensor([[1], [6]]).to(logits.device))
        logits.new_tensor([0.5]) + torch.tensor(2.0).to(logits.device)
        torch.empty(2, device=logits.device).copy_(torch.ones(2))

    assert _copies_after_forward_started(run) == ["to", "new_tensor", "to", "copy_"]


ASCENTS = {
    "class viz plain": lambda net, steps: class_visualization(
        net,
        [1, 6],
        ["l1", "l2"],
        [0.1, 0.1],
        mean=MEAN,
        std=STD,
        height=16,
        width=20,
        steps=steps,
        lr=0.1,
        robust=False,
    ),
    "class viz robust": lambda net, steps: class_visualization(
        net, [1, 6], ["none"], [0.0], mean=MEAN, std=STD, height=16, width=20, steps=steps, lr=0.05, robust=True
    ),
    "filter viz robust": lambda net, steps: filter_visualization(
        net, "2", [0, 3], mean=MEAN, std=STD, height=16, width=20, steps=steps, lr=0.05, weight_decay=1e-6, robust=True
    ),
    "filter viz plain": lambda net, steps: filter_visualization(
        net, "2", [0, 3], mean=MEAN, std=STD, height=16, width=20, steps=steps, lr=0.1, weight_decay=1e-6, robust=False
    ),
    "deep dream octaves": lambda net, steps: deep_dream(
        net,
        torch.rand(2, 3, 24, 24),
        "2",
        1,
        mean=MEAN,
        std=STD,
        octaves=2,
        octave_scale=1.4,
        steps_per_octave=steps,
        lr=0.01,
    ),
    "deep dream adam": lambda net, steps: deep_dream_adam(
        net, torch.rand(2, 3, 24, 24), "2", None, mean=MEAN, std=STD, steps=steps, lr=0.1
    ),
}


@pytest.mark.parametrize("technique", ASCENTS)
def test_ascent_steps_copy_nothing_to_the_device(technique):
    """Copies in the set-up are fine; the number of copies must not grow with the steps."""
    counts = {}
    for steps in (2, 7):
        traffic = HostToDevice()
        with traffic:
            result = ASCENTS[technique](meta_net(), steps)
        assert result.images.device.type == "meta"
        counts[steps] = len(traffic.copies)
    assert counts[7] == counts[2], f"{counts[7] - counts[2]} more host-to-device copies for 5 more steps"
