"""Tests for cnnvis_tasks.mechanisms.relu_rules (vanilla / guided / deconv saliency)."""

import copy
import gc
import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from cnnvis_tasks.errors import CnnvisError
from cnnvis_tasks.mechanisms.relu_rules import METHODS, SaliencyResult, _RuledActivation, relu_backward_rule, saliency


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # On a small shared machine, intra-op threads contend badly; one thread is much faster here.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _mode_stack():
    return torch.overrides._get_current_function_mode_stack()


# --- 1. hand-derived gradients -------------------------------------------------------------

W1 = np.array([[1.0, -1.0, 0.0], [0.0, 1.0, 1.0], [-1.0, 0.0, 2.0], [1.0, 1.0, -1.0]])
W2 = np.array([[2.0, 3.0, -1.0, -2.0], [-1.0, 1.0, 1.0, 1.0]])
X = np.array([1.0, 2.0, -1.0])


def _tiny_net():
    net = nn.Sequential(nn.Flatten(), nn.Linear(3, 4, bias=False), nn.ReLU(), nn.Linear(4, 2, bias=False))
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor(W1))
        net[3].weight.copy_(torch.tensor(W2))
    return net.eval()


def test_tiny_net_matches_hand_derived_gradients():
    # h = W1 x = [-1, 1, -3, 4] -> ReLU passes units 1 and 3; grad_out at the ReLU is W2[0].
    h = W1 @ X
    assert h.tolist() == [-1.0, 1.0, -3.0, 4.0]
    mask = (h > 0).astype(float)
    g = W2[0]
    expected = {
        "vanilla": W1.T @ (g * mask),
        "guided": W1.T @ (np.maximum(g, 0) * mask),
        "deconv": W1.T @ np.maximum(g, 0),
    }
    # The same values worked out by hand.
    assert expected["vanilla"].tolist() == [-2.0, 1.0, 5.0]
    assert expected["guided"].tolist() == [0.0, 3.0, 3.0]
    assert expected["deconv"].tolist() == [2.0, 1.0, 3.0]

    net = _tiny_net()
    images = torch.tensor(X, dtype=torch.float32).view(1, 3, 1, 1)
    for method in METHODS:
        res = saliency(net, images, torch.tensor([0]), method=method)
        assert isinstance(res, SaliencyResult)
        assert res.gradients.shape == (1, 3, 1, 1) and res.gradients.dtype == torch.float32
        np.testing.assert_allclose(res.gradients.view(3).numpy(), expected[method], atol=1e-6, err_msg=method)
        np.testing.assert_allclose(res.logits.view(2).numpy(), W2 @ np.maximum(h, 0), atol=1e-5)
        assert res.targets.tolist() == [0]


# --- 2. vanilla is the ordinary gradient ----------------------------------------------------


def test_vanilla_equals_plain_autograd_on_resnet18():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    images = torch.randn(2, 3, 64, 64)
    targets = torch.tensor([3, 7])

    x = images.clone().requires_grad_(True)
    logits = model(x)
    (expected,) = torch.autograd.grad(logits.gather(1, targets[:, None]).sum(), x)

    res = saliency(model, images, targets, method="vanilla")
    assert expected.abs().max() > 0
    torch.testing.assert_close(res.gradients, expected, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(res.logits, logits.detach())


def test_vanilla_matches_finite_differences():
    torch.manual_seed(1)
    model = (
        nn.Sequential(
            nn.Conv2d(2, 3, 3),
            nn.ReLU(),
            nn.Conv2d(3, 4, 3, stride=2, padding=1),
            nn.ReLU6(),
            nn.Flatten(),
            nn.Linear(4 * 3 * 3, 3),
        )
        .double()
        .eval()
    )
    with torch.no_grad():
        model[2].weight.mul_(8.0)  # push some ReLU6 inputs above 6
    images = torch.randn(1, 2, 8, 8, dtype=torch.float64)
    res = saliency(model, images, torch.tensor([2]))
    grad = res.gradients.double()
    eps = 1e-6
    for c, i, j in [(0, 0, 0), (0, 3, 4), (1, 5, 2), (1, 7, 7), (0, 4, 6)]:
        plus, minus = images.clone(), images.clone()
        plus[0, c, i, j] += eps
        minus[0, c, i, j] -= eps
        with torch.no_grad():
            fd = (model(plus)[0, 2] - model(minus)[0, 2]).item() / (2 * eps)
        assert grad[0, c, i, j].item() == pytest.approx(fd, rel=1e-4, abs=1e-6 * grad.abs().max().item())
    assert grad.abs().max() > 0


# --- 3. every kind of ReLU call gets the rule ------------------------------------------------

SITES = ("shared1", "inplace", "shared2", "functional", "tensor_inplace", "relu6")


class _RefRule(torch.autograd.Function):
    """Independent reference: clamp to [0, hi] with the method's backward rule, written out."""

    @staticmethod
    def forward(ctx, x, hi, method):
        ctx.save_for_backward(x)
        ctx.hi, ctx.method = hi, method
        return x.clamp(0, hi)

    @staticmethod
    def backward(ctx, grad_out):
        (x,) = ctx.saved_tensors
        passes = torch.where((x > 0) & (x < ctx.hi), 1.0, 0.0)
        positive = torch.where(grad_out > 0, grad_out, torch.zeros_like(grad_out))
        grad_in = {"vanilla": grad_out * passes, "guided": positive * passes, "deconv": positive}[ctx.method]
        return grad_in, None, None


class _MixedNet(nn.Module):
    """Reused nn.ReLU, in-place nn.ReLU, F.relu, Tensor.relu_ (result ignored), nn.ReLU6."""

    def __init__(self):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(c, 4, 3, padding=1) for c in (2, 4, 4, 4, 4, 4))
        self.shared = nn.ReLU()
        self.inplace = nn.ReLU(inplace=True)
        self.relu6 = nn.ReLU6()
        self.fc = nn.Linear(4, 3)

    def forward(self, x, ref_method=None, record=None):
        def act(h, site, real):
            if ref_method is None:
                return real(h)
            if record is not None:
                record[site] = {"pre": h.detach().clone()}
            out = _RefRule.apply(h, 6.0 if site == "relu6" else math.inf, ref_method)
            if record is not None:
                out.register_hook(lambda g: record[site].__setitem__("grad_out", g.clone()))
            return out

        def tensor_relu_(h):
            h.relu_()  # in-place, return value ignored: in-place semantics must be kept
            return h

        # A sign-mixing conv between activations gives each one negative upstream gradients.
        h = act(self.convs[0](x), "shared1", self.shared)
        h = act(self.convs[1](h), "inplace", self.inplace)
        h = act(self.convs[2](h), "shared2", self.shared)
        h = act(self.convs[3](h), "functional", F.relu)
        h = act(self.convs[4](h) * 1.0, "tensor_inplace", tensor_relu_)  # * 1.0: not a leaf view
        h = act(self.convs[5](h) * 60.0 - 3.0, "relu6", self.relu6)
        return self.fc(h.mean((2, 3)))


def _reference_grad(net, images, targets, method, record=None):
    x = images.clone().requires_grad_(True)
    logits = net(x, ref_method=method, record=record)
    (g,) = torch.autograd.grad(logits.gather(1, targets[:, None]).sum(), x)
    return g, logits.detach()


def test_rule_applies_at_every_relu_kind():
    torch.manual_seed(3)
    net = _MixedNet().eval()
    images = torch.randn(2, 2, 6, 6)
    targets = torch.tensor([0, 2])

    with relu_backward_rule("guided") as rule:
        net(images)
    assert rule.count == len(SITES)

    results = {}
    for method in METHODS:
        record = {}
        expected, ref_logits = _reference_grad(net, images, targets, method, record)
        assert set(record) == set(SITES)
        for site, r in record.items():
            # Each activation blocks somewhere and sees a negative upstream gradient somewhere,
            # so the choice of rule matters at every one of them.
            assert (r["pre"] < 0).any() and (r["pre"] > 0).any(), site
            assert (r["grad_out"] < 0).any(), (method, site)
        assert (record["relu6"]["pre"] > 6).any()
        res = saliency(net, images, targets, method=method)
        torch.testing.assert_close(res.logits, ref_logits)
        torch.testing.assert_close(res.gradients, expected, rtol=1e-5, atol=1e-6 * expected.abs().max().item())
        results[method] = res.gradients
    assert not torch.allclose(results["guided"], results["vanilla"])
    assert not torch.allclose(results["deconv"], results["guided"])


# Every supported call form, as (form, hi): each takes a non-leaf tensor and returns the result.
CALL_FORMS = {
    "F.relu": (lambda t: F.relu(t), math.inf),
    "F.relu(input=)": (lambda t: F.relu(input=t), math.inf),
    "F.relu(inplace)": (lambda t: F.relu(t, inplace=True), math.inf),
    "F.relu_": (lambda t: F.relu_(t), math.inf),
    "torch.relu": (lambda t: torch.relu(t), math.inf),
    "torch.relu_": (lambda t: torch.relu_(t), math.inf),
    "Tensor.relu": (lambda t: t.relu(), math.inf),
    "Tensor.relu_": (lambda t: t.relu_(), math.inf),
    "Tensor.relu_ result ignored": (lambda t: (t.relu_(), t)[1], math.inf),
    "nn.ReLU": (lambda t: nn.ReLU()(t), math.inf),
    "nn.ReLU(inplace)": (lambda t: nn.ReLU(inplace=True)(t), math.inf),
    "F.relu6": (lambda t: F.relu6(t), 6.0),
    "F.relu6(inplace)": (lambda t: F.relu6(t, inplace=True), 6.0),
    "nn.ReLU6": (lambda t: nn.ReLU6()(t), 6.0),
    "nn.ReLU6(inplace)": (lambda t: nn.ReLU6(inplace=True)(t), 6.0),
    "F.hardtanh(0, 3)": (lambda t: F.hardtanh(t, min_val=0, max_val=3), 3.0),
    "F.hardtanh_": (lambda t: F.hardtanh_(t, 0.0, 6.0), 6.0),
    "torch.clamp(0, 6)": (lambda t: torch.clamp(t, 0, 6), 6.0),
    "torch.clamp(min=0)": (lambda t: torch.clamp(t, min=0), math.inf),
    "torch.clip": (lambda t: torch.clip(t, 0, 6), 6.0),
    "Tensor.clamp(min=0)": (lambda t: t.clamp(min=0), math.inf),
    "Tensor.clamp(0., None)": (lambda t: t.clamp(0.0, None), math.inf),
    "Tensor.clamp_(0, 6)": (lambda t: t.clamp_(0, 6), 6.0),
    "torch.clamp_min": (lambda t: torch.clamp_min(t, 0), math.inf),
    "Tensor.clamp_min": (lambda t: t.clamp_min(0), math.inf),
    "Tensor.clamp_min_": (lambda t: t.clamp_min_(0), math.inf),
}
NOT_RELU_FORMS = {
    "F.hardtanh(-1, 1)": lambda t: F.hardtanh(t),
    "clamp(-1, 1)": lambda t: t.clamp(-1, 1),
    "clamp(min=0.5)": lambda t: t.clamp(min=0.5),
    "clamp(tensor min)": lambda t: torch.clamp(t, min=torch.zeros(())),
    "leaky_relu": lambda t: F.leaky_relu(t),
    "silu": lambda t: F.silu(t),
}
# Inputs hit both boundaries exactly (0, 3, 6); upstream gradients of both signs where they pass.
_XS = torch.tensor([-2.0, -0.5, 0.0, 0.5, 1.0, 3.0, 4.0, 6.0, 7.0])
_GS = torch.tensor([1.0, -1.0, 2.0, -3.0, 4.0, -5.0, 6.0, -7.0, 8.0])


@pytest.mark.parametrize("form", CALL_FORMS)
def test_every_call_form_is_caught(form):
    fn, hi = CALL_FORMS[form]
    passes = ((_XS > 0) & (hi > _XS)).float()
    expected = {"vanilla": _GS * passes, "guided": _GS.clamp(min=0) * passes, "deconv": _GS.clamp(min=0)}
    for method in METHODS:
        x = _XS.clone().requires_grad_(True)
        with relu_backward_rule(method) as rule:
            out = fn(x * 1.0)
        assert rule.count == 1
        assert torch.equal(out, _XS.clamp(0, hi))
        (grad,) = torch.autograd.grad((out * _GS).sum(), x)
        assert torch.equal(grad, expected[method]), method


@pytest.mark.parametrize("form", NOT_RELU_FORMS)
def test_other_calls_pass_through(form):
    fn = NOT_RELU_FORMS[form]
    x = _XS.clone().requires_grad_(True)
    (native,) = torch.autograd.grad((fn(x * 1.0) * _GS).sum(), x)
    with relu_backward_rule("guided") as rule:
        out = fn(x * 1.0)
    assert rule.count == 0
    (grad,) = torch.autograd.grad((out * _GS).sum(), x)
    assert torch.equal(grad, native)


# --- 4. the mode catches every activation in real architectures --------------------------


def _count_module_calls(model):
    calls = [0]

    def hook(module, inputs, output):
        calls[0] += 1

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.ReLU, nn.ReLU6))]
    return calls, handles


def _efficientnet_lite0():
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet.from_name("efficientnet-lite0")


@pytest.mark.parametrize(
    "build, size, functional_calls",
    [
        (lambda: torchvision.models.resnet18(weights=None, num_classes=10), 64, 0),
        (lambda: torchvision.models.densenet121(weights=None, num_classes=10), 32, 1),  # F.relu in forward
        (lambda: torchvision.models.vgg11(weights=None, num_classes=10), 32, 0),
        (_efficientnet_lite0, 64, 0),
    ],
    ids=["resnet18", "densenet121", "vgg11", "efficientnet_lite0"],
)
def test_count_and_guided_differs_on_real_models(build, size, functional_calls):
    torch.manual_seed(0)
    model = build().eval()
    images = torch.randn(1, 3, size, size)
    calls, handles = _count_module_calls(model)
    try:
        x = images.clone().requires_grad_(True)
        with relu_backward_rule("guided") as rule:
            logits = model(x)
    finally:
        for h in handles:
            h.remove()
    assert calls[0] > 0
    assert rule.count == calls[0] + functional_calls
    (guided,) = torch.autograd.grad(logits[:, 0].sum(), x)
    vanilla = saliency(model, images, torch.tensor([0]), method="vanilla").gradients
    assert guided.abs().max() > 0 and vanilla.abs().max() > 0
    assert not torch.allclose(guided, vanilla, rtol=1e-3, atol=1e-3 * vanilla.abs().max().item())


# --- 5. the model and the process are left as they were ------------------------------------


def _no_hooks(model):
    return all(
        not m._forward_hooks
        and not m._forward_pre_hooks
        and not m._backward_hooks
        and not getattr(m, "_backward_pre_hooks", {})
        for m in model.modules()
    )


def test_model_left_unchanged():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    before = copy.deepcopy(model.state_dict())
    images = torch.randn(2, 3, 32, 32)
    images_before = images.clone()
    with torch.no_grad():
        out_before = model(images)
    classes_before = {name: type(m) for name, m in model.named_modules()}

    for method in METHODS:
        res = saliency(model, images, method=method)
    assert res.gradients.device == images.device
    assert torch.equal(images, images_before)
    assert not _mode_stack()
    assert _no_hooks(model)
    assert {name: type(m) for name, m in model.named_modules()} == classes_before
    assert all(p.grad is None for p in model.parameters())
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    with torch.no_grad():
        assert torch.equal(model(images), out_before)
    assert not model.training


class _Boom(nn.Module):
    def forward(self, x):
        F.relu(x)
        raise RuntimeError("boom")


def test_no_mode_left_when_forward_raises():
    with pytest.raises(RuntimeError, match="boom"):
        saliency(_Boom(), torch.randn(1, 3, 4, 4), method="guided")
    assert not _mode_stack()
    with pytest.raises(RuntimeError, match="boom"):
        with relu_backward_rule("deconv"):
            _Boom()(torch.randn(1, 3, 4, 4))
    assert not _mode_stack()
    # ReLU behaves normally again: vanilla autograd, no interception.
    x = torch.tensor([-1.0, 2.0], requires_grad=True)
    assert type(F.relu(x).grad_fn).__name__ != "_RuledActivationBackward"


# --- 6. batch == single ---------------------------------------------------------------------


def test_batched_equals_single_images():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=5).eval()
    images = torch.randn(3, 3, 32, 32)
    targets = torch.tensor([0, 4, 2])
    batched = saliency(model, images, targets, method="guided")
    assert batched.targets.tolist() == [0, 4, 2]
    for i in range(3):
        single = saliency(model, images[i : i + 1], targets[i : i + 1], method="guided")
        scale = single.gradients.abs().max().item()
        assert scale > 0
        torch.testing.assert_close(batched.gradients[i : i + 1], single.gradients, rtol=1e-4, atol=1e-5 * scale)
        torch.testing.assert_close(batched.logits[i : i + 1], single.logits, rtol=1e-4, atol=1e-5)


# --- 7. targets and validation --------------------------------------------------------------


def test_default_target_is_top1_and_validation():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.ReLU(), nn.Linear(6, 4)).eval()
    images = torch.randn(5, 3, 2, 2)
    res = saliency(net, images)
    assert res.targets.dtype == torch.long
    assert res.targets.tolist() == net(images).argmax(1).tolist()
    assert torch.equal(res.gradients, saliency(net, images, res.targets).gradients)

    with pytest.raises(CnnvisError, match=r"\b4\b.*0\.\.3"):
        saliency(net, images, torch.tensor([0, 1, 4, 2, 3]))
    with pytest.raises(CnnvisError, match="-2"):
        saliency(net, images, torch.tensor([0, 1, 2, -2, 3]))
    # None (in a list) or -1 (in a tensor) is the image's own top-1 class, resolved from
    # the same forward pass: one call mixes requested and predicted classes
    top1 = res.targets.tolist()
    mixed = saliency(net, images, [0, None, 2, None, 3])
    assert mixed.targets.tolist() == [0, top1[1], 2, top1[3], 3]
    assert torch.equal(mixed.gradients, saliency(net, images, torch.tensor([0, top1[1], 2, top1[3], 3])).gradients)
    assert saliency(net, images, torch.tensor([-1, 1, 2, 3, -1])).targets.tolist() == [top1[0], 1, 2, 3, top1[4]]
    with pytest.raises(CnnvisError):
        saliency(net, images, torch.tensor([0, 1]))  # wrong length
    with pytest.raises(CnnvisError, match=r"shape \(5, 4, 1\), not class scores"):
        saliency(nn.Sequential(net, nn.Unflatten(1, (4, 1))), images)
    with pytest.raises(ValueError, match="unknown method"):
        saliency(net, images, method="smoothgrad")
    with pytest.raises(ValueError):
        with relu_backward_rule("guided_backprop"):
            pass


def test_warns_when_model_has_no_relu():
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.SiLU(), nn.Linear(6, 4)).eval()
    images = torch.randn(2, 3, 2, 2)
    with pytest.warns(UserWarning, match="equals vanilla"):
        guided = saliency(net, images, method="guided")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        vanilla = saliency(net, images, method="vanilla")
    torch.testing.assert_close(guided.gradients, vanilla.gradients)


# --- 8. memory stays flat ------------------------------------------------------------------


def _live_counts(*kinds):
    """Live gc-tracked objects of each type (issubclass on the type avoids lazy-module getattrs)."""
    types = [type(o) for o in gc.get_objects()]
    return [sum(1 for t in types if issubclass(t, kind)) for kind in kinds]


def test_memory_flat_over_many_calls():
    torch.manual_seed(0)
    net = _MixedNet().eval()
    images = torch.randn(2, 2, 16, 16)
    node_type = _RuledActivation._backward_cls
    for _ in range(2):  # warm-up
        saliency(net, images, method="guided")
    gc.collect()
    tensors_before, nodes_before = _live_counts(torch.Tensor, node_type)
    kept = [saliency(net, images, method=METHODS[i % 3]) for i in range(30)]
    for res in kept:  # results hold no graph
        assert res.gradients.grad_fn is None and res.logits.grad_fn is None
    del kept, res
    gc.collect()
    tensors_after, nodes_after = _live_counts(torch.Tensor, node_type)
    assert nodes_after == nodes_before == 0
    assert tensors_after <= tensors_before
