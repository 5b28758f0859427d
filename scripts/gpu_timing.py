"""Time each technique on the GPU (and on this machine's CPU for comparison).

Part of ``scripts/gpu-check``.  Prints one table: per-image milliseconds for the
per-image techniques (batch of 16 at 224 px) and seconds per synthesised image
for the ascent techniques at the seed's sizes, with each technique's default
steps and learning rate.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cnnvis_tasks.io.images import load_image  # noqa: E402
from cnnvis_tasks.mechanisms import ascent  # noqa: E402
from cnnvis_tasks.mechanisms.capture import feature_maps  # noqa: E402
from cnnvis_tasks.mechanisms.relu_rules import saliency  # noqa: E402
from cnnvis_tasks.models.loading import load_model  # noqa: E402
from cnnvis_tasks.techniques import get_technique  # noqa: E402
from cnnvis_tasks.techniques.ascent_family import steps_and_lr  # noqa: E402
from cnnvis_tasks.techniques.grad_cam import grad_cam  # noqa: E402

IMAGES = Path(__file__).resolve().parent.parent / "images"
CLASS_VIZ_SIZE = (400, 600)  # the seed's height and width


def timed(function, device: torch.device, repeats: int) -> float:
    """Median wall seconds of ``function()`` after one warm-up, synchronising CUDA."""
    function()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        function()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


def per_image_rows(device: torch.device, batch: int, repeats: int) -> list[tuple[str, float]]:
    model = load_model("efficientnet_lite0", device=device)
    cat = load_image(IMAGES / "chelsea.png", 224)[..., :224]
    inputs = model.normalize(cat.expand(batch, -1, -1, -1).contiguous().to(device))
    m = model.module
    rows = []
    for method in ("vanilla", "guided"):
        seconds = timed(lambda method=method: saliency(m, inputs, method=method), device, repeats)
        rows.append((f"saliency {method} (ms/image, batch {batch})", seconds / batch * 1000))
    seconds = timed(lambda: grad_cam(m, inputs, "_swish"), device, repeats)
    rows.append((f"grad-cam (ms/image, batch {batch})", seconds / batch * 1000))
    seconds = timed(lambda: feature_maps(m, inputs, ["_blocks.3", "_conv_head"]), device, repeats)
    rows.append((f"feature maps, 2 layers (ms/image, batch {batch})", seconds / batch * 1000))
    return rows


def _seconds_since(started: float, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - started


def ascent_rows(device: torch.device) -> list[tuple[str, float]]:
    """One run each, at the techniques' default steps and learning rates."""
    model = load_model("efficientnet_lite0", device=device)
    m, stats = model.module, {"mean": model.mean, "std": model.std}
    height, width = CLASS_VIZ_SIZE
    rows = []
    for robust in (False, True):
        steps, lr = steps_and_lr(None, None, robust)
        started = time.perf_counter()
        ascent.class_visualization(
            m,
            [963, 1, 281, 52],
            ["none"],
            [0.0],
            height=height,
            width=width,
            steps=steps,
            lr=lr,
            robust=robust,
            **stats,
        )
        label = f"{'robust' if robust else 'plain'} {steps} steps"
        rows.append((f"class-viz {height}x{width} {label} (s/image, batch 4)", _seconds_since(started, device) / 4))
    photo = load_image(IMAGES / "chelsea.png", 0)[None].to(device)
    size = f"{photo.shape[-1]}x{photo.shape[-2]}"
    plain = get_technique("deep-dream").defaults()
    started = time.perf_counter()
    ascent.deep_dream_adam(m, photo, "_blocks.10", None, steps=plain["steps"], lr=plain["lr"], **stats)
    rows.append((f"deep dream {size}, Adam {plain['steps']} steps (s/image)", _seconds_since(started, device)))
    octaves = get_technique("deep-dream-octaves").defaults()
    started = time.perf_counter()
    result = ascent.deep_dream(
        m,
        photo,
        "_blocks.10",
        None,
        octaves=octaves["octaves"],
        octave_scale=octaves["octave_scale"],
        steps_per_octave=octaves["steps"],
        lr=octaves["lr"],
        **stats,
    )
    seconds = _seconds_since(started, device)
    rows.append((f"deep dream octaves {size}, {result.octaves} octaves x {octaves['steps']} steps (s/image)", seconds))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cpu", action="store_true", help="also time the CPU (slower)")
    args = parser.parse_args()
    devices = [torch.device("cuda")] if torch.cuda.is_available() else []
    if args.cpu or not devices:
        devices.append(torch.device("cpu"))
    print(
        f"torch {torch.__version__}, {os.cpu_count()} CPU cores"
        + (f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no CUDA")
    )
    table: dict[str, dict[str, float]] = {}
    for device in devices:
        rows = per_image_rows(device, 16, args.repeats) + ascent_rows(device)
        for name, value in rows:
            table.setdefault(name, {})[device.type] = value
            print(f"  {device.type:4s} {name}: {value:.3f}", flush=True)
    print("\n| measurement | " + " | ".join(d.type for d in devices) + " |")
    print("|---|" + "---|" * len(devices))
    for name, values in table.items():
        print(f"| {name} | " + " | ".join(f"{values.get(d.type, float('nan')):.3f}" for d in devices) + " |")


if __name__ == "__main__":
    main()
