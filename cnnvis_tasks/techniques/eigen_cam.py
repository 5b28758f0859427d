"""Eigen-CAM (Muhammad and Yeasin 2020): the activations of a layer projected on
their first principal component; no gradient, no class."""

from __future__ import annotations

from typing import Any

from cnnvis_tasks.technique import Cost
from cnnvis_tasks.techniques.cam_family import cam_technique


def eigen_cam_map(activations: Any) -> Any:
    """(N, C, h, w) -> (N, h, w): each image's activations, as h*w points in C
    dimensions centred on their mean, projected on their first principal axis, ReLU'd.

    The axis's sign is a choice: the one whose components sum to >= 0, so the map is
    high where the channels are above their mean together.  Computed in float64.
    """
    import torch

    n, _, h, w = activations.shape
    points = activations.double().flatten(2).transpose(1, 2)  # (N, h*w, C)
    points = points - points.mean(dim=1, keepdim=True)
    _, _, vh = torch.linalg.svd(points, full_matrices=False)
    axis = vh[:, 0]  # (N, C)
    axis = axis * torch.where(axis.sum(dim=1, keepdim=True) < 0, -1.0, 1.0)
    projection = (points @ axis[:, :, None])[:, :, 0]
    return projection.clamp_min(0).reshape(n, h, w).to(activations.dtype)


TECHNIQUE = cam_technique(
    "eigen-cam",
    order=85,
    title="Eigen-CAM",
    summary="Eigen-CAM maps: a layer's activations on their first principal component (Muhammad and Yeasin 2020).",
    description="The activations of a layer, centred, projected on their first principal component and ReLU'd: "
    "where the layer's dominant pattern is, with no gradient and for no particular class.",
    reference="Muhammad and Yeasin 2020, Eigen-CAM: Class Activation Map using Principal Components",
    activation_map=eigen_cam_map,
    cost=Cost(activation=1.5, work=1.5),  # a forward and an SVD of the activations
)
