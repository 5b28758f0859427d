"""Channel examples: for every channel of a layer, the images of the data set that excite
it most (and, on request, least), with the patch each one's peak sees.

A data-set technique (:mod:`cnnvis_tasks.technique.reduction`): a job scans its
chunk and writes each channel's best images to one ``.npz``
(:class:`cnnvis_tasks.mechanisms.top_examples.TopExamples`); ``cnnvis-tasks
channel-atlas`` merges every chunk's lists per model and layer, cuts the patches
from the source images and writes the channel atlas that the gallery shows.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from cnnvis_tasks.technique import (
    BATCH_SIZE,
    CHOICE,
    FORWARD,
    INT,
    SIZE,
    Option,
    Reduction,
    Result,
    Technique,
    layer_option,
)

_FIELDS: dict[tuple[int, str, tuple[int, ...]], tuple[int, tuple[int, int]]] = {}


def compute(model, images, targets=None, *, layer: str, statistic: str = "max", **_options: Any) -> Result:
    """Per image and channel of ``layer``: its score (maximum or mean activation) and the
    box (x0, y0, x1, y1, input pixels) of the receptive field around its maximum, as
    ``maps`` (N, C, 5)."""
    import torch

    from cnnvis_tasks.mechanisms.capture import feature_maps
    from cnnvis_tasks.mechanisms.channel_peaks import channel_peaks, peak_boxes

    inputs = model.normalize(images)
    activation = feature_maps(model.module, inputs, [layer])[layer]
    score, position = channel_peaks(activation, statistic)
    side, grid = field_of(model.module, layer, inputs)
    size = (int(images.shape[-1]), int(images.shape[-2]))
    boxes = peak_boxes(position.cpu(), grid, side, size).to(score.device)
    facts = {
        "layer": layer,
        "statistic": statistic,
        "grid": list(grid),
        "receptive_field": side,
        "input_size": list(size),
    }
    return Result("channel-examples", maps=torch.cat([score[..., None], boxes], dim=-1), layer=layer, facts=facts)


def field_of(module, layer: str, inputs) -> tuple[int, tuple[int, int]]:
    """The layer's receptive field on inputs of this shape, measured once per process."""
    from cnnvis_tasks.mechanisms.channel_peaks import receptive_field

    key = (id(module), layer, tuple(inputs.shape[1:]))
    if key not in _FIELDS:
        _FIELDS[key] = receptive_field(module, layer, inputs)
    return _FIELDS[key]


class ChunkScan:
    """A job's state: every computed row's scores kept in per-channel top (and bottom) lists."""

    def __init__(self, options: Mapping[str, Any]):
        self.options = dict(options)
        self.examples = None
        self._lock = threading.Lock()

    def add_row(self, image: str, result: Result, position: int) -> None:
        from cnnvis_tasks.mechanisms.top_examples import TopExamples

        array = result.maps[position].numpy()
        with self._lock:
            if self.examples is None:
                facts = result.facts
                header = {key: facts[key] for key in ("layer", "statistic", "grid", "receptive_field")}
                header["size"] = self.options.get("size")
                counts = {"top": self.options.get("top", 9), "bottom": self.options.get("bottom", 0)}
                self.examples = TopExamples(array.shape[0], counts, header)
        self.examples.add(image, tuple(result.facts["input_size"]), array[:, 0], array[:, 1:])

    def save(self, path) -> None:
        from cnnvis_tasks.mechanisms.top_examples import TopExamples

        if self.examples is None:  # every image failed: an empty list, which merges as nothing
            counts = {"top": self.options.get("top", 9), "bottom": self.options.get("bottom", 0)}
            self.examples = TopExamples(0, counts, {"layer": self.options.get("layer")})
        self.examples.save(path)


def reduce_into_atlas(files, session, out_dir, *, patch_size: int = 64, sample: int = 16, **settings: Any) -> str:
    """The reduce (``cnnvis-tasks channel-atlas``): every chunk's lists into the channel atlas."""
    from cnnvis_tasks.techniques.channel_atlas import build_atlas

    atlas = build_atlas(files, session, out_dir, patch_size=patch_size, sample=sample, **settings)
    return (
        f"{len(atlas['channels'])} channels of {atlas['layer']} over {atlas['scanned']} images "
        f"({len(atlas['images'])} of them shown) in {out_dir}"
    )


def render(result: Result, row: int, renderings: tuple[str, ...], options: dict[str, Any]):
    raise NotImplementedError("channel-examples draws no picture per image: see cnnvis-tasks channel-atlas")


TECHNIQUE = Technique(
    name="channel-examples",
    cost=FORWARD,
    order=105,  # after the seed gallery and feature inversion: what channels respond to in the data
    title="Channel examples",
    summary="Per channel, the images of the data set that excite it most, with the patch its peak sees.",
    description=(
        "For every channel of a layer, the images of your data set on which the channel's activation peaks "
        "highest (its maximum, or its mean, over positions), each cut to the receptive field around the "
        "peak, beside the channel's feature visualisation, the classes it pushes up and down and how many "
        "of its images share a label (the channel atlas). Each job scans one chunk of images and keeps the "
        "best of each channel in one small file; cnnvis-tasks channel-atlas merges them."
    ),
    reference="Olah, Mordvintsev & Schubert, Feature Visualization, Distill 2017 (data-set examples)",
    options=(
        layer_option("Module path (see: cnnvis-tasks layers); repeat for several layers.", required=True),
        Option("top", INT, 9, "How many images per channel: those it responds to most.", minimum=1, maximum=100),
        Option(
            "bottom",
            INT,
            0,
            "How many images per channel that it responds to least (0: none).",
            minimum=0,
            maximum=100,
        ),
        Option(
            "statistic",
            CHOICE,
            "max",
            "Score an image by the channel's largest activation (max) or its mean over positions (mean).",
            choices=("max", "mean"),
        ),
        SIZE,
        BATCH_SIZE,
    ),
    renderings=(),
    raw="",
    compute=compute,
    render=render,
    reduction=Reduction(
        suffix=".npz",
        help="per channel, the images it responds to most (and least) among these, with the box around "
        "each peak; cnnvis-tasks channel-atlas merges several such files into the channel atlas.",
        start=ChunkScan,
        command="channel-atlas",
        title="channel atlas",
        summary=(
            "Merge the channel examples of several scans into one channel atlas: per channel, its best (and "
            "worst) images with the patch around each one's peak (a strip of tiles per channel), the share of "
            "them that share a label, and the classes it pushes up and down most (the mean gradient of each "
            "class's logit at the layer, over a sample of the listed images). The gallery shows it."
        ),
        reduce=reduce_into_atlas,
        options=(
            Option("patch_size", INT, 64, "Side of each tile, in pixels.", minimum=8, maximum=512),
            Option(
                "sample",
                INT,
                16,
                "Images (the channels' best first) over which each class's gradient is averaged (0: no classes).",
                minimum=0,
                maximum=4096,
            ),
        ),
    ),
)
