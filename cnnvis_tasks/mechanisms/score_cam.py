"""Score-CAM: channel weights from the scores of masked copies of the input.

Each channel ``A_k`` of the layer, upsampled to the input (bilinear, corners
aligned) and min-max scaled to [0, 1], masks the (normalised) input; the
target class's logit of that masked copy is the channel's score, and a softmax
over the channels' scores gives the weights of ``ReLU(sum_k w_k A_k)``.  This is
Algorithm 1 of Wang et al. 2020 (its baseline score, one constant per class,
cancels in the softmax) as pytorch-grad-cam computes it.

The masked copies of every image in a batch go through the model
``batch_size`` at a time, fewer for images far larger than a photo
(:func:`.attribution.copies_per_forward`, the attributions' rule).  A channel that is zero everywhere (a dead ReLU)
masks its image to all zeros, whatever the image: one forward of a zero image
gives the score of all of them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnvis_tasks.mechanisms.attribution import copies_per_forward
from cnnvis_tasks.mechanisms.cam import CamResult
from cnnvis_tasks.mechanisms.capture import capture_outputs, captured_feature_map
from cnnvis_tasks.mechanisms.layout import forward_layout
from cnnvis_tasks.mechanisms.targets import request_targets, target_indices

EPSILON = 1e-8  # a constant channel masks everything to 0, not NaN


def score_cam(model: nn.Module, images: Tensor, layer: str, targets: Tensor | None, batch_size: int) -> CamResult:
    """Score-CAM of ``layer`` for each image's target class (None: the top-1 class);
    no forward runs more than ``batch_size`` inputs (masked copies of a very large
    image: fewer, :func:`masked_scores`).  The model must be in eval mode."""
    wanted = request_targets(targets, images.shape[0], images.device)
    with torch.inference_mode():
        activations, logits = _activations_and_logits(model, images, layer, batch_size)
        targets = target_indices(wanted, logits, images.shape[0])
        weights = torch.softmax(masked_scores(model, images, activations, targets, batch_size), dim=1)
        cams = F.relu((weights[:, :, None, None] * activations).sum(dim=1))
    return CamResult(cams=cams, targets=targets, logits=logits, layer=layer)


def _activations_and_logits(model: nn.Module, images: Tensor, layer: str, batch_size: int) -> tuple[Tensor, Tensor]:
    activations, logits = [], []
    for start in range(0, images.shape[0], batch_size):
        with capture_outputs(model, [layer]) as outputs:
            logits.append(model(images[start : start + batch_size]))
        activations.append(captured_feature_map(outputs, layer, model))
    return torch.cat(activations), torch.cat(logits)


def channel_masks(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """(B, h, w) activation maps -> (B, 1, H, W) masks: upsampled (bilinear, corners
    aligned) to ``size`` and min-max scaled to [0, 1] each."""
    masks = F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=True)
    low = masks.amin(dim=(2, 3), keepdim=True)
    high = masks.amax(dim=(2, 3), keepdim=True)
    return (masks - low) / (high - low + EPSILON)


def masked_scores(model: nn.Module, images: Tensor, activations: Tensor, targets: Tensor, batch_size: int) -> Tensor:
    """(N, C): the target logit of each image masked by each of its channels, the
    copies ``batch_size`` per forward (fewer for a very large image: their memory is
    that of a batch of photos)."""
    n, c = activations.shape[:2]
    size = tuple(images.shape[-2:])
    chunk = copies_per_forward(batch_size, size[0] * size[1])
    scores = activations.new_empty((n, c), dtype=torch.float32)
    dead = activations.flatten(2).eq(0).all(dim=2)
    if bool(dead.any()):
        zero_logits = model(forward_layout(images.new_zeros((1, *images.shape[1:]))))[0].float()
        scores[dead] = zero_logits[targets[:, None].expand(n, c)[dead]]
    live = (~dead).nonzero()  # (pairs, 2): image, channel
    for start in range(0, live.shape[0], chunk):
        image, channel = live[start : start + chunk].unbind(dim=1)
        masked = images[image] * channel_masks(activations[image, channel], size)
        logits = model(forward_layout(masked))
        scores[image, channel] = logits.gather(1, targets[image][:, None])[:, 0].float()
    return scores
