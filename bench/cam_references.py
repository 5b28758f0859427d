#!/usr/bin/env python
"""Speed of every CAM of cnnvis against pytorch-grad-cam, in one run.

For each model (VGG16 with random weights, EfficientNet-Lite0 with its embedded
weights), batch size and CAM, both sides make the same maps from the same
224 x 224 inputs and target classes: the CAM at the layer, upsampled to the
input and min-max scaled per image, which is what pytorch-grad-cam's
``__call__`` returns.  Layers: VGG16 ``features.29`` (cnnvis's automatic
layer), EfficientNet-Lite0 ``_bn1`` (the head's 1280 x 7 x 7; the automatic
``_swish`` is one module called twice, and pytorch-grad-cam reads its first
call, the stem).  Score-CAM runs on EfficientNet-Lite0 only, at batch 1, with
the same number of masked copies per forward on both sides (``--mask-batch``);
on VGG16 it is 512 forwards of the whole network per image.  Equality of the
maps is checked in ``tests/test_cam_references.py``, not here.

The sides are timed interleaved (A B, B A, ...) after one warm-up call each;
a row gives the median of the repeats and the ratio of the medians
(reference / cnnvis: above 1 is cnnvis faster).  The script replaces the
section ``## CAMs: cnnvis vs pytorch-grad-cam`` of ``bench/RESULTS.md``.

    .venv/bin/python bench/cam_references.py            # batch 1 and 8, 5 repeats
    .venv/bin/python bench/cam_references.py --quick    # batch 1 and 4, 3 repeats
"""

from __future__ import annotations

import argparse
import datetime
import gc
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_file import display_command, write_section  # noqa: E402
from techniques import _cpu_model, _version, pgc_style_maps  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SECTION = "## CAMs: cnnvis vs pytorch-grad-cam"
SIZE = 224
MODELS = {"vgg16": ("random", "features.29"), "efficientnet_lite0": ("default", "_bn1")}
GRADIENT_CAMS = {  # ours (module of cnnvis_tasks.techniques, weighting) -> pytorch-grad-cam class
    "Grad-CAM": ("grad_cam", "gradcam_weights", "GradCAM"),
    "Grad-CAM++": ("grad_cam_plus_plus", "gradcam_plus_plus_weights", "GradCAMPlusPlus"),
    "XGrad-CAM": ("xgrad_cam", "xgrad_cam_weights", "XGradCAM"),
    "HiResCAM": ("hires_cam", "hires_cam_weights", "HiResCAM"),
    "LayerCAM": ("layer_cam", "layer_cam_weights", "LayerCAM"),
}


def sides(method: str, model, layer: str, mask_batch: int):
    """(ours, reference): each fn(x, targets) -> (N, H, W) maps in [0, 1]."""
    import importlib

    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from cnnvis_tasks.mechanisms.cam import class_activation_map
    from cnnvis_tasks.mechanisms.capture import feature_maps
    from cnnvis_tasks.mechanisms.score_cam import score_cam
    from cnnvis_tasks.techniques.eigen_cam import eigen_cam_map

    module = model.get_submodule(layer)
    if method in GRADIENT_CAMS:
        technique, weighting_name, class_name = GRADIENT_CAMS[method]
        weighting = getattr(importlib.import_module(f"cnnvis_tasks.techniques.{technique}"), weighting_name)

        def ours(x, t):
            return pgc_style_maps(class_activation_map(model, x, layer, t, weighting).cams, x.shape[-2:])
    elif method == "Eigen-CAM":
        class_name = "EigenCAM"

        def ours(x, t):
            return pgc_style_maps(eigen_cam_map(feature_maps(model, x, [layer])[layer]), x.shape[-2:])
    else:
        class_name = "ScoreCAM"

        def ours(x, t):
            return pgc_style_maps(score_cam(model, x, layer, t, mask_batch).cams, x.shape[-2:])

    cam_class = getattr(pytorch_grad_cam, class_name)

    def reference(x, t):
        # Parameters are frozen: its backward needs an input that requires grad.
        x = x.detach().requires_grad_(True)
        with cam_class(model=model, target_layers=[module]) as cam:
            cam.batch_size = mask_batch  # Score-CAM's masked copies per forward
            return cam(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in t])

    return ours, reference


def interleaved(ours, reference, x, t, repeats: int) -> tuple[list[float], list[float]]:
    """Seconds per call of each side, A B then B A, after one warm-up call each."""
    ours(x, t), reference(x, t)
    times: tuple[list[float], list[float]] = ([], [])
    for repeat in range(repeats):
        order = [(0, ours), (1, reference)] if repeat % 2 == 0 else [(1, reference), (0, ours)]
        for side, fn in order:
            gc.collect()
            start = time.perf_counter()
            fn(x, t)
            times[side].append(time.perf_counter() - start)
    return times


def inputs(loaded, batch: int):
    """The sample images (cycled) at 224 x 224, normalised, and the model's top-1 classes."""
    import torch

    from cnnvis_tasks.io.images import load_image

    paths = sorted(p for p in (REPO / "images").iterdir() if p.suffix in (".png", ".jpg"))
    pictures = [load_image(paths[i % len(paths)], SIZE, None)[:, :SIZE, :SIZE] for i in range(batch)]
    x = loaded.normalize(torch.stack(pictures))
    with torch.no_grad():
        return x, loaded.module(x).argmax(dim=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="batch 1 and 4, 3 repeats")
    parser.add_argument("--batches", type=int, nargs="+", help="batch sizes (default 1 8; --quick 1 4)")
    parser.add_argument("--repeats", type=int, help="timed calls per side (default 5; --quick 3)")
    parser.add_argument("--score-repeats", type=int, default=1, help="timed Score-CAM calls per side")
    parser.add_argument("--mask-batch", type=int, default=32, help="Score-CAM's masked copies per forward")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "RESULTS.md")
    args = parser.parse_args()
    batches = args.batches or ([1, 4] if args.quick else [1, 8])
    repeats = args.repeats or (3 if args.quick else 5)

    import torch

    from cnnvis_tasks.models.loading import load_model

    torch.set_num_threads(args.threads)
    started = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    load = os.getloadavg()[0]
    rows = []
    for name, (weights, layer) in MODELS.items():
        loaded = load_model(name, weights)
        methods = [*GRADIENT_CAMS, "Eigen-CAM"] + (["Score-CAM"] if name == "efficientnet_lite0" else [])
        for batch in batches:
            x, t = inputs(loaded, batch)
            for method in methods:
                if method == "Score-CAM" and batch != 1:
                    continue
                ours, reference = sides(method, loaded.module, layer, args.mask_batch)
                count = args.score_repeats if method == "Score-CAM" else repeats
                mine, theirs = interleaved(ours, reference, x, t, count)
                row = (name, layer, method, batch, statistics.median(mine), statistics.median(theirs), count)
                rows.append(row)
                print(f"{name} {method} batch {batch}: {row[4] / batch:.3f} s/img vs {row[5] / batch:.3f}", flush=True)
                write_section(args.out, table(rows, args, started, load))  # an interrupted run keeps its rows


def table(rows: list[tuple], args, started: str, load: float) -> str:
    """The section: how it was measured, then one line per (model, CAM, batch)."""
    import torch

    lines = [
        SECTION,
        "",
        f"Date: {started}. Command: `{display_command()}`",
        "",
        f"Machine: {_cpu_model()}, {os.cpu_count()} cores, --threads {args.threads}, load average at the start "
        f"{load:.1f}; torch {torch.__version__}, grad-cam {_version('grad-cam')}. Inputs 224 x 224 (the sample "
        f"images), top-1 classes; both sides return input-size min-max maps. Score-CAM: {args.mask_batch} masked "
        "copies per forward on both sides. Medians of interleaved timed calls (after one warm-up each); ratio = "
        "pytorch-grad-cam / cnnvis.",
        "",
        "| model | layer | CAM | batch | cnnvis ms/img | pytorch-grad-cam ms/img | ratio | repeats |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, layer, method, batch, mine, theirs, count in rows:
        lines.append(
            f"| {name} | `{layer}` | {method} | {batch} | {mine / batch * 1e3:.1f} | {theirs / batch * 1e3:.1f} | "
            f"{theirs / mine:.2f} | {count} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
