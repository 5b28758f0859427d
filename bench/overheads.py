#!/usr/bin/env python
"""Where cnnvis spends time beyond the reference libraries, and what fixes would gain.

Companion to ``bench/techniques.py``.  It times, interleaved and in one process,
cnnvis against the same computation done the plain way, and against variants of
cnnvis with a suggested fix applied *in this script only* (monkeypatched, not
edited in the package); each variant's result is checked to be identical.

* saliency: plain ``torch.autograd.grad`` (what captum's Saliency does) vs ours
  ``vanilla`` and ``guided``, and ours with a backward that saves the
  activation's output and calls ``hardtanh_backward`` / ``threshold_backward``
  instead of computing a boolean mask in the forward and ``torch.where`` in the
  backward (and, for vanilla, with no rule at all);
* Grad-CAM: ours (the input requires grad, so the whole forward is recorded)
  vs the same with only the layer's output made a leaf that requires grad
  (what captum's LayerGradCam does);
* feature maps: first call (meta-device dry run to count calls) vs later calls.

Both wall time and this process's CPU time are reported: with ``--threads 1``
CPU time is much less disturbed by other programs on a shared machine.

    .venv/bin/python bench/overheads.py [--model efficientnet_lite0] [--batch 4] [--threads 1] [--profile]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import math
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import techniques as T  # noqa: E402  (also puts the repository on sys.path)

import torch  # noqa: E402

from cnnvis_tasks.models import load_model  # noqa: E402
from cnnvis_tasks.techniques import activations as A  # noqa: E402
from cnnvis_tasks.techniques import backprop as BP  # noqa: E402
from cnnvis_tasks.layers import get_module  # noqa: E402


class FastRuledActivation(torch.autograd.Function):
    """Suggested ``_RuledActivation``: no extra forward work, fused native backward.

    Saves the activation's *output* (which autograd keeps for ReLU anyway) instead
    of a boolean mask built with two comparisons; for the ReLU family with lower
    bound 0, ``0 < out < hi`` iff ``0 < x < hi``.  The backward uses the kernels
    PyTorch's own ReLU / hardtanh backward use, with torch-function handling off so
    a still-active rule mode does not catch them.
    """

    @staticmethod
    def forward(ctx, x, func, args, kwargs, lo, hi, inplace, method):
        ctx.method, ctx.hi = method, hi
        out = func(x, *args, **kwargs)
        if inplace:
            ctx.mark_dirty(x)
            out = x
        if method != "deconv":
            ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        with torch._C.DisableTorchFunction():
            if ctx.method != "vanilla":
                grad_out = grad_out.clamp_min(0)
            if ctx.method != "deconv":
                (out,) = ctx.saved_tensors
                if ctx.hi == math.inf:
                    grad_out = torch.ops.aten.threshold_backward(grad_out, out, 0)
                else:
                    grad_out = torch.ops.aten.hardtanh_backward(grad_out, out, 0.0, float(ctx.hi))
        return grad_out, None, None, None, None, None, None, None


@contextlib.contextmanager
def patched(module, name, value):
    old = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, old)


@contextlib.contextmanager
def no_rule(method):
    yield BP._ReluRuleMode(method)  # .count stays 0; nothing is intercepted


def saliency_variants(model):
    def plain(x, t):  # what captum's Saliency computes
        x = x.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            logits = model(x)
            (grad,) = torch.autograd.grad(logits.gather(1, t[:, None]).sum(), x)
        return grad

    def ours(method, fast=False, skip_rule=False):
        def run(x, t):
            with contextlib.ExitStack() as stack:
                if fast:
                    stack.enter_context(patched(BP, "_RuledActivation", FastRuledActivation))
                if skip_rule:
                    stack.enter_context(patched(BP, "relu_backward_rule", no_rule))
                return BP.saliency(model, x, t, method=method).gradients

        return run

    return {
        "plain autograd (= captum Saliency)": plain,
        "ours vanilla": ours("vanilla"),
        "ours vanilla, no rule mode [fix]": ours("vanilla", skip_rule=True),
        "ours vanilla, fused backward [fix]": ours("vanilla", fast=True),
        "ours guided": ours("guided"),
        "ours guided, fused backward [fix]": ours("guided", fast=True),
    }


def gradcam_variants(model, layer):
    from cnnvis_tasks.techniques.cam import grad_cam

    module = get_module(model, layer)

    def ours(x, t):
        return T.pgc_style_maps(grad_cam(model, x, layer, t).cams, tuple(x.shape[-2:]))

    def layer_leaf(x, t):
        store = {}

        def hook(_module, _inputs, output):
            # Downstream gets a clone (as in capture_outputs), so in-place ops are safe.
            if not output.requires_grad:
                output = output.detach().requires_grad_(True)
            store["a"] = output
            return output.clone()

        handle = module.register_forward_hook(hook)
        try:
            with torch.enable_grad():
                logits = model(x)
                (grads,) = torch.autograd.grad(logits.gather(1, t[:, None]).sum(), store["a"])
        finally:
            handle.remove()
        acts = store["a"].detach()
        cams = torch.relu((grads.mean(dim=(2, 3))[:, :, None, None] * acts).sum(dim=1))
        return T.pgc_style_maps(cams, tuple(x.shape[-2:]))

    return {"ours Grad-CAM": ours, "Grad-CAM, only the layer output a leaf [fix]": layer_leaf}


def featuremap_variants(model, layers):
    out = {}
    for which, layer in layers.items():
        def warm(x, t, layer=layer):
            return A.feature_maps(model, x, [layer])[layer]

        def cold(x, t, layer=layer):
            cache = getattr(A, "_CALL_COUNTS", None)
            if cache is not None:
                cache.pop(model, None)
            return A.feature_maps(model, x, [layer])[layer]

        out[f"feature_maps {which} {layer}: later calls"] = warm
        out[f"feature_maps {which} {layer}: first call (dry run)"] = cold
    return out


PLAIN = "plain autograd (= captum Saliency)"


def _saliency_baseline(name):
    # Every variant is timed against the plain gradient; fixes must equal the unfixed result.
    return PLAIN, ("ours guided" if "guided" in name and "fix" in name else PLAIN if "guided" not in name else name)


def _featuremap_baseline(name):
    warm = name.replace("first call (dry run)", "later calls")
    return warm, warm


BASELINES = {
    "saliency": _saliency_baseline,
    "Grad-CAM": lambda name: ("ours Grad-CAM", "ours Grad-CAM"),
    "feature maps": _featuremap_baseline,
}


def measure(fns, x, t, repeats, warmup):
    for _ in range(warmup):
        for fn in fns.values():
            fn(x, t)
    wall = {k: [] for k in fns}
    cpu = {k: [] for k in fns}
    names = list(fns)
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            gc.collect()
            w, c = time.perf_counter(), time.process_time()
            fns[name](x, t)
            cpu[name].append(time.process_time() - c)
            wall[name].append(time.perf_counter() - w)
    return {k: (statistics.median(wall[k]), statistics.median(cpu[k])) for k in fns}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="efficientnet_lite0", choices=list(T.MODELS))
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--profile", action="store_true", help="also print torch.profiler's top ops for ours vs plain saliency")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    cfg = T.MODELS[args.model]
    loaded = load_model(args.model, weights=cfg["weights"])
    model = loaded.module
    x, t = T.make_inputs(loaded, args.batch, torch.device("cpu"))
    print(
        f"{args.model}, batch {args.batch}, {args.threads} thread(s), median of {args.repeats}; "
        f"torch {torch.__version__}\n"
    )
    groups = {
        "saliency": saliency_variants(model),
        "Grad-CAM": gradcam_variants(model, cfg["cam_layer"]),
        "feature maps": featuremap_variants(model, {"early": cfg["early"], "late": cfg["late"]}),
    }
    print("| group | variant | wall ms/img | CPU ms/img | CPU vs baseline | same result as |")
    print("|---|---|---:|---:|---:|---|")
    for group, fns in groups.items():
        results = {name: fn(x, t) for name, fn in fns.items()}
        times = measure(fns, x, t, args.repeats, args.warmup)
        for name, (wall, cpu) in times.items():
            base, same = BASELINES[group](name)
            ratio = f"{cpu / times[base][1]:.2f}" if base != name else "1 (baseline)"
            agree = f"{same}: {T.verdict(T.agreement(results[name], results[same]))}" if same != name else "-"
            print(f"| {group} | {name} | {wall / args.batch * 1e3:.1f} | {cpu / args.batch * 1e3:.1f} | {ratio} | {agree} |")
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        fns = saliency_variants(model)
        for name in ("plain autograd (= captum Saliency)", "ours vanilla", "ours guided"):
            fns[name](x, t)
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(3):
                    fns[name](x, t)
            print(f"\n### torch.profiler, 3 calls: {name}\n")
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
    return 0


if __name__ == "__main__":
    sys.exit(main())
