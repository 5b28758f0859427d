"""Score-CAM (Wang et al. 2020): channel weights from the class scores of the
input masked by each channel, with no gradient
(:mod:`cnnvis_tasks.mechanisms.score_cam`)."""

from __future__ import annotations

from cnnvis_tasks.technique import INT, Cost, Option
from cnnvis_tasks.techniques.cam_family import cam_technique

# Every forward of Score-CAM (the images', then the masked copies') holds at most this many inputs.
BATCH_SIZE = Option(
    "batch_size",
    INT,
    32,
    "Inputs per forward pass: the images, then their masked copies (one per channel of the layer), this many at "
    "a time; bounds memory, results do not change.",
    minimum=1,
    affects_results=False,
)


def _score_cam(module, inputs, layer, targets, batch_size):
    from cnnvis_tasks.mechanisms.score_cam import score_cam

    return score_cam(module, inputs, layer, targets, batch_size)


TECHNIQUE = cam_technique(
    "score-cam",
    order=86,
    title="Score-CAM",
    summary="Score-CAM maps: channels weighted by the class score of the image they mask (Wang et al. 2020).",
    description="Each channel of the layer, upsampled and scaled to [0, 1], masks the image; the softmax over "
    "channels of the masked images' class logits weights the channels. No gradient; one forward per channel.",
    reference="Wang et al. 2020, Score-CAM: Score-Weighted Visual Explanations for Convolutional Neural Networks",
    cams=_score_cam,
    batch_size=BATCH_SIZE,
    # one masked copy per channel of the layer: a late layer's, about 1,280 (EfficientNet's head)
    cost=Cost(activation=2.0, work=1.0, copies=True, passes=lambda _options, _pixels: 1280.0),
)
