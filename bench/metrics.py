#!/usr/bin/env python
"""What the faithfulness metrics cost, and ROAD against pytorch-grad-cam's.

On EfficientNet-Lite0 (embedded ImageNet weights), the sample images at 224 x 224
(the central square), their top-1 classes, for two attributions (Grad-CAM at
``_bn1``, vanilla saliency as max |gradient| over the channels):

1. per image, the attribution's own time and each metric's of
   ``cnnvis_tasks.mechanisms.faithfulness`` on its maps: deletion and insertion
   (28 steps), ROAD combined (both orders, 9 fractions), cascading randomisation
   (the default 5 stages, each recomputing the attribution) and localisation (a
   box of the central half), the fastest of 2 (``--quick``) or 3 calls;
2. our ``road_combined`` against pytorch-grad-cam's ``ROADCombined`` on the same
   batch, maps (Grad-CAM's, min-max scaled as pytorch-grad-cam's are) and
   fractions, interleaved calls, median and fastest; ratio = pytorch-grad-cam / ours.
   Agreement from one call per side without noise.

Writes the section ``## Faithfulness metrics: cost per image, and ROAD vs
pytorch-grad-cam`` of ``bench/RESULTS.md``.

    .venv/bin/python bench/metrics.py --quick   # 2 images, 3 ROAD repeats: about 3 minutes on 2 busy cores
    .venv/bin/python bench/metrics.py           # 4 images, 5 ROAD repeats
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

SECTION = "## Faithfulness metrics: cost per image, and ROAD vs pytorch-grad-cam"
SIZE = 224
LAYER = "_bn1"
PERCENTILES = [10, 20, 30, 40, 50, 60, 70, 80, 90]


def timed(fn):
    gc.collect()
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def fastest(fn, calls: int):
    """The fastest of ``calls`` timed calls, and the last call's value."""
    best = float("inf")
    for _ in range(calls):
        seconds, value = timed(fn)
        best = min(best, seconds)
    return best, value


def attributions(model, x, targets):
    """name -> (maps at the input size) function of a model, for the two attributions."""
    from cnnvis_tasks.mechanisms.faithfulness import as_pixel_map
    from cnnvis_tasks.mechanisms.relu_rules import saliency
    from cnnvis_tasks.techniques.grad_cam import grad_cam

    size = tuple(x.shape[-2:])
    return {
        "Grad-CAM": lambda m: as_pixel_map(grad_cam(m, x, LAYER, targets).cams, size),
        "saliency, vanilla": lambda m: as_pixel_map(
            saliency(m, x, targets, method="vanilla").gradients, size, "max_abs"
        ),
    }


def minmax(maps):
    flat = maps.flatten(1)
    low, high = flat.amin(1)[:, None, None], flat.amax(1)[:, None, None]
    return (maps - low) / (high - low).clamp_min(1e-7)


def grad_cam_road(model, x, targets, cams, noise: float | None = None):
    """pytorch-grad-cam's ROADCombined (its own noise), or the same with ``noise`` for both orders."""
    from pytorch_grad_cam.metrics.perturbation_confidence import (
        AveragerAcrossThresholds,
        PerturbationConfidenceMetric,
        RemoveLeastRelevantFirst,
        RemoveMostRelevantFirst,
    )
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer, ROADCombined
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    classes = [ClassifierOutputTarget(int(t)) for t in targets]
    if noise is None:
        return ROADCombined(PERCENTILES)(x, cams.numpy(), classes, model)

    def averaged(removal):
        def metric(p):
            return PerturbationConfidenceMetric(removal(p, NoisyLinearImputer(noise=noise)))

        return AveragerAcrossThresholds(metric, PERCENTILES)(x, cams.numpy(), classes, model)

    return (averaged(RemoveLeastRelevantFirst) - averaged(RemoveMostRelevantFirst)) / 2


def run(args, report) -> dict:
    import torch

    from cnnvis_tasks.io.images import load_image
    from cnnvis_tasks.mechanisms import faithfulness as fa
    from cnnvis_tasks.models.loading import load_model

    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    paths = sorted(p for p in (REPO / "images").iterdir() if p.suffix.lower() in (".png", ".jpg"))
    pictures = []
    for path in paths[: args.images]:
        image = load_image(path, SIZE)
        top, left = (image.shape[1] - SIZE) // 2, (image.shape[2] - SIZE) // 2
        pictures.append(image[:, top : top + SIZE, left : left + SIZE])
    loaded = load_model("efficientnet_lite0", weights="default", device=torch.device("cpu"))
    model = loaded.module
    x = loaded.normalize(torch.stack(pictures))
    n = len(x)
    with torch.no_grad():
        targets = model(x).argmax(1)
    fractions = [1 - p / 100 for p in PERCENTILES]
    stages = fa.cascade_stages(model)
    boxes = torch.tensor([[SIZE / 4, SIZE / 4, 3 * SIZE / 4, 3 * SIZE / 4]] * n)
    results = {"images": n, "stages": stages, "rows": [], "road": None}
    for name, compute in attributions(model, x, targets).items():
        compute(model)  # warm-up
        seconds, maps = fastest(lambda compute=compute: compute(model), 3)
        row = {"attribution": name, "own": seconds / n, "metrics": {}}
        metrics = {
            "deletion + insertion (28 steps)": lambda maps=maps: fa.deletion_insertion(
                model, x, targets, maps, steps=28, batch_size=args.batch
            ),
            "ROAD combined (2 x 9 fractions)": lambda maps=maps: fa.road_combined(
                model, x, targets, maps, fractions=fractions, batch_size=args.batch
            ),
            f"randomisation ({len(stages)} stages)": lambda compute=compute: fa.randomisation(compute, model, stages),
            "localisation": lambda maps=maps: fa.localisation(maps, boxes),
        }
        for metric, fn in metrics.items():
            seconds, _ = fastest(fn, args.metric_calls)
            row["metrics"][metric] = seconds / n
            print(f"{name} {metric}: {1000 * seconds / n:.0f} ms/img", file=sys.stderr, flush=True)
        results["rows"].append(row)
        report(results)

    cams = minmax(attributions(model, x, targets)["Grad-CAM"](model))
    sides = {
        "ours": lambda: fa.road_combined(model, x, targets, cams, fractions=fractions, batch_size=args.batch)[
            "combined"
        ],
        "pytorch-grad-cam": lambda: grad_cam_road(model, x, targets, cams),
    }
    ours_clean = fa.road_combined(model, x, targets, cams, fractions=fractions, noise=0.0, batch_size=args.batch)
    theirs_clean = torch.as_tensor(grad_cam_road(model, x, targets, cams, noise=0.0))  # also the warm-up
    difference = (ours_clean["combined"] - theirs_clean).abs().max().item()
    scale = theirs_clean.abs().max().item()
    times = {side: [] for side in sides}
    for repeat in range(args.repeats):
        for side in list(sides) if repeat % 2 == 0 else list(sides)[::-1]:
            seconds, _ = timed(sides[side])
            times[side].append(seconds)
            print(f"ROAD {side}: {seconds:.2f} s", file=sys.stderr, flush=True)
    results["road"] = {"times": times, "difference": difference, "scale": scale}
    report(results)
    return results


def render(results, args, command: str, started: str, loads) -> str:
    import pytorch_grad_cam  # noqa: F401
    import scipy
    import torch

    lines = [SECTION, "", f"Date: {started}. Command: `{command}`", ""]
    lines.append(
        f"Machine: {os.cpu_count()} cores, torch.set_num_threads({args.threads}); torch {torch.__version__}, "
        f"scipy {scipy.__version__}. Load average (1 min) at start {loads[0]:.1f}, at end {loads[1]:.1f} "
        "(other work shared the machine: the fastest-call ratio is the steadier figure)."
    )
    lines.append("")
    n = results["images"]
    lines.append(
        f"EfficientNet-Lite0 (embedded weights), {n} image(s) {SIZE}x{SIZE}, their top-1 classes, "
        f"{args.batch} model inputs per forward. The fastest of {args.metric_calls} timed calls of each metric "
        "(of 3 for the attribution, after a warm-up), milliseconds per image; x: the metric's time over "
        "the attribution's own. Randomisation stages: "
        + "; ".join(f"{k}: {', '.join(stage)}" for k, stage in enumerate(results["stages"]))
        + "."
    )
    lines.append("")
    metric_names = list(results["rows"][0]["metrics"]) if results["rows"] else []
    lines.append("| attribution | own ms/img | " + " | ".join(f"{m} ms/img (x)" for m in metric_names) + " |")
    lines.append("|---|---:|" + "---:|" * len(metric_names))
    for row in results["rows"]:
        cells = [f"{1000 * row['own']:.0f}"]
        cells += [f"{1000 * t:.0f} ({t / row['own']:.0f}x)" for t in row["metrics"].values()]
        lines.append(f"| {row['attribution']} | " + " | ".join(cells) + " |")
    lines.append("")
    road = results["road"]
    if road:
        ours, theirs = road["times"]["ours"], road["times"]["pytorch-grad-cam"]
        lines.append(
            f"ROAD combined on Grad-CAM's maps (min-max scaled), percentiles {PERCENTILES[0]}..{PERCENTILES[-1]} "
            f"(removed fractions 0.9..0.1), both orders, noise 0.01: {args.repeats} interleaved calls per side "
            "on the whole batch, seconds per call. ratio = pytorch-grad-cam / ours (> 1: cnnvis is faster); "
            "fastest: the same over each side's fastest call. agrees: max |ours - theirs| of the combined score "
            "without noise on either side, over max |theirs|."
        )
        lines.append("")
        lines.append("| images | ours s (median) | pytorch-grad-cam s (median) | ratio | fastest | agrees |")
        lines.append("|---:|---:|---:|---:|---:|---|")
        lines.append(
            f"| {n} | {statistics.median(ours):.2f} | {statistics.median(theirs):.2f} | "
            f"{statistics.median(theirs) / statistics.median(ours):.2f} | {min(theirs) / min(ours):.2f} | "
            f"{road['difference'] / max(road['scale'], 1e-12):.0e} |"
        )
        lines.append("")
    lines.append("Notes:")
    lines.append("")
    lines.append(
        "- ROAD: both sides solve one sparse system per image, order and fraction (CPU work). Ours builds it "
        "with vectorised NumPy, numbers the unknown pixels in a nested-dissection order of the grid and "
        "factorises it with SuperLU without pivoting (it is symmetric and definite); pytorch-grad-cam fills a "
        "LIL matrix and calls `spsolve` (SuperLU's column ordering, partial pivoting). Ours runs each image's "
        "18 perturbed copies in chunks of the batch size with one forward for the unperturbed images; "
        "pytorch-grad-cam runs one forward of the whole batch per order and fraction, plus one of the "
        "unperturbed batch each time."
    )
    lines.append(
        "- Deletion and insertion: 2 x 29 copies per image, all through the model in chunks of the batch size; "
        "randomisation recomputes the attribution once per stage on a deep copy of the model."
    )
    lines.append("")
    return "\n".join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 images, 3 repeats")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--batch", type=int, default=16, help="model inputs per forward")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "RESULTS.md")
    args = parser.parse_args(argv)
    args.images, args.repeats, args.metric_calls = (2, 3, 2) if args.quick else (4, 5, 3)
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    started = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    load_start = os.getloadavg()[0]

    def report(results):
        text = render(results, args, display_command(), started, (load_start, os.getloadavg()[0]))
        write_section(args.out, text)
        return text

    print(report(run(args, report)))


if __name__ == "__main__":
    main()
