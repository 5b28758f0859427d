"""Grad-CAM (Selvaraju et al. 2017): a layer's channels weighted by the mean
gradient of the target class's logit, summed and ReLU'd (reference gallery row 8)."""

from __future__ import annotations

from typing import Any

from cnnvis_tasks.techniques.cam_family import cam_technique


def gradcam_weights(activations: Any, gradients: Any) -> Any:
    """Grad-CAM channel weights: spatial mean of d score / d A, (N, C, h, w) -> (N, C)."""
    return gradients.mean(dim=(2, 3))


def grad_cam(model: Any, images: Any, layer: str, targets: Any = None) -> Any:
    """Grad-CAM of ``layer`` for a model in eval mode and images in its input space;
    see :func:`cnnvis_tasks.mechanisms.cam.class_activation_map`."""
    from cnnvis_tasks.mechanisms.cam import class_activation_map

    return class_activation_map(model, images, layer, targets, gradcam_weights)


TECHNIQUE = cam_technique(
    "grad-cam",
    order=80,
    title="Grad-CAM",
    summary="Grad-CAM maps of a layer for a class (reference gallery row 8).",
    description="Where the class evidence lies: a layer's channels weighted by the mean gradient of the "
    "target class's logit, summed and ReLU'd.",
    reference="Selvaraju et al. 2017, Grad-CAM: Visual Explanations from Deep Networks via Gradient-based Localization",
    weighting=gradcam_weights,
)
