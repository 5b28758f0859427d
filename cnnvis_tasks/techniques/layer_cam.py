"""LayerCAM (Jiang et al. 2021): each activation weighted by the positive part
of the gradient at its own position; usable at shallow layers too, where a
channel's mean gradient says little."""

from __future__ import annotations

from typing import Any

from cnnvis_tasks.techniques.cam_family import cam_technique


def layer_cam_weights(activations: Any, gradients: Any) -> Any:
    """``relu(g)``: one weight per channel and position."""
    return gradients.clamp_min(0)


TECHNIQUE = cam_technique(
    "layer-cam",
    order=84,
    title="LayerCAM",
    summary="LayerCAM maps: activations weighted by their positive gradients (Jiang et al. 2021).",
    description="Each activation weighted by the positive gradient at its own position: finer maps, also "
    "from earlier layers.",
    reference="Jiang et al. 2021, LayerCAM: Exploring Hierarchical Class Activation Maps for Localization",
    weighting=layer_cam_weights,
)
