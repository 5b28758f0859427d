#!/usr/bin/env python
"""Speed, memory and agreement of cnnvis techniques against captum and pytorch-grad-cam.

For each model (EfficientNet-Lite0 with its embedded ImageNet weights; VGG16
with random weights) and each technique, cnnvis and a reference library do the
same computation on the same 224x224 inputs and target classes:

* saliency vanilla: ``saliency(..., "vanilla")`` vs captum ``Saliency(abs=False)``
* saliency guided:  ``saliency(..., "guided")``  vs captum ``GuidedBackprop``
* Grad-CAM: ``grad_cam`` + ``upsample_cam`` + pytorch-grad-cam's normalisation vs
  pytorch-grad-cam ``GradCAM`` (which returns input-size, min-max maps) and
  captum ``LayerGradCam`` (+ the same upsampling and normalisation)
* feature maps (an early and a late layer): ``feature_maps`` vs a plain forward
  hook under ``inference_mode`` and captum ``LayerActivation``

Each (model, technique) runs in a fresh subprocess that loads the model once
and, per batch size: compares the sides' results (first warm-up call), measures
each side's peak memory in one call (resident set size on CPU, by resetting the
kernel's high-water mark before it; allocated memory on CUDA), then times the
sides interleaved (A B, B A, ...) and takes the median of the repeats.  The
parent collects the results and replaces the section
``## Techniques: cnnvis vs captum and pytorch-grad-cam`` of ``bench/RESULTS.md``
(`` (cuda)`` appended for another device).

    .venv/bin/python bench/techniques.py            # full: batch 1 and 16
    .venv/bin/python bench/techniques.py --quick    # sanity check: batch 1 and 4
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_file import display_command, status_mib, write_section  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SECTION = "## Techniques: cnnvis vs captum and pytorch-grad-cam"
DEFAULT_OUT = REPO / "bench" / "RESULTS.md"
IMAGE_SIZE = 224

# Per model: weights, the Grad-CAM layer and the feature-map layers.  Every
# layer here is called exactly once per forward, so all libraries see the same
# tensor (see EXTRA_CAM_LAYERS for layers where they do not).
MODELS = {
    "efficientnet_lite0": {
        "weights": "default",
        "cam_layer": "_bn1",  # head BN, 7x7x1280 (our default `_swish` is called twice)
        "early": "_blocks.0",  # first MBConv block, 112x112
        "late": "_bn1",
    },
    "vgg16": {
        "weights": "random",
        "cam_layer": "features.29",  # our default_cam_layer: last ReLU, 14x14x512
        "early": "features.2",  # conv1_2, 224x224x64, followed by an in-place ReLU
        "late": "features.29",
    },
}
# Layers checked for Grad-CAM agreement only (not timed): where libraries differ.
# With what explains a disagreement of pytorch-grad-cam there.
EXTRA_CAM_LAYERS = {
    "efficientnet_lite0": {
        "_swish": "`_swish` (cnnvis's default layer) is one ReLU6 module called twice, for the stem "
        "(112x112) and the head (7x7); pytorch-grad-cam records both calls and uses the first, the stem, "
        "while cnnvis and captum use the last call",
    },
    "vgg16": {
        "features.28": "`features.28` is a conv followed by `ReLU(inplace=True)`; pytorch-grad-cam keeps "
        "`output.cpu().detach()`, which on CPU shares memory with the output, so the ReLU overwrites its "
        "activations (gradients are right); cnnvis and captum keep the conv's own output",
    },
}
TECHNIQUES = ("saliency-vanilla", "saliency-guided", "grad-cam", "feature-maps-early", "feature-maps-late")
# The reference libraries (import name: pip name) and the ones each technique needs.
LIBRARIES = {"captum": "captum", "pytorch_grad_cam": "grad-cam"}
NEEDS = {
    "saliency-vanilla": ("captum",),
    "saliency-guided": ("captum",),
    "grad-cam": ("captum", "pytorch_grad_cam"),
    "feature-maps-early": ("captum",),
    "feature-maps-late": ("captum",),
}

# Agreement verdicts, on max |ours - ref| / max |ref| over the batch.
EXACT = 1e-4
CLOSE = 1e-2


# --------------------------------------------------------------------------- jobs


def library_problem(module: str) -> str | None:
    """Why the reference library ``module`` cannot be used here, or None."""
    import importlib

    try:
        importlib.import_module(module)
    except ImportError as error:
        return f"{LIBRARIES[module]} not installed" if error.name == module else f"{LIBRARIES[module]}: {error}"
    return None


def missing_libraries(technique: str) -> list[str]:
    """What keeps ``technique``'s reference libraries from being used (empty: nothing)."""
    return [problem for problem in map(library_problem, NEEDS[technique]) if problem]


def _minmax(maps):
    """Per-image (m - min) / (max - min + 1e-7): pytorch-grad-cam's scale_cam_image."""
    flat = maps.flatten(1)
    flat = flat - flat.min(dim=1, keepdim=True).values
    flat = flat / (flat.max(dim=1, keepdim=True).values + 1e-7)
    return flat.view_as(maps)


def pgc_style_maps(cams, size):
    """(N, h, w) CAMs to what pytorch-grad-cam returns: min-max, upsample, min-max again.

    Normalising before upsampling matters where maps are tiny (random weights):
    the 1e-7 in the denominator is then not negligible.
    """
    from cnnvis_tasks.mechanisms.cam import upsample_cam

    return _minmax(upsample_cam(_minmax(cams), size))


def make_jobs(technique: str, loaded, cfg: dict, layer_override: str | None = None):
    """(label, layer, ours, {reference name: fn}); each fn(x, targets) returns the result."""
    import torch

    from cnnvis_tasks.models.layers import get_module

    model = loaded.module
    if technique in ("saliency-vanilla", "saliency-guided"):
        from captum.attr import GuidedBackprop, Saliency

        from cnnvis_tasks.mechanisms.relu_rules import saliency

        method = technique.split("-")[1]

        def ours(x, t):
            return saliency(model, x, t, method=method).gradients

        if method == "vanilla":

            def ref(x, t):
                return Saliency(model).attribute(x, target=t, abs=False)

            return f"saliency {method}", None, ours, {"captum Saliency": ref}

        def ref(x, t):
            return GuidedBackprop(model).attribute(x, target=t)

        return f"saliency {method}", None, ours, {"captum GuidedBackprop": ref}

    if technique == "grad-cam":
        from captum.attr import LayerAttribution, LayerGradCam
        from pytorch_grad_cam import GradCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        from cnnvis_tasks.techniques.grad_cam import grad_cam

        layer = layer_override or cfg["cam_layer"]
        module = get_module(model, layer)

        def ours(x, t):
            return pgc_style_maps(grad_cam(model, x, layer, t).cams, tuple(x.shape[-2:]))

        def pgc(x, t):
            # Parameters are frozen (requires_grad False): without an input that
            # requires grad there is no graph, and pytorch-grad-cam's loss.backward()
            # then runs back to that input.  Built per call: its hooks stay until release.
            x = x.detach().requires_grad_(True)
            with GradCAM(model=model, target_layers=[module]) as cam:
                return cam(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in t])

        def captum_gc(x, t):
            # LayerAttribution.interpolate is F.interpolate(bilinear), as upsample_cam.
            attr = LayerGradCam(model, module).attribute(x, target=t, relu_attributions=True)[:, 0]
            return _minmax(LayerAttribution.interpolate(_minmax(attr)[:, None], tuple(x.shape[-2:]), "bilinear")[:, 0])

        return "Grad-CAM", layer, ours, {"pytorch-grad-cam GradCAM": pgc, "captum LayerGradCam": captum_gc}

    if technique in ("feature-maps-early", "feature-maps-late"):
        from captum.attr import LayerActivation

        from cnnvis_tasks.mechanisms.capture import feature_maps

        which = technique.rsplit("-", 1)[1]
        layer = layer_override or cfg[which]
        module = get_module(model, layer)

        def ours(x, t):
            return feature_maps(model, x, [layer])[layer]

        def hook(x, t):
            # What a user writes: keep the output, run the whole model.
            captured = {}
            handle = module.register_forward_hook(lambda _m, _i, out: captured.__setitem__("out", out.detach()))
            try:
                with torch.inference_mode():
                    model(x)
            finally:
                handle.remove()
            return captured["out"]

        def captum_la(x, t):
            return LayerActivation(model, module).attribute(x)

        return f"feature maps ({which})", layer, ours, {"forward hook": hook, "captum LayerActivation": captum_la}

    raise ValueError(f"unknown technique {technique!r}")


# ------------------------------------------------------------------ measurement


def _sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak_rss() -> bool:
    """Return freed heap to the OS and reset VmHWM to the current RSS (Linux >= 4.0)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
        return True
    except OSError:
        return False


def _peak_memory(fn, x, t, device) -> tuple[dict, object]:
    """Memory one call of ``fn`` needs beyond what the process held before it (MiB), and its result."""
    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        out = fn(x, t)
        _sync(device)
        peak = torch.cuda.max_memory_allocated(device)
        return {"kind": "cuda allocated", "delta": (peak - base) / 2**20}, out
    if not _reset_peak_rss():
        return {"kind": "unavailable", "delta": None}, fn(x, t)
    base = status_mib("VmRSS")
    out = fn(x, t)
    peak = status_mib("VmHWM")
    return {"kind": "RSS", "delta": None if base is None or peak is None else peak - base}, out


def _to_tensor(value):
    import numpy as np
    import torch

    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    return value.detach().float().cpu()


def agreement(ours, ref) -> dict:
    """max |ours - ref| / max |ref| and Pearson correlation, over the whole batch."""
    import torch

    a, b = _to_tensor(ours).flatten(), _to_tensor(ref).flatten()
    if a.shape != b.shape:
        return {"rel": None, "corr": None, "shapes": [list(_to_tensor(ours).shape), list(_to_tensor(ref).shape)]}
    scale = b.abs().max().item()
    diff = (a - b).abs().max().item()
    rel = diff / scale if scale > 0 else diff
    corr = torch.corrcoef(torch.stack([a.double(), b.double()]))[0, 1].item()
    return {"rel": rel, "corr": None if corr != corr else corr, "max_abs": diff}


def verdict(agree: dict) -> str:
    if agree.get("rel") is None:
        if "shapes" in agree:
            return f"NO: shapes {agree['shapes'][0]} vs {agree['shapes'][1]}"
        return "n/a"
    rel, corr = agree["rel"], agree["corr"]
    corr_text = f", corr {corr:.4f}" if corr is not None else ""
    if rel <= EXACT:
        return f"yes ({rel:.0e})"
    if rel <= CLOSE or (corr is not None and corr >= 0.999):
        return f"close ({rel:.0e}{corr_text})"
    return f"NO ({rel:.2g}{corr_text})"


def make_inputs(loaded, batch: int, device):
    """``batch`` images (the repo's sample images, cycled) normalised for the model, and targets."""
    import torch

    from cnnvis_tasks.io.images import load_image

    paths = sorted(p for p in (REPO / "images").glob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    generator = torch.Generator().manual_seed(0)
    if paths:
        pictures = []
        for path in paths:
            image = load_image(path, IMAGE_SIZE)
            h, w = image.shape[-2:]
            top, left = (h - IMAGE_SIZE) // 2, (w - IMAGE_SIZE) // 2
            pictures.append(image[:, top : top + IMAGE_SIZE, left : left + IMAGE_SIZE])
        images = torch.stack([pictures[i % len(pictures)] for i in range(batch)])
    else:
        images = torch.rand(batch, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator)
    targets = torch.randint(0, loaded.num_classes or 1000, (batch,), generator=generator)
    return loaded.normalize(images.to(device)), targets.to(device)


def run_child(args) -> dict:
    """One (model, technique): memory per side and batch, then interleaved timings."""
    import warnings

    import torch

    from cnnvis_tasks.models.loading import load_model

    warnings.filterwarnings("ignore")  # captum / pytorch-grad-cam chatter; results are checked instead
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        from cnnvis_tasks.run import devices

        # As the command line does (no TF32), for every library alike.
        getattr(devices, "use_full_precision", lambda _device: None)(device)
    cfg = MODELS[args.model]
    loaded = load_model(args.model, weights=cfg["weights"], device=device)
    label, layer, ours, refs = make_jobs(args.technique, loaded, cfg)
    sides = {"ours": ours, **refs}
    inputs = {b: make_inputs(loaded, b, device) for b in args.batches}
    result = {"model": args.model, "technique": args.technique, "label": label, "layer": layer, "batches": {}}

    for batch in args.batches:
        entry = result["batches"].setdefault(str(batch), {})
        x, t = inputs[batch]
        # Warm-up: the first call per side also gives the results to compare.
        outputs = {name: fn(x, t) for name, fn in sides.items()}
        _sync(device)
        entry["agreement"] = {name: agreement(outputs["ours"], outputs[name]) for name in refs}
        if args.technique == "saliency-guided":
            # Where captum's guided result differs from ours, is it the plain gradient?
            from cnnvis_tasks.mechanisms.relu_rules import saliency

            vanilla = saliency(loaded.module, x, t, method="vanilla").gradients
            entry["ref_vs_our_vanilla"] = {name: agreement(vanilla, outputs[name]) for name in refs}
        del outputs
        names = list(sides)
        for _ in range(max(args.warmup - 1, 0)):
            for name in names:
                sides[name](x, t)
        # Peak memory of one more call per side, now that every side is warm at this shape.
        if args.memory and (args.memory_batches is None or batch in args.memory_batches):
            memory = {}
            for name, fn in sides.items():
                memory[name], out = _peak_memory(fn, x, t, device)
                del out
            entry["memory"] = memory
        _sync(device)
        times = {name: [] for name in names}
        for repeat in range(args.repeats):
            for name in names if repeat % 2 == 0 else names[::-1]:
                gc.collect()
                start = time.perf_counter()
                out = sides[name](x, t)
                _sync(device)
                times[name].append(time.perf_counter() - start)
                del out
        entry["times"] = times
        print(
            f"  {args.model} {label} batch {batch}: "
            + ", ".join(f"{n} {statistics.median(v) / batch * 1e3:.1f} ms/img" for n, v in times.items()),
            file=sys.stderr,
            flush=True,
        )

    if args.technique == "grad-cam":
        # Agreement only, at layers where the libraries see different tensors.
        x, t = inputs[min(args.batches)]
        extra = {}
        for extra_layer in EXTRA_CAM_LAYERS.get(args.model, []):
            _, _, ours_x, refs_x = make_jobs("grad-cam", loaded, cfg, layer_override=extra_layer)
            mine = ours_x(x, t)
            extra[extra_layer] = {name: agreement(mine, fn(x, t)) for name, fn in refs_x.items()}
        result["extra_cam_layers"] = extra

    result["ru_maxrss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device.type == "cuda":
        result["cuda_max_allocated_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return result


# ----------------------------------------------------------------------- report


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


def machine_info(args) -> dict:
    import torch

    info = {
        "cpu": _cpu_model(),
        "cores": f"{len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()} usable"
        f" of {os.cpu_count()}",
        "threads": args.threads,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "captum": _version("captum"),
        "grad-cam": _version("grad-cam"),
        "device": args.device,
    }
    if args.device.startswith("cuda") and torch.cuda.is_available():
        info["device"] = f"{args.device} ({torch.cuda.get_device_name(torch.device(args.device))})"
    return info


def _ms(seconds: list[float], batch: int) -> float:
    return statistics.median(seconds) / batch * 1e3


def _fastest_ratio(ours: list[float], ref: list[float]) -> float:
    """reference / ours over each side's fastest call: the least disturbed one where
    other work shares the machine (noise only ever adds time)."""
    return min(ref) / min(ours)


def _fmt_mib(value) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def _fmt_ms(value: float) -> str:
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def section_title(device: str) -> str:
    """CPU results under the plain title; another device's get their own section."""
    return SECTION if device == "cpu" else f"{SECTION} ({device})"


def render(results: list[dict], args, info: dict, command: str, started: str, loads: tuple) -> str:
    lines = [section_title(args.device), ""]
    lines.append(f"Date: {started}. Command: `{command}`")
    lines.append("")
    lines.append(
        f"Machine: {info['cpu']}, {info['cores']} cores, torch.set_num_threads({info['threads']}); "
        f"device {info['device']}; Python {info['python']}, torch {info['torch']}, "
        f"captum {info['captum']}, grad-cam {info['grad-cam']}. "
        f"Load average (1 min) at start {loads[0]:.1f}, at end {loads[1]:.1f}."
    )
    lines.append("")
    lines.append(
        f"Inputs {IMAGE_SIZE}x{IMAGE_SIZE}, the same images and target classes for every library. "
        f"Time: median of {args.repeats} interleaved repeats after {args.warmup} warm-up call(s) "
        "(and one call measuring memory), per image. "
        "ratio = reference / ours (> 1: cnnvis is faster); fastest: the same ratio over each side's fastest call, "
        "which other work on the machine disturbs least. "
        "Memory: extra peak "
        + ("GPU memory allocated" if args.device.startswith("cuda") else "resident memory (RSS)")
        + " of one call over what the process held before it (model, inputs), MiB, ours / reference."
    )
    lines.append("")
    lines.append(
        "| model | technique | layer | batch | ours ms/img | reference | ref ms/img | ratio | fastest | agrees "
        "| peak MiB ours / ref |"
    )
    lines.append("|---|---|---|---:|---:|---|---:|---:|---:|---|---|")
    notes: list[str] = []
    for res in results:
        if "error" in res:
            lines.append(f"| {res['model']} | {res['technique']} | | | | | | | | ERROR: {res['error']} | |")
            continue
        if "skipped" in res:
            lines.append(f"| {res['model']} | {res['technique']} | | | | | | | | skipped: {res['skipped']} | |")
            continue
        for batch, entry in res["batches"].items():
            b = int(batch)
            ours_ms = _ms(entry["times"]["ours"], b)
            for ref, agree in entry["agreement"].items():
                ref_ms = _ms(entry["times"][ref], b)
                memory = entry.get("memory", {})
                mem = f"{_fmt_mib(memory['ours']['delta'])} / {_fmt_mib(memory[ref]['delta'])}" if memory else "-"
                lines.append(
                    f"| {res['model']} | {res['label']} | {res['layer'] or '-'} | {b} | {_fmt_ms(ours_ms)} | {ref} | "
                    f"{_fmt_ms(ref_ms)} | {ref_ms / ours_ms:.2f} | "
                    f"{_fastest_ratio(entry['times']['ours'], entry['times'][ref]):.2f} | {verdict(agree)} | {mem} |"
                )
            for ref, agree in entry.get("ref_vs_our_vanilla", {}).items():
                if verdict(entry["agreement"][ref]).startswith(("yes", "close")):
                    continue
                note = (
                    f"{res['model']}, batch {b}: {ref} differs from cnnvis guided saliency but equals cnnvis "
                    f"*vanilla* gradients ({verdict(agree)})"
                )
                if res["model"] == "efficientnet_lite0":
                    note += (
                        ": captum's guided backprop hooks only `nn.ReLU` modules, and EfficientNet-Lite uses "
                        "`nn.ReLU6`, so it silently returns ordinary gradients (timed anyway)"
                    )
                notes.append(note + ".")
        for layer, refs in res.get("extra_cam_layers", {}).items():
            found = "; ".join(f"ours vs {ref}: {verdict(agree)}" for ref, agree in refs.items())
            why = EXTRA_CAM_LAYERS.get(res["model"], {}).get(layer, "")
            if why and any(verdict(a).startswith("NO") for a in refs.values()):
                found += f". Why: {why}"
            notes.append(f"{res['model']} Grad-CAM at `{layer}`, batch {min(args.batches)}, agreement only: {found}.")
    lines.append("")
    lines.append(
        "Peak resident memory of each (model, technique) subprocess (all its jobs, both libraries, model included):"
    )
    lines.append("")
    lines.append(
        "| model | technique | peak RSS MiB |"
        + (" peak CUDA allocated MiB |" if args.device.startswith("cuda") else "")
    )
    lines.append("|---|---|---:|" + ("---:|" if args.device.startswith("cuda") else ""))
    for res in results:
        if "error" in res or "skipped" in res:
            continue
        cuda = f" {res['cuda_max_allocated_mib']:.0f} |" if "cuda_max_allocated_mib" in res else ""
        lines.append(f"| {res['model']} | {res['label']} | {res['ru_maxrss_mib']:.0f} |{cuda}")
    lines.append("")
    lines.append("Notes:")
    lines.append("")
    lines.append(
        "- agrees: max |ours - reference| / max |reference| over the batch (`yes` <= 1e-4, `close` <= 1e-2 or "
        "correlation >= 0.999, else `NO`). Grad-CAM compares input-size maps normalised as pytorch-grad-cam does "
        "(per-image min-max at the layer's resolution, bilinear upsampling, min-max again)."
    )
    lines.append(
        "- pytorch-grad-cam gets an input with `requires_grad=True` (the models' parameters are frozen, "
        "so without it there is no graph); its `loss.backward()` then runs back to the input, where cnnvis "
        "stops at the layer. It also moves maps to NumPy and upsamples with OpenCV per image."
    )
    lines.append(
        "- feature maps: the forward hook keeps `output.detach()` and runs the whole model under `inference_mode`; "
        "cnnvis stops the forward after the layer (once a first forward of that shape has counted the calls). On VGG16 "
        "`features.2` the next `ReLU(inplace=True)` overwrites a plain hook's tensor, so it holds the ReLU's output."
    )
    for note in notes:
        lines.append(f"- {note}")
    lines.append("")
    return "\n".join(lines)


def parse_args(argv=None):
    from cnnvis_tasks.run.devices import default_threads

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="sanity check: batch 1 and 4, few repeats")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="markdown file to update (default bench/RESULTS.md)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: all usable cores)")
    parser.add_argument("--batches", type=lambda s: [int(v) for v in s.split(",")], default=None, help="e.g. 1,16")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per side (median); default 7, quick 3")
    parser.add_argument("--warmup", type=int, default=None, help="untimed calls per side first; default 2, quick 1")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of " + ", ".join(MODELS))
    parser.add_argument(
        "--techniques", default=",".join(TECHNIQUES), help="comma-separated subset of " + ", ".join(TECHNIQUES)
    )
    parser.add_argument("--no-memory", dest="memory", action="store_false", help="skip the peak-memory calls")
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "TECHNIQUE"), help=argparse.SUPPRESS)
    parser.add_argument(
        "--memory-batches", type=lambda s: [int(v) for v in s.split(",")], default=None, help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    args.threads = args.threads or default_threads()
    if args.batches is None:
        args.batches = [1, 4] if args.quick else [1, 16]
    if args.repeats is None:
        args.repeats = 3 if args.quick else 7
    if args.warmup is None:
        args.warmup = 1 if args.quick else 2
    if args.quick and args.memory_batches is None:
        args.memory_batches = [max(args.batches)]
    for name in args.models.split(","):
        if name not in MODELS:
            parser.error(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    for name in args.techniques.split(","):
        if name not in TECHNIQUES:
            parser.error(f"unknown technique {name!r}; choose from {', '.join(TECHNIQUES)}")
    return args


def _child_argv(args, model: str, technique: str) -> list[str]:
    argv = [sys.executable, str(Path(__file__).resolve()), "--child", model, technique]
    argv += ["--device", args.device, "--threads", str(args.threads), "--batches", ",".join(map(str, args.batches))]
    argv += ["--repeats", str(args.repeats), "--warmup", str(args.warmup)]
    if not args.memory:
        argv.append("--no-memory")
    if args.memory_batches:
        argv += ["--memory-batches", ",".join(map(str, args.memory_batches))]
    return argv


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        args.model, args.technique = args.child
        print(json.dumps(run_child(args)))
        return 0

    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            print("--device cuda: CUDA is not available here", file=sys.stderr)
            return 2
    missing = {technique: missing_libraries(technique) for technique in args.techniques.split(",")}
    if all(missing.values()):
        problems = sorted({problem for found in missing.values() for problem in found})
        print(
            f"nothing to compare: {'; '.join(problems)} (pip install -e '.[bench]'); {args.out} left as it was",
            file=sys.stderr,
        )
        return 2
    command = display_command()
    started = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    load_start = os.getloadavg()[0]
    clock = time.perf_counter()
    info = machine_info(args)
    results = []
    for model in args.models.split(","):
        for technique in args.techniques.split(","):
            if missing[technique]:
                why = "; ".join(missing[technique])
                print(f"{model} / {technique}: skipped ({why})", file=sys.stderr, flush=True)
                results.append({"model": model, "technique": technique, "skipped": why})
                continue
            print(f"{model} / {technique} ...", file=sys.stderr, flush=True)
            proc = subprocess.run(_child_argv(args, model, technique), stdout=subprocess.PIPE, text=True, cwd=REPO)
            if proc.returncode != 0:
                results.append({"model": model, "technique": technique, "error": f"subprocess exit {proc.returncode}"})
                continue
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            # Written after every subprocess, so an interrupted run keeps what it measured.
            text = render(results, args, info, command, started, (load_start, os.getloadavg()[0]))
            write_section(args.out, text)
    text = render(results, args, info, command, started, (load_start, os.getloadavg()[0]))
    write_section(args.out, text)
    print(text)
    print(f"wrote {args.out} in {time.perf_counter() - clock:.0f} s", file=sys.stderr)
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
