"""Per-image commands: feature-maps, saliency, grad-cam; and kernels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import torch

from .. import render
from ..images import load_batches
from ..names import colormap_problem
from ..outputs import save_npy, save_png
from ..techniques.activations import feature_maps
from ..techniques.backprop import METHODS, saliency
from ..techniques.cam import default_cam_layer, grad_cam, upsample_cam
from ..techniques.kernels import kernel_weights
from . import cli
from .common import (
    Session,
    base_metadata,
    capture_warnings,
    check_paired,
    class_record,
    image_options,
    model_options,
    open_session,
    parse_targets,
    target_option,
    technique_command,
    warn,
)


def _batch_targets(session: Session, inputs: torch.Tensor, targets: list[int | None]) -> torch.Tensor | None:
    """Per-image class indices for a batch, on the host (the technique moves them to the
    device before its forward pass); None entries mean the top-1 prediction."""
    if all(t is None for t in targets):
        return None
    if any(t is None for t in targets):
        with torch.inference_mode():
            top1 = session.model.module(inputs).argmax(dim=1).tolist()
        targets = [top if t is None else t for t, top in zip(targets, top1)]
    return torch.tensor(targets, dtype=torch.long)


def _targets_and_probabilities(logits: torch.Tensor, targets: torch.Tensor) -> tuple[list[int], list[float]]:
    """Each image's target class and its softmax probability, in one read from the device."""
    probabilities = torch.softmax(logits.float(), dim=1).gather(1, targets[:, None])[:, 0]
    pairs = torch.stack([targets.double(), probabilities.double()], dim=1).tolist()  # exact for both
    return [int(target) for target, _ in pairs], [probability for _, probability in pairs]


def _layer_path(template: Path, layer: str, several: bool) -> Path:
    if several and "{layer}" not in str(template):
        raise click.UsageError(f"with several --layer values each --out/--raw needs '{{layer}}' in it, got {template}")
    return Path(str(template).replace("{layer}", layer))


@technique_command(cli, "feature-maps")
@model_options
@image_options
@click.option("--layer", "layers", multiple=True, required=True, metavar="PATH",
              help="Module path (see: cnnvis-tasks layers); repeat for several layers from one forward pass.")
@click.option("--channels", default=64, type=click.IntRange(min=1), help="How many channels (the first ones) to show.")
@click.option("--out", "outs", multiple=True, type=click.Path(path_type=Path),
              help="PNG grid per image; with several --layer, '{layer}' in the path is replaced by the layer path.")
@click.option("--raw", "raws", multiple=True, type=click.Path(path_type=Path),
              help="Raw activation (.npy, C x h x w float32) per image; '{layer}' as for --out.")
@capture_warnings
def feature_maps_command(images, outs, raws, layers, channels, size, batch_size, **common: Any) -> None:
    """The activation of one or more layers as a grid of channels, each scaled
    to its own range (seed gallery row 1)."""
    check_paired(len(images), "images", out=outs, raw=raws)
    session = open_session(**common)
    several = len(layers) > 1
    progress = session.progress(len(images), "feature-maps")
    done = 0
    for indices, batch in load_batches(images, size, batch_size):
        inputs = session.model.normalize(batch.to(session.device))
        activations = feature_maps(session.model.module, inputs, list(layers))
        shapes = {layer: list(maps.shape[1:]) for layer, maps in activations.items()}
        # One copy to the host per layer and batch (only the shown channels unless raw is asked).
        activations = {layer: (maps if raws else maps[:, :channels]).cpu() for layer, maps in activations.items()}
        for row, index in enumerate(indices):
            for layer in layers:
                activation = activations[layer][row]
                record = base_metadata(session, "feature-maps", image=str(images[index]), layer=layer,
                                       channels_shown=min(channels, shapes[layer][0]), shape=shapes[layer])
                if outs:
                    picture, constant = render.channel_grid(activation, channels)
                    if constant == min(channels, activation.shape[0]):
                        warn(f"{images[index]}: every shown channel of {layer} is constant; rendered black")
                    save_png(_layer_path(outs[index], layer, several), picture, record)
                if raws:
                    save_npy(_layer_path(raws[index], layer, several), activation.float().numpy())
        done += len(indices)
        progress.update(done)


@technique_command(cli, "kernels")
@model_options
@click.option("--layer", default=None, metavar="PATH", help="Module path of a conv layer (see: cnnvis-tasks layers).")
@click.option("--parameter", "parameter_index", default=None, type=click.IntRange(min=0),
              help="Alternatively, the seed's numbering: the K-th entry of model.named_parameters().")
@click.option("--count", default=25, type=click.IntRange(min=1), help="How many filters (the first ones) to show.")
@click.option("--out", required=False, type=click.Path(path_type=Path), help="PNG grid of the filters.")
@click.option("--raw", default=None, type=click.Path(path_type=Path), help="Raw weights (.npy, out x in x kh x kw).")
@capture_warnings
def kernels_command(layer, parameter_index, count, out, raw, **common: Any) -> None:
    """Raw convolution weights as a grid: RGB when a filter has 3 input channels,
    else its first input channel in gray (seed gallery row 2). No image needed."""
    if (layer is None) == (parameter_index is None):
        raise click.UsageError("give exactly one of --layer or --parameter")
    if not out and not raw:
        raise click.UsageError("nothing to write: give --out and/or --raw")
    session = open_session(**common)
    result = kernel_weights(session.model.module, layer=layer, parameter_index=parameter_index)
    record = base_metadata(session, "kernels", parameter=result.name, shape=list(result.weights.shape),
                           filters_shown=min(count, result.weights.shape[0]))
    if out:
        save_png(out, render.kernel_grid(result.weights, count), record)
    if raw:
        save_npy(raw, result.weights.float().cpu().numpy())


@technique_command(cli, "saliency")
@model_options
@image_options
@target_option
@click.option("--method", type=click.Choice(METHODS), default="vanilla",
              help="How gradients pass back through ReLUs: plain gradient, guided backprop, or deconvnet.")
@click.option("--out-color", "out_colors", multiple=True, type=click.Path(path_type=Path),
              help="PNG per image: the gradient min-max normalised over all channels, as RGB.")
@click.option("--out-gray", "out_grays", multiple=True, type=click.Path(path_type=Path),
              help="PNG per image: max |gradient| over channels, clipped at its 99th percentile.")
@click.option("--raw", "raws", multiple=True, type=click.Path(path_type=Path),
              help="Raw gradient per image (.npy, 3 x H x W float32, w.r.t. the normalised input).")
@capture_warnings
def saliency_command(images, out_colors, out_grays, raws, targets, method, size, batch_size, **common: Any) -> None:
    """Saliency: the gradient of the target class's logit with respect to the
    input image (seed gallery row 3)."""
    check_paired(len(images), "images", out_color=out_colors, out_gray=out_grays, raw=raws)
    session = open_session(**common)
    wanted = parse_targets(targets, len(images), session.model)
    progress = session.progress(len(images), f"saliency ({method})")
    done = 0
    for indices, batch in load_batches(images, size, batch_size):
        inputs = session.model.normalize(batch.to(session.device))
        result = saliency(session.model.module, inputs, _batch_targets(session, inputs, [wanted[i] for i in indices]), method)
        classes, probabilities = _targets_and_probabilities(result.logits, result.targets)
        gradients = result.gradients.cpu()
        for row, index in enumerate(indices):
            gradient = gradients[row]
            record = base_metadata(session, "saliency", method=method, image=str(images[index]),
                                   target=class_record(session.model, classes[row]),
                                   probability=probabilities[row])
            degenerate = False
            if out_colors:
                picture, degenerate = render.gradient_color(gradient)
                save_png(out_colors[index], picture, record | {"rendering": "color"})
            if out_grays:
                picture, degenerate = render.gradient_gray(gradient)
                save_png(out_grays[index], picture, record | {"rendering": "gray"})
            if raws:
                save_npy(raws[index], gradient.float().numpy())
            if degenerate or not bool(gradient.abs().amax() > 0):
                warn(f"{images[index]}: the {method} gradient is all zero; rendered black")
        done += len(indices)
        progress.update(done)


@technique_command(cli, "grad-cam")
@model_options
@image_options
@target_option
@click.option("--layer", default=None, metavar="PATH",
              help="Module path to explain at  [default: the last layer with spatial extent before global pooling, reported]")
@click.option("--colormap", default=render.DEFAULT_COLORMAP, help="Matplotlib colormap for the heatmaps.")
@click.option("--alpha", default=0.5, type=click.FloatRange(0, 1), help="Heatmap weight in the overlay.")
@click.option("--out-gray", "out_grays", multiple=True, type=click.Path(path_type=Path),
              help="PNG per image: the map, upsampled to the image, normalised to [0, 1].")
@click.option("--out-heatmap", "out_heatmaps", multiple=True, type=click.Path(path_type=Path),
              help="PNG per image: the map coloured with --colormap.")
@click.option("--out-overlay", "out_overlays", multiple=True, type=click.Path(path_type=Path),
              help="PNG per image: the coloured map over the image.")
@click.option("--raw", "raws", multiple=True, type=click.Path(path_type=Path),
              help="Raw map per image (.npy, h x w float32 at the layer's resolution, ReLU'd, not normalised).")
@capture_warnings
def grad_cam_command(images, out_grays, out_heatmaps, out_overlays, raws, targets, layer, colormap, alpha, size, batch_size,
                     **common: Any) -> None:
    """Grad-CAM (Selvaraju et al.): the layer's channels weighted by the mean
    gradient of the target class's logit, ReLU'd (seed gallery row 8)."""
    check_paired(len(images), "images", out_gray=out_grays, out_heatmap=out_heatmaps, out_overlay=out_overlays, raw=raws)
    problem = colormap_problem(colormap)
    if problem:
        raise click.BadParameter(problem, param_hint="--colormap")
    session = open_session(**common)
    wanted = parse_targets(targets, len(images), session.model)
    if layer is None:
        layer = default_cam_layer(session.model.module)
        if not session.quiet:
            click.echo(f"grad-cam: layer {layer} (chosen automatically)", err=True)
    progress = session.progress(len(images), f"grad-cam ({layer})")
    done = 0
    for indices, batch in load_batches(images, size, batch_size):
        inputs = session.model.normalize(batch.to(session.device))
        result = grad_cam(session.model.module, inputs, layer, _batch_targets(session, inputs, [wanted[i] for i in indices]))
        upsampled = upsample_cam(result.cams, tuple(batch.shape[-2:])).cpu()
        cams = result.cams.cpu() if raws else None
        classes, probabilities = _targets_and_probabilities(result.logits, result.targets)
        for row, index in enumerate(indices):
            record = base_metadata(session, "grad-cam", image=str(images[index]), layer=layer,
                                   target=class_record(session.model, classes[row]),
                                   probability=probabilities[row])
            map01, degenerate = render.normalize01(upsampled[row])
            if degenerate:
                warn(f"{images[index]}: the Grad-CAM map at {layer} is all zero; rendered black")
            if out_grays:
                save_png(out_grays[index], render.to_uint8(map01), record | {"rendering": "gray"})
            if out_heatmaps:
                save_png(out_heatmaps[index], render.heatmap(map01, colormap), record | {"rendering": "heatmap", "colormap": colormap})
            if out_overlays:
                save_png(out_overlays[index], render.overlay(batch[row], map01, alpha, colormap),
                         record | {"rendering": "overlay", "colormap": colormap, "alpha": alpha})
            if raws:
                save_npy(raws[index], cams[row].float().numpy())
        done += len(indices)
        progress.update(done)
