"""HiResCAM (Draelos and Carin 2020): each activation weighted by the gradient
at its own position instead of the channel's mean gradient, so that the map
shows exactly the locations the score uses (for a head that ends in a linear
layer after global average pooling, the summed map is the score)."""

from __future__ import annotations

from typing import Any

from cnnvis_tasks.techniques.cam_family import cam_technique


def hires_cam_weights(activations: Any, gradients: Any) -> Any:
    """The gradient itself: one weight per channel and position."""
    return gradients


TECHNIQUE = cam_technique(
    "hires-cam",
    order=83,
    title="HiResCAM",
    summary="HiResCAM maps: each activation weighted by its own gradient (Draelos and Carin 2020).",
    description="Like Grad-CAM, with the gradient at each position instead of the channel's mean gradient: "
    "the map keeps the locations the score actually uses.",
    reference="Draelos and Carin 2020, Use HiResCAM instead of Grad-CAM for faithful explanations of "
    "convolutional neural networks",
    weighting=hires_cam_weights,
)
