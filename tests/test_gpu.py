"""Every technique on CUDA agrees with the CPU.  Skipped where there is no GPU.

Run on a GPU machine with ``scripts/gpu-check``.  TF32 is off (as the CLI sets
it); other convolution algorithms still round differently, so maps are compared
by correlation (> 0.999) and by the largest difference relative to the map's
range (< 2 %).
"""

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import CAT, IMAGES

from cnnvis_tasks.cli import cli
from cnnvis_tasks.io.images import load_image
from cnnvis_tasks.io.outputs import read_metadata
from cnnvis_tasks.mechanisms import ascent
from cnnvis_tasks.mechanisms.capture import feature_maps
from cnnvis_tasks.mechanisms.relu_rules import saliency
from cnnvis_tasks.models.loading import load_model
from cnnvis_tasks.run.devices import use_full_precision
from cnnvis_tasks.techniques.grad_cam import grad_cam

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine"),
]


def _agree(cpu: torch.Tensor, gpu: torch.Tensor) -> None:
    cpu, gpu = cpu.double().flatten(), gpu.double().cpu().flatten()
    correlation = torch.corrcoef(torch.stack([cpu, gpu]))[0, 1]
    spread = float(cpu.max() - cpu.min()) or 1.0
    assert correlation > 0.999, f"correlation {float(correlation):.5f}"
    assert float((cpu - gpu).abs().max()) / spread < 0.02


@pytest.fixture(scope="module")
def models():
    use_full_precision(torch.device("cuda"))  # as the CLI does
    return load_model("efficientnet_lite0", device="cpu"), load_model("efficientnet_lite0", device="cuda")


@pytest.fixture(scope="module")
def images():
    return torch.stack([load_image(CAT, 224)[..., :224], load_image(IMAGES / "coffee.png", 224)[..., :224]])


@pytest.mark.parametrize("method", ["vanilla", "guided", "deconv"])
def test_saliency_agrees(models, images, method):
    cpu, gpu = models
    a = saliency(cpu.module, cpu.normalize(images), method=method)
    b = saliency(gpu.module, gpu.normalize(images.cuda()), method=method)
    assert b.gradients.is_cuda and torch.equal(a.targets, b.targets.cpu())
    _agree(a.gradients, b.gradients)


def test_grad_cam_and_feature_maps_agree(models, images):
    cpu, gpu = models
    a = grad_cam(cpu.module, cpu.normalize(images), "_swish")
    b = grad_cam(gpu.module, gpu.normalize(images.cuda()), "_swish")
    assert b.cams.is_cuda
    _agree(a.cams, b.cams)
    fa = feature_maps(cpu.module, cpu.normalize(images), ["_blocks.3", "_conv_head"])
    fb = feature_maps(gpu.module, gpu.normalize(images.cuda()), ["_blocks.3", "_conv_head"])
    for layer in fa:
        _agree(fa[layer], fb[layer])


def test_no_synchronisation_in_a_pass(models, images):
    """PyTorch's sync debug mode in 'error' raises at every call through which PyTorch
    makes the host wait for the GPU (a blocking copy, ``.item()``, ...).  It cannot
    see a wait inside the CUDA driver (a non-blocking copy from pageable memory);
    tests/test_device_traffic.py checks on the meta device that no copy to the
    device happens once the forward is queued."""
    _, gpu = models
    x = gpu.normalize(images.cuda())
    torch.cuda.synchronize()
    try:
        for run in (
            lambda: grad_cam(gpu.module, x, "_bn1", [281, 967]).cams,
            lambda: saliency(gpu.module, x, [281, 967], "guided").gradients,
            lambda: saliency(gpu.module, x, None, "vanilla").gradients,
        ):
            torch.cuda.set_sync_debug_mode("error")
            out = run()
            torch.cuda.set_sync_debug_mode("default")
            assert out.is_cuda
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_ascent_runs_on_the_gpu(models):
    _, gpu = models
    result = ascent.class_visualization(
        gpu.module, [963], ["l2"], [0.01], mean=gpu.mean, std=gpu.std, height=128, width=128, steps=30, lr=0.05
    )
    assert result.images.is_cuda and float(result.probabilities[0]) > 0.5
    dream = ascent.deep_dream(
        gpu.module,
        load_image(CAT, 128)[None].cuda(),
        "_blocks.8",
        None,
        mean=gpu.mean,
        std=gpu.std,
        octaves=3,
        octave_scale=1.4,
        steps_per_octave=5,
        lr=0.01,
    )
    assert dream.images.is_cuda and float(dream.objective_end[0]) > float(dream.objective_start[0])


def test_cli_on_cuda(tmp_path):
    result = CliRunner().invoke(
        cli,
        [
            "grad-cam",
            "--device",
            "cuda",
            "--image",
            str(CAT),
            "--out-overlay",
            str(tmp_path / "o.png"),
            "--raw",
            str(tmp_path / "o.npy"),
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    assert read_metadata(tmp_path / "o.png")["technique"] == "grad-cam"
    assert np.load(tmp_path / "o.npy").max() > 0


def test_plain_cuda_claims_one_of_the_visible_gpus(tmp_path, monkeypatch):
    from cnnvis_tasks.run import gpu_claim

    monkeypatch.setenv("CNNVIS_GPU_LOCKS", str(tmp_path))
    monkeypatch.setattr(gpu_claim, "_THIS_JOB", {})
    count = torch.cuda.device_count()
    device = gpu_claim.spread_over_gpus(torch.device("cuda"), quiet=True)
    try:
        if count == 1:  # nothing to spread over: no claim
            assert device == torch.device("cuda") and not list(tmp_path.iterdir())
        else:
            assert device.index == 0 and torch.cuda.current_device() == 0  # the first free one
            names = gpu_claim._gpu_names(count)
            assert len(set(names)) == count and (tmp_path / f"gpu-{names[0]}.lock").is_file()
    finally:
        for path in [path for path in gpu_claim._HELD if path.is_relative_to(tmp_path)]:
            gpu_claim._HELD.pop(path).close()
