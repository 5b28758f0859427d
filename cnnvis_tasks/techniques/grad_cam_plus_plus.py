"""Grad-CAM++ (Chattopadhay et al. 2018): channel weights from the positive
gradients, each weighed by a closed-form coefficient from the second and third
powers of the gradient (the paper's eq. 19, with the exponential's derivatives
replaced by powers of the first, as usual)."""

from __future__ import annotations

from typing import Any

from cnnvis_tasks.techniques.cam_family import cam_technique

EPSILON = 1e-6  # keeps the coefficient finite where the denominator vanishes


def gradcam_plus_plus_weights(activations: Any, gradients: Any) -> Any:
    """(N, C, h, w) activations and gradients -> (N, C) weights:
    ``sum_ij relu(g_ij) * g_ij^2 / (2 g_ij^2 + sum_ab A_ab * g_ij^3)``, zero where ``g_ij == 0``."""
    squared = gradients.pow(2)
    cubed = squared * gradients
    totals = activations.sum(dim=(2, 3), keepdim=True)
    alpha = squared / (2 * squared + totals * cubed + EPSILON)
    alpha = alpha.where(gradients != 0, alpha.new_zeros(()))
    return (gradients.clamp_min(0) * alpha).sum(dim=(2, 3))


TECHNIQUE = cam_technique(
    "grad-cam-plus-plus",
    order=81,
    title="Grad-CAM++",
    summary="Grad-CAM++ maps: positive gradients weighed per position (Chattopadhay et al. 2018).",
    description="Like Grad-CAM, with each channel weighted by its positive gradients, each scaled by a "
    "coefficient from the gradient's higher powers: better at several instances of a class.",
    reference="Chattopadhay et al. 2018, Grad-CAM++: Generalized Gradient-based Visual Explanations for Deep "
    "Convolutional Networks",
    weighting=gradcam_plus_plus_weights,
)
