"""What a job asks the scheduler for: memory (``mem_mb``) and wall time (``runtime``).

A small cost model, from what the job will do: its technique, its model's size, the
pixels of one input, its batch size, its number of images and its device.  Snakemake
reads the two numbers as its standard resources: on SLURM they become ``sbatch
--mem`` and ``-t``; on one machine ``snakemake --resources mem_mb=N`` runs no more
jobs at once than fit in N MB (a job that asks for more than N is given N and runs
alone).

Memory (MB), on the CPU::

    mem_mb = MARGIN * (BASE_MB + PARAM_MB * params
                       + batch * megapixels * ACTIVATION_MB * cost.activation * (1 + gflops / GFLOPS_SCALE))

``BASE_MB``: Python, torch and the job's own machinery; ``PARAM_MB`` per million
parameters (the weights, loaded once, and their copy while loading); the last term is
the activations of one batch: a gradient method keeps every layer's output for the
backward, Score-CAM, occlusion and the trust metrics push batches of masked copies
through the model (``activation``); a model of more operations per pixel keeps more
per pixel.  On a GPU the activations live on the GPU: the host keeps torch's CUDA
runtime (``CUDA_HOST_MB``) and the decoded batch.

Wall time (minutes)::

    seconds = START_S + PARAM_S * params
              + images * (IMAGE_S + passes * cost.work * gflops * megapixels / 0.05 / rate)
    runtime = max(FLOOR_MINUTES, ceil(MARGIN * seconds / 60))

``cost``: the technique's :class:`~cnnvis_tasks.technique.cost.Cost`, from its description;
``passes``: how many times the technique runs its work per image (steps, samples);
``rate``: GFLOP per second of one CPU thread (more threads: times their square root,
a conservative speed-up) or of a GPU.

A retried job (Snakemake's ``attempt``, after being killed, for memory or time) asks for
``RETRY_GROWTH`` times more of both per attempt, and runs with half the batch size
(:func:`retry_batch_size`, at least 1): the batch size is a runtime option, so a retry
changes none of the job's results.

Coefficients measured on 2026-12-08 on the development machine (Intel Xeon, 2
cores, torch 2.14.1, CPU only, 1 thread per job) with ``.venv/bin/python
bench/job_costs.py --no-write`` (without ``--no-write`` it writes its table to
``bench/RESULTS.md``, "Job costs: declared and measured"): peak resident set size and
wall time of real jobs on EfficientNet-Lite0 and ResNet-18.  What they showed: a job
of EfficientNet-Lite0 starts at about 740 MB; a forward keeps about 250 MB per
megapixel of its batch, vanilla saliency and Grad-CAM about 1,600 (6.5 times; the
same at 224 and 448 px, batch 4 and 16); the image count does not change the peak (16
or 48 images: 2,546 and 2,528 MB); ResNet-18 keeps less per pixel than
EfficientNet-Lite0 (1,512 MB for the same saliency job), so the term that grows with
a model's operations is a guess on the safe side, as are the factors of techniques
not measured (guided backprop, integrated gradients, the ascent techniques).  The
declared memory was 1.4-1.9 times each measured peak.  Times are far below the
floor for jobs of this size; one thread ran 10-15 GFLOP/s (``CPU_RATE``: 6).  GPU numbers
(``CUDA_HOST_MB``, ``GPU_RATE``) were not measured here: they are rough (torch's
CUDA runtime takes 1-2 GB of host memory; a data-centre GPU runs these models some
30-100 times faster than one CPU thread), and generous on purpose.

Imports neither torch nor click.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cnnvis_tasks.technique.cost import Cost

# --- coefficients (measured here, see the module's docstring) ----------------------------

BASE_MB = 700.0  # Python, torch, the job's code, an idle batch of I/O threads
PARAM_MB = 12.0  # per million parameters: float32 weights (4 MB), their copy while loading, allocator slack
ACTIVATION_MB = 250.0  # per image of one megapixel in a batch, a forward pass that keeps nothing (x activation)
GFLOPS_SCALE = 20.0  # a model of 20 GFLOP at 224 px (VGG-16) is taken to keep twice EfficientNet-Lite0's per pixel
MARGIN = 1.25  # on top of every estimate
ROUND_MB = 256  # memory is asked for in steps of this
CUDA_HOST_MB = 2000.0  # rough: torch's CUDA runtime in host memory (not measured here)
GPU_HOST_IMAGE_MB = 40.0  # rough: per image of one megapixel in a batch, on the host when computing on a GPU

START_S = 12.0  # start a command: import torch, load the model, open the session
PARAM_S = 0.05  # per million parameters, loading
IMAGE_S = 0.15  # per image: decode, render, write the pictures and the record
CPU_RATE = 6.0  # GFLOP (of the model's forward at 224 px) per second, one thread of this machine
GPU_RATE = 300.0  # rough: the same on a GPU (not measured here)
FLOOR_MINUTES = 5  # the least a job asks for: schedulers round small requests up anyway
RETRY_GROWTH = 1.5  # memory and time asked for, per attempt after the first

REFERENCE_PIXELS = 224 * 224

# Parameters (millions) and operations (GFLOP of one forward at the weights' own input
# size, mostly 224 px) of torchvision's classifiers, from their weights' metadata
# (torchvision 0.29), and of the embedded model.  A model not listed, without a
# weights file, is taken as UNKNOWN_MODEL: large, so that its jobs are not killed.
MODELS: dict[str, tuple[float, float]] = {
    "efficientnet_lite0": (4.7, 0.4),
    "alexnet": (61.1, 0.71), "convnext_base": (88.6, 15.36), "convnext_large": (197.8, 34.36),
    "convnext_small": (50.2, 8.68), "convnext_tiny": (28.6, 4.46), "densenet121": (8.0, 2.83),
    "densenet161": (28.7, 7.73), "densenet169": (14.1, 3.36), "densenet201": (20.0, 4.29),
    "efficientnet_b0": (5.3, 0.39), "efficientnet_b1": (7.8, 0.69), "efficientnet_b2": (9.1, 1.09),
    "efficientnet_b3": (12.2, 1.83), "efficientnet_b4": (19.3, 4.39), "efficientnet_b5": (30.4, 10.27),
    "efficientnet_b6": (43.0, 19.07), "efficientnet_b7": (66.3, 37.75), "efficientnet_v2_l": (118.5, 56.08),
    "efficientnet_v2_m": (54.1, 24.58), "efficientnet_v2_s": (21.5, 8.37), "googlenet": (6.6, 1.5),
    "inception_v3": (27.2, 5.71), "maxvit_t": (30.9, 5.56), "mnasnet0_5": (2.2, 0.1), "mnasnet0_75": (3.2, 0.21),
    "mnasnet1_0": (4.4, 0.31), "mnasnet1_3": (6.3, 0.53), "mobilenet_v2": (3.5, 0.3),
    "mobilenet_v3_large": (5.5, 0.22), "mobilenet_v3_small": (2.5, 0.06), "regnet_x_16gf": (54.3, 15.94),
    "regnet_x_1_6gf": (9.2, 1.6), "regnet_x_32gf": (107.8, 31.74), "regnet_x_3_2gf": (15.3, 3.18),
    "regnet_x_400mf": (5.5, 0.41), "regnet_x_800mf": (7.3, 0.8), "regnet_x_8gf": (39.6, 8.0),
    "regnet_y_128gf": (644.8, 374.57), "regnet_y_16gf": (83.6, 15.91), "regnet_y_1_6gf": (11.2, 1.61),
    "regnet_y_32gf": (145.0, 32.28), "regnet_y_3_2gf": (19.4, 3.18), "regnet_y_400mf": (4.3, 0.4),
    "regnet_y_800mf": (6.4, 0.83), "regnet_y_8gf": (39.4, 8.47), "resnet101": (44.5, 7.8),
    "resnet152": (60.2, 11.51), "resnet18": (11.7, 1.81), "resnet34": (21.8, 3.66), "resnet50": (25.6, 4.09),
    "resnext101_32x8d": (88.8, 16.41), "resnext101_64x4d": (83.5, 15.46), "resnext50_32x4d": (25.0, 4.23),
    "shufflenet_v2_x0_5": (1.4, 0.04), "shufflenet_v2_x1_0": (2.3, 0.14), "shufflenet_v2_x1_5": (3.5, 0.3),
    "shufflenet_v2_x2_0": (7.4, 0.58), "squeezenet1_0": (1.2, 0.82), "squeezenet1_1": (1.2, 0.35),
    "swin_b": (87.8, 15.43), "swin_s": (49.6, 8.74), "swin_t": (28.3, 4.49), "swin_v2_b": (87.9, 20.32),
    "swin_v2_s": (49.7, 11.55), "swin_v2_t": (28.4, 5.94), "vgg11": (132.9, 7.61), "vgg11_bn": (132.9, 7.61),
    "vgg13": (133.0, 11.31), "vgg13_bn": (133.1, 11.31), "vgg16": (138.4, 15.47), "vgg16_bn": (138.4, 15.47),
    "vgg19": (143.7, 19.63), "vgg19_bn": (143.7, 19.63), "vit_b_16": (86.6, 17.56), "vit_b_32": (88.2, 4.41),
    "vit_h_14": (633.5, 1016.72), "vit_l_16": (304.3, 61.55), "vit_l_32": (306.5, 15.38),
    "wide_resnet101_2": (126.9, 22.75), "wide_resnet50_2": (68.9, 11.4),
}  # fmt: skip
UNKNOWN_MODEL = (150.0, 20.0)
BYTES_PER_PARAMETER = 4  # a weights file of N bytes: about N / 4 float32 parameters


def model_size(arch: str, weights_bytes: int | None = None) -> tuple[float, float]:
    """(million parameters, GFLOP per forward at 224 px) of a model: from the table when
    known; else from its weights file's size, with operations as a listed model of that
    size would have (10 per 100 million parameters); else :data:`UNKNOWN_MODEL`."""
    if arch in MODELS:
        return MODELS[arch]
    if weights_bytes:
        params = weights_bytes / BYTES_PER_PARAMETER / 1e6
        return params, max(1.0, params / 10)
    return UNKNOWN_MODEL


@dataclass(frozen=True)
class Work:
    """What a job does, as the cost model sees it: its technique's :class:`Cost` (from the
    technique's description), its images, batch, input size, model and device."""

    cost: Cost
    images: int  # images (or, for a technique without images, items: classes, filters) it computes
    batch_size: int
    pixels: int  # of one input, as the model takes it
    params: float  # million parameters
    gflops: float  # one forward at 224 px
    device: str = "cpu"
    threads: int = 1
    passes: float = 1.0  # times the technique's work per image (steps, samples, masked copies)

    @property
    def gpu(self) -> bool:
        return self.device.startswith("cuda")


def memory_mb(work: Work, attempt: int = 1) -> int:
    """MB a job asks for (``mem_mb``), :data:`RETRY_GROWTH` times more per attempt."""
    activation = work.cost.activation
    batch = max(1, work.batch_size if work.cost.copies else min(work.batch_size, max(work.images, 1)))
    megapixels = batch * work.pixels / 1e6
    need = BASE_MB + PARAM_MB * work.params
    if work.gpu:
        need += CUDA_HOST_MB + GPU_HOST_IMAGE_MB * megapixels
    else:
        need += megapixels * ACTIVATION_MB * activation * (1 + work.gflops / GFLOPS_SCALE)
    need *= MARGIN * RETRY_GROWTH ** (max(attempt, 1) - 1)
    return int(math.ceil(need / ROUND_MB) * ROUND_MB)


def runtime_minutes(work: Work, attempt: int = 1) -> int:
    """Minutes a job asks for (``runtime``), :data:`RETRY_GROWTH` times more per attempt."""
    per_pass = work.cost.work
    rate = GPU_RATE if work.gpu else CPU_RATE * math.sqrt(max(work.threads, 1))
    compute = work.passes * per_pass * work.gflops * (work.pixels / REFERENCE_PIXELS) / rate
    seconds = START_S + PARAM_S * work.params + max(work.images, 0) * (IMAGE_S + compute)
    minutes = math.ceil(MARGIN * seconds * RETRY_GROWTH ** (max(attempt, 1) - 1) / 60)
    return max(FLOOR_MINUTES, minutes)


def retry_batch_size(batch_size: int, attempt: int) -> int:
    """The batch size of attempt ``attempt``: halved per attempt after the first, at least 1."""
    return max(1, int(batch_size) >> (max(attempt, 1) - 1))


def retry_note(attempt: int, batch_size: int | None, was: int | None) -> str:
    """What a retried job's log says first, e.g. ``attempt 2: batch size 8 (was 16), asking
    for 1.5x the memory and time of the first``.  The same for every job of a rule: the
    jobs of a cluster group must agree on it (it travels in a text resource)."""
    batch = f"batch size {batch_size} (was {was}), " if batch_size is not None and was is not None else ""
    growth = RETRY_GROWTH ** (max(attempt, 1) - 1)
    return f"attempt {attempt}: {batch}asking for {growth:g}x the memory and time of the first"


def shared_pass_cost(members: list[Cost]) -> Cost:
    """A shared pass's cost: one forward and backward kept for every member (a little more
    memory than the largest member's), each member's own work after the first reusing it."""
    first = max(members, key=lambda cost: cost.work)
    extra = sum(max(cost.work - 1.0, 0.0) for cost in members) - max(first.work - 1.0, 0.0)
    return Cost(
        activation=max(cost.activation for cost in members) * 1.1,
        work=first.work + extra,
        copies=any(cost.copies for cost in members),
    )
