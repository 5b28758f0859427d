#!/usr/bin/env python
"""Speed and agreement of the attribution wrappers against captum.

On EfficientNet-Lite0 (embedded ImageNet weights) and VGG16 (random weights),
224 x 224, the same images, targets and batch size (model inputs per forward:
path points, noisy or occluded copies) on both sides:

* Integrated Gradients (Gauss-Legendre, black baseline) vs captum
  ``IntegratedGradients(internal_batch_size=B)``
* Gradient x Input vs captum ``InputXGradient``
* SmoothGrad (vanilla gradient) vs captum ``NoiseTunnel(Saliency(abs=False))``
  with ``nt_samples_batch_size=B``, seeded alike (the same noise: each image its
  own call, captum's standard deviation that image's range times the noise)
* Occlusion vs captum ``Occlusion(perturbations_per_eval=B / images)``

Per (model, method): one warm-up call per side (whose results are compared),
then interleaved timed calls (A B, B A, ...), median per side; ratio =
captum / ours.  Writes the section ``## Attributions: cnnvis vs captum`` of
``bench/RESULTS.md``.

    .venv/bin/python bench/attribution_references.py --quick   # 1 image, 3 repeats
    .venv/bin/python bench/attribution_references.py           # 2 images, 5 repeats
"""

from __future__ import annotations

import argparse
import datetime
import gc
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_file import display_command, write_section  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SECTION = "## Attributions: cnnvis vs captum"
SIZE = 224
MODELS = {"efficientnet_lite0": "default", "vgg16": "random"}
METHODS = ("integrated-gradients", "gradient-x-input", "smooth-grad", "occlusion", "occlusion-channels-last")
# Occlusion's patch and stride per model: VGG16's forward costs 40 times EfficientNet-Lite0's.
OCCLUSION = {"efficientnet_lite0": (32, 16), "vgg16": (64, 32)}


def make_sides(method: str, model, x, targets, args, name: str):
    """(what was run, ours(), captum()) for one method, each returning (N, ...) attributions."""
    import torch
    from captum import attr

    from cnnvis_tasks.mechanisms import attribution as ours
    from cnnvis_tasks.mechanisms.layout import forward_layout

    batch = args.batch
    gradient = ours.rule_gradient(model)
    if method == "integrated-gradients":
        black = torch.zeros_like(x)
        steps = args.steps
        return (
            f"{steps} steps",
            lambda: ours.integrated_gradients(gradient, x, black, targets, steps=steps, batch_size=batch),
            lambda: attr.IntegratedGradients(model).attribute(
                x, baselines=black, target=targets, n_steps=steps, internal_batch_size=batch
            ),
        )
    if method == "gradient-x-input":
        return (
            "",
            lambda: ours.gradient_x_input(gradient, x, targets),
            lambda: attr.InputXGradient(model).attribute(x, target=targets),
        )
    if method == "smooth-grad":
        samples, noise, seed = args.samples, 0.15, 0

        def mine():
            base = lambda inputs, t, _owners: gradient(inputs, t)  # noqa: E731
            return torch.cat(
                [
                    ours.smooth_grad(
                        base,
                        x[i : i + 1],
                        targets[i : i + 1],
                        samples=samples,
                        noise=noise,
                        seed=seed,
                        batch_size=batch,
                    )
                    for i in range(len(x))
                ]
            )

        def reference():
            out = []
            for i in range(len(x)):
                torch.manual_seed(seed)
                out.append(
                    attr.NoiseTunnel(attr.Saliency(model)).attribute(
                        x[i : i + 1],
                        nt_type="smoothgrad",
                        nt_samples=samples,
                        nt_samples_batch_size=batch,
                        stdevs=float(ours.noise_spread(x[i : i + 1], noise)),
                        target=targets[i : i + 1],
                        abs=False,
                    )
                )
            return torch.cat(out)

        return f"{samples} samples, noise 0.15", mine, reference
    if method in ("occlusion", "occlusion-channels-last"):
        # occlusion-channels-last: captum given its input in the layout ours runs its forwards in
        # (forward_layout), to show how much of the difference the layout is
        patch, stride = OCCLUSION[name]
        fill = torch.zeros(1, 3, 1, 1)
        per_eval = max(1, batch // len(x))
        captum_x = forward_layout(x) if method == "occlusion-channels-last" else x
        return (
            f"patch {patch}, stride {stride}" + (", captum's input channels-last" if captum_x is not x else ""),
            lambda: ours.occlusion(model, x, targets, patch=patch, stride=stride, fill=fill, batch_size=batch),
            lambda: attr.Occlusion(model).attribute(
                captum_x,
                sliding_window_shapes=(3, patch, patch),
                strides=stride,
                baselines=0.0,
                target=targets,
                perturbations_per_eval=per_eval,
            )[:, 0],
        )
    raise ValueError(method)


def agreement(mine, reference) -> float:
    """max |ours - captum| / max |captum|."""
    return float((mine - reference).abs().max() / reference.abs().max())


def run(args, report) -> list[dict]:
    import torch

    from cnnvis_tasks.io.images import load_image
    from cnnvis_tasks.models.loading import load_model

    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    paths = sorted(p for p in (REPO / "images").iterdir() if p.suffix.lower() in (".png", ".jpg"))
    pictures = []
    for path in paths[: args.images]:
        image = load_image(path, SIZE)
        top, left = (image.shape[1] - SIZE) // 2, (image.shape[2] - SIZE) // 2
        pictures.append(image[:, top : top + SIZE, left : left + SIZE])
    rows = []
    for name in args.models:
        loaded = load_model(name, weights=MODELS[name], device=torch.device("cpu"))
        model = loaded.module
        x = loaded.normalize(torch.stack(pictures))
        with torch.no_grad():
            targets = model(x).argmax(1)
        for method in args.methods:
            what, mine, reference = make_sides(method, model, x, targets, args, name)
            sides = {"ours": mine, "captum": reference}
            agree = agreement(mine(), reference())  # also the warm-up
            times = {side: [] for side in sides}
            for repeat in range(args.repeats):
                for side in list(sides) if repeat % 2 == 0 else list(sides)[::-1]:
                    gc.collect()
                    start = time.perf_counter()
                    sides[side]()
                    times[side].append(time.perf_counter() - start)
            row = {"model": name, "method": method, "what": what, "agree": agree, "times": times}
            print(
                f"{name} {method}: ours {statistics.median(times['ours']):.2f} s, "
                f"captum {statistics.median(times['captum']):.2f} s, agreement {agree:.1e}",
                file=sys.stderr,
                flush=True,
            )
            rows.append(row)
            report(rows)  # an interrupted run keeps what it measured
    return rows


def render(rows, args, command: str, started: str, loads) -> str:
    import captum
    import torch

    lines = [SECTION, "", f"Date: {started}. Command: `{command}`", ""]
    lines.append(
        f"Machine: {os.cpu_count()} cores, torch.set_num_threads({args.threads}); torch {torch.__version__}, "
        f"captum {captum.__version__}. Load average (1 min) at start {loads[0]:.1f}, at end {loads[1]:.1f} "
        "(other work shared the machine: the fastest-call ratio is the steadier figure)."
    )
    lines.append("")
    lines.append(
        f"{args.images} image(s) {SIZE}x{SIZE}, each side {args.batch} model inputs per forward. Time: median of "
        f"{args.repeats} interleaved calls after one warm-up call, seconds per call. ratio = captum / ours "
        "(> 1: cnnvis is faster); fastest: the same over each side's fastest call. agrees: "
        "max |ours - captum| / max |captum|."
    )
    lines.append("")
    lines.append("| model | method | settings | ours s | captum s | ratio | fastest | agrees |")
    lines.append("|---|---|---|---:|---:|---:|---:|---|")
    for row in rows:
        ours, ref = row["times"]["ours"], row["times"]["captum"]
        lines.append(
            f"| {row['model']} | {row['method']} | {row['what'] or '-'} | {statistics.median(ours):.2f} | "
            f"{statistics.median(ref):.2f} | {statistics.median(ref) / statistics.median(ours):.2f} | "
            f"{min(ref) / min(ours):.2f} | {row['agree']:.0e} |"
        )
    lines.append("")
    lines.append("Notes:")
    lines.append("")
    lines.append(
        "- Integrated Gradients: both sides evaluate the path points step by step (every image's point of a step "
        "in one batch), so the batches hold the same inputs; float32 results depend on a batch's make-up (the "
        "convolution algorithms do), and at other batch compositions the two agree to float32's accuracy only."
    )
    lines.append(
        "- SmoothGrad: one call per image on both sides, because captum takes one noise standard deviation per "
        "call and SmoothGrad's is a fraction of each image's own range."
    )
    lines.append(
        "- Occlusion: captum returns a 3 x H x W map whose channels are equal (the window covers every channel); "
        "cnnvis returns H x W, compared with captum's first channel. Ours runs under `inference_mode`, feeds the "
        "occluded copies to the model channels-last on the CPU (`mechanisms/layout.py`: oneDNN's faster "
        "convolutions), and spreads the windows' drops back with one transposed convolution, where captum adds a "
        "full-size masked tensor per window. `occlusion-channels-last` gives captum its input channels-last too: "
        "the same layout on both sides (agreement 0 on VGG16, float32 rounding on EfficientNet-Lite0), so that "
        "row shows what the layout alone is worth."
    )
    lines.append("")
    return "\n".join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 image, 3 repeats, 16 steps and samples")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--batch", type=int, default=16, help="model inputs per forward, both sides")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of " + ", ".join(MODELS))
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of " + ", ".join(METHODS))
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "RESULTS.md")
    args = parser.parse_args(argv)
    args.models, args.methods = args.models.split(","), args.methods.split(",")
    args.images, args.repeats = (1, 3) if args.quick else (2, 5)
    args.steps = args.samples = 16 if args.quick else 32
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    started = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    load_start = os.getloadavg()[0]

    def report(rows):
        text = render(rows, args, display_command(), started, (load_start, os.getloadavg()[0]))
        write_section(args.out, text)
        return text

    print(report(run(args, report)))


if __name__ == "__main__":
    main()
