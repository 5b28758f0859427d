"""XGrad-CAM (Fu et al. 2020): channel weights that make the map satisfy the
sensitivity and conservation axioms: the gradient weighted by the activation,
summed over positions and divided by the channel's total activation."""

from __future__ import annotations

from typing import Any

from cnnvis_tasks.techniques.cam_family import cam_technique

EPSILON = 1e-7  # a channel whose activations sum to zero gets a finite weight


def xgrad_cam_weights(activations: Any, gradients: Any) -> Any:
    """(N, C, h, w) activations and gradients -> (N, C): ``sum_ij g_ij A_ij / (sum_ij A_ij + eps)``."""
    totals = activations.sum(dim=(2, 3), keepdim=True)
    return (gradients * activations / (totals + EPSILON)).sum(dim=(2, 3))


TECHNIQUE = cam_technique(
    "xgrad-cam",
    order=82,
    title="XGrad-CAM",
    summary="XGrad-CAM maps: gradients weighted by the activations (Fu et al. 2020).",
    description="Like Grad-CAM, with each channel weighted by its gradient times its activation, over the "
    "channel's total activation: the weights the sensitivity and conservation axioms ask for.",
    reference="Fu et al. 2020, Axiom-based Grad-CAM: Towards Accurate Visualization and Explanation of CNNs",
    weighting=xgrad_cam_weights,
)
