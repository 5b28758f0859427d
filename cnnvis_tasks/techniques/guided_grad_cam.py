"""Guided Grad-CAM (Selvaraju et al. 2017): guided backpropagation times the
Grad-CAM map upsampled to the image, so that the fine detail of the gradient
is kept only where the class evidence lies.  A pixel-level map with three
channels, so it is rendered and stored as saliency maps are (color, gray; raw
3 x H x W), not as the CAMs' layer-resolution maps."""

from __future__ import annotations

from typing import Any

from cnnvis_tasks.technique import BATCH_SIZE, SIZE, TARGET_CLASS, Cost, Rendered, Result, Technique
from cnnvis_tasks.techniques.attribution_family import ATTRIBUTION_RENDERINGS, render_map
from cnnvis_tasks.techniques.cam_family import AUTO, LAYER, chosen_layer, layer_caption
from cnnvis_tasks.techniques.grad_cam import gradcam_weights


def guided_grad_cam(model: Any, images: Any, layer: str, targets: Any = None) -> tuple[Any, Any]:
    """(N, 3, H, W) guided backpropagation of each image's target logit times the
    bilinearly upsampled Grad-CAM of ``layer`` (same class), with the Grad-CAM result."""
    from cnnvis_tasks.mechanisms.cam import class_activation_map, upsample_cam
    from cnnvis_tasks.mechanisms.relu_rules import saliency

    cam = class_activation_map(model, images, layer, targets, gradcam_weights)
    guided = saliency(model, images, cam.targets, "guided")
    return guided.gradients * upsample_cam(cam.cams, tuple(images.shape[-2:]))[:, None], cam


def compute(model, images, targets=None, *, layer: str = AUTO, **_options: Any) -> Result:
    from cnnvis_tasks.mechanisms.targets import target_probabilities

    chosen, notes = chosen_layer(model.module, layer)
    maps, cam = guided_grad_cam(model.module, model.normalize(images), chosen, targets)
    return Result(
        "guided-grad-cam",
        maps=maps,
        targets=cam.targets,
        probabilities=target_probabilities(cam.logits, cam.targets),
        layer=chosen,
        facts={"layer": chosen},
        notes=notes,
    )


def render(result: Result, row: int, renderings: tuple[str, ...], options: dict[str, Any]) -> Rendered:
    return render_map(result.maps[row], renderings, f"Guided Grad-CAM map at {result.layer}")


TECHNIQUE = Technique(
    name="guided-grad-cam",
    cost=Cost(work=6.0),  # the CAM's pass and the guided backward
    order=87,
    title="Guided Grad-CAM",
    summary="Guided backpropagation times the upsampled Grad-CAM map (Selvaraju et al. 2017).",
    description="Guided backpropagation's fine gradient, kept where Grad-CAM finds the class: the pixels that "
    "matter, for that class only.",
    reference="Selvaraju et al. 2017, Grad-CAM: Visual Explanations from Deep Networks via Gradient-based Localization",
    options=(LAYER, TARGET_CLASS, SIZE, BATCH_SIZE),
    renderings=ATTRIBUTION_RENDERINGS,
    raw="Raw map per image (.npy, 3 x H x W float32: the guided gradient w.r.t. the normalised input times the "
    "upsampled Grad-CAM map).",
    compute=compute,
    render=render,
    attribution=True,
    caption=layer_caption,
    caption_first=True,
)
