"""Every CAM of ours against pytorch-grad-cam on seeded torchvision models.

Where they are compared: pytorch-grad-cam's ``__call__`` min-max scales each map
and resizes it with OpenCV.  The comparison is one step before, at the map its
``get_cam_image`` gives for the layer (the activations and gradients its own hooks
recorded in its own forward and backward), ReLU'd as its ``compute_cam_per_layer``
does: the same quantity as our map at the layer's resolution, unscaled.  "Equal"
is a largest difference of at most 1e-5 of the reference's largest value.

Where pytorch-grad-cam is wrong, a test shows it and shows ours right:

* a layer whose output an in-place op changes afterwards (VGG16 ``features.28``,
  a conv before ``ReLU(inplace=True)``; DenseNet121 ``features.norm5``, before the
  functional ``F.relu(inplace=True)`` of its forward): its hook keeps the tensor
  itself, so it reads the activations after the ReLU;
* a module called several times (ResNet50 ``layer4.2.relu``, three calls per
  block): it uses the first call, we use the last (the block's output);
* guided backpropagation through a functional ReLU (DenseNet121's last one): its
  guided model swaps ``nn.ReLU`` modules only, and that ReLU keeps its plain
  gradient.

In each case ours equals pytorch-grad-cam run on a rewrite of the model in which
the problem is gone (no in-place ReLU, a module ReLU).  Eigen-CAM's principal axis
has no sign of its own: pytorch-grad-cam keeps the one LAPACK returns; ours takes
the one whose components sum to >= 0, so each image's map equals the reference's
or the reference's with the axis flipped.
"""

import copy

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

pytest.importorskip("pytorch_grad_cam")

import cv2  # noqa: E402 (pytorch-grad-cam's own dependency)
from pytorch_grad_cam import (  # noqa: E402
    EigenCAM,
    GradCAM,
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    ScoreCAM,
    XGradCAM,
)
from pytorch_grad_cam.guided_backprop import GuidedBackpropReLUModel  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection  # noqa: E402

from cnnvis_tasks.mechanisms.cam import class_activation_map, upsample_cam, weighted_cam  # noqa: E402
from cnnvis_tasks.mechanisms.capture import feature_maps  # noqa: E402
from cnnvis_tasks.mechanisms.relu_rules import saliency  # noqa: E402
from cnnvis_tasks.mechanisms.score_cam import score_cam  # noqa: E402
from cnnvis_tasks.techniques.eigen_cam import eigen_cam_map  # noqa: E402
from cnnvis_tasks.techniques.grad_cam import gradcam_weights  # noqa: E402
from cnnvis_tasks.techniques.grad_cam_plus_plus import gradcam_plus_plus_weights  # noqa: E402
from cnnvis_tasks.techniques.guided_grad_cam import guided_grad_cam  # noqa: E402
from cnnvis_tasks.techniques.hires_cam import hires_cam_weights  # noqa: E402
from cnnvis_tasks.techniques.layer_cam import layer_cam_weights  # noqa: E402
from cnnvis_tasks.techniques.xgrad_cam import xgrad_cam_weights  # noqa: E402

SIZE = 64
# Our automatic layer, or (DenseNet121) the one before it, which pytorch-grad-cam reads right.
LAYERS = {"vgg16": "features.29", "resnet50": "layer4.2", "densenet121": "features.denseblock4"}
# A layer of 64 channels, for Score-CAM's one forward per channel.
SMALL_LAYERS = {"vgg16": "features.4", "resnet50": "maxpool", "densenet121": "features.pool0"}
GRADIENT_CAMS = {
    "grad-cam": (gradcam_weights, GradCAM),
    "grad-cam-plus-plus": (gradcam_plus_plus_weights, GradCAMPlusPlus),
    "xgrad-cam": (xgrad_cam_weights, XGradCAM),
    "hires-cam": (hires_cam_weights, HiResCAM),
    "layer-cam": (layer_cam_weights, LayerCAM),
}


@pytest.fixture(scope="module")
def nets():
    built = {}
    for name in LAYERS:
        torch.manual_seed(0)
        built[name] = getattr(torchvision.models, name)(weights=None).eval()
    return built


def inputs(n=2, size=SIZE):
    torch.manual_seed(1)
    return torch.randn(n, 3, size, size)


def top1(model, x):
    with torch.no_grad():
        return model(x).argmax(dim=1)


def reference_cam(cam_class, model, layer, x, targets):
    """pytorch-grad-cam's map at ``layer`` before its scaling and resizing: its forward
    and backward as its ``forward`` runs them, then its ``get_cam_image``, ReLU'd."""
    return reference_cams({"one": cam_class}, model, layer, x, targets)["one"]


def reference_cams(cam_classes, model, layer, x, targets):
    """``reference_cam`` for several classes of CAM from one forward and backward (run by
    the first class's hooks); each class's own ``get_cam_image`` makes its map."""
    module = model.get_submodule(layer)
    methods = {name: cam_class(model=model, target_layers=[module]) for name, cam_class in cam_classes.items()}
    first = next(iter(methods.values()))
    for method in list(methods.values())[1:]:
        method.activations_and_grads.release()
    try:
        outputs = first.activations_and_grads(x)
        wanted = [ClassifierOutputTarget(int(t)) for t in targets]
        if first.uses_gradients:
            model.zero_grad()
            sum(target(output) for target, output in zip(wanted, outputs)).backward(retain_graph=True)
        recorded = first.activations_and_grads
        activations = recorded.activations[0].numpy()
        gradients = recorded.gradients[0].numpy() if recorded.gradients else None
        return {
            name: np.maximum(method.get_cam_image(x, module, wanted, activations, gradients, False), 0)
            for name, method in methods.items()
        }
    finally:
        first.activations_and_grads.release()


def reference_guided(model, x, targets):
    """pytorch-grad-cam's guided backpropagation, one image at a time (it reads image 0
    only), on a copy (it swaps the model's ReLUs for new, not in-place, ones)."""
    guided = GuidedBackpropReLUModel(copy.deepcopy(model), device="cpu")
    return np.stack([guided(x[i : i + 1].clone(), int(targets[i])).transpose(2, 0, 1) for i in range(len(x))])


def relative_difference(ours, reference):
    ours, reference = np.asarray(ours, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    assert ours.shape == reference.shape and np.abs(reference).max() > 0
    return np.abs(ours - reference).max() / np.abs(reference).max()


def assert_equal(ours, reference, tolerance=1e-5):
    assert relative_difference(ours, reference) <= tolerance


def without_inplace_relus(model):
    rewritten = copy.deepcopy(model)
    for module in rewritten.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False
    return rewritten


def densenet_with_a_relu_module(densenet):
    """DenseNet121's forward (features, F.relu, pooling, classifier) with the ReLU a module."""
    return nn.Sequential(
        densenet.features, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), densenet.classifier
    ).eval()


@pytest.mark.parametrize("name", LAYERS)
def test_gradient_cams_equal_pytorch_grad_cam(nets, name):
    model, x, layer = nets[name], inputs(), LAYERS[name]
    targets = top1(model, x)
    recorded = {}

    def recording(activations, gradients):  # Grad-CAM's weights; keeps what they came from
        recorded.update(activations=activations, gradients=gradients)
        return gradcam_weights(activations, gradients)

    ours = {"grad-cam": class_activation_map(model, x, layer, targets, recording).cams}
    for method, (weighting, _) in GRADIENT_CAMS.items():
        if method != "grad-cam":
            ours[method] = weighted_cam(recorded["activations"], recorded["gradients"], weighting)
    references = reference_cams(
        {method: classes for method, (_, classes) in GRADIENT_CAMS.items()}, model, layer, x, targets
    )
    for method in GRADIENT_CAMS:
        assert_equal(ours[method], references[method])


@pytest.mark.parametrize("name", LAYERS)
def test_eigen_cam_equals_pytorch_grad_cam_up_to_the_axis_sign(nets, name):
    model, x, layer = nets[name], inputs(), LAYERS[name]
    activations = feature_maps(model, x, [layer])[layer]
    ours = eigen_cam_map(activations).numpy()
    projection = get_2d_projection(activations.numpy())  # the reference's map before its ReLU
    torch.testing.assert_close(
        torch.from_numpy(reference_cam(EigenCAM, model, layer, x, [0, 0])), torch.from_numpy(projection).relu()
    )
    for n in range(len(x)):
        assert min(relative_difference(ours[n], np.maximum(sign * projection[n], 0)) for sign in (1, -1)) <= 1e-5


@pytest.mark.parametrize(
    "name", [pytest.param(name, marks=[pytest.mark.slow] if name == "densenet121" else []) for name in LAYERS]
)
def test_score_cam_equals_pytorch_grad_cam(nets, name):
    """At a 64-channel layer, two 32 x 32 images (DenseNet121: slow)."""
    model, x, layer = nets[name], inputs(2, 32), SMALL_LAYERS[name]
    targets = top1(model, x)
    ours = score_cam(model, x, layer, targets, batch_size=32).cams
    assert_equal(ours, reference_cam(ScoreCAM, model, layer, x, targets))


@pytest.mark.slow
@pytest.mark.parametrize("name", LAYERS)
def test_score_cam_equals_pytorch_grad_cam_at_the_last_layer(nets, name):
    model, x, layer = nets[name], inputs(1, SIZE), LAYERS[name]
    targets = top1(model, x)
    ours = score_cam(model, x, layer, targets, batch_size=64).cams
    assert_equal(ours, reference_cam(ScoreCAM, model, layer, x, targets))


@pytest.mark.parametrize("name", ["vgg16", "resnet50"])
def test_guided_grad_cam_equals_pytorch_grad_cam(nets, name):
    """Its guided backpropagation times its Grad-CAM upsampled (bilinear, pixel centres
    aligned), as its example script multiplies them.  Its guided backpropagation takes
    one image per call, so ours does here too (a batch's float rounding differs, by up
    to 4e-5 of the largest value in ResNet50's input gradient).  Its ``scale_cam_image``
    resizes with OpenCV, whose bilinear weights are rounded: within 1e-4 of torch's."""
    model, x, layer = nets[name], inputs(), LAYERS[name]
    targets = top1(model, x)
    ours = torch.cat([guided_grad_cam(model, x[i : i + 1], layer, targets[i : i + 1])[0] for i in range(len(x))])
    cams = reference_cam(GradCAM, model, layer, x, targets)
    guided = reference_guided(model, x, targets)
    assert_equal(ours, guided * upsample_cam(torch.from_numpy(cams), (SIZE, SIZE))[:, None].numpy())
    resized = np.stack([cv2.resize(cam, (SIZE, SIZE)) for cam in cams])
    assert relative_difference(ours, guided * resized[:, None]) <= 1e-4


def test_an_inplace_relu_after_the_layer_misleads_pytorch_grad_cam(nets):
    model, x, layer = nets["vgg16"], inputs(), "features.28"  # the last conv, then ReLU(inplace=True)
    targets = top1(model, x)
    ours = class_activation_map(model, x, layer, targets, gradcam_weights).cams
    assert relative_difference(ours, reference_cam(GradCAM, model, layer, x, targets)) > 1e-2
    assert_equal(ours, reference_cam(GradCAM, without_inplace_relus(model), layer, x, targets))


def test_a_functional_inplace_relu_after_the_layer_misleads_pytorch_grad_cam(nets):
    model, x = nets["densenet121"], inputs()
    targets = top1(model, x)
    ours = class_activation_map(model, x, "features.norm5", targets, gradcam_weights).cams  # our automatic layer
    assert relative_difference(ours, reference_cam(GradCAM, model, "features.norm5", x, targets)) > 1e-2
    assert_equal(ours, reference_cam(GradCAM, densenet_with_a_relu_module(model), "0.norm5", x, targets))


def test_a_module_called_three_times_is_read_at_its_first_call_by_pytorch_grad_cam(nets):
    """``layer4.2.relu`` ends the block: its last call's output is the block's output."""
    model, x = nets["resnet50"], inputs()
    targets = top1(model, x)
    ours = class_activation_map(model, x, "layer4.2.relu", targets, gradcam_weights).cams
    block = reference_cam(GradCAM, model, "layer4.2", x, targets)
    assert_equal(ours, block)
    assert relative_difference(reference_cam(GradCAM, model, "layer4.2.relu", x, targets), block) > 1e-2


def test_a_functional_relu_keeps_its_plain_gradient_in_pytorch_grad_cams_guided_backpropagation(nets):
    model, x = nets["densenet121"], inputs()
    targets = top1(model, x)
    ours = torch.cat([saliency(model, x[i : i + 1], targets[i : i + 1], "guided").gradients for i in range(len(x))])
    assert relative_difference(ours, reference_guided(model, x, targets)) > 1e-2
    assert_equal(ours, reference_guided(densenet_with_a_relu_module(model), x, targets))
