"""Every model source (torchvision, timm, transformers, the user's own function, TorchScript)
loads with its head sized from its checkpoint, its classes and its preprocessing, and
computes what the original module computes; every error is one line."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch
import torchvision
from click.testing import CliRunner
from conftest import CAT

from cnnvis_tasks.cli import cli
from cnnvis_tasks.errors import CnnvisError
from cnnvis_tasks.models.loading import load_model
from cnnvis_tasks.models.sources import IMAGENET_MEAN
from cnnvis_tasks.models.spec import ModelSpec, arch_source, spec_from_config

FLOWERS = ["daisy", "dandelion", "rose", "sunflower", "tulip"]
X = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def resnet5():
    """A resnet18 'fine-tuned' to five classes (seeded random weights), in eval mode."""
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=5).eval()


def _same_logits(loaded, module, x=X):
    with torch.inference_mode():
        assert torch.allclose(loaded.module(x), module(x), atol=1e-5)


@pytest.mark.parametrize(
    "form",
    ["bare", "tutorial", "lightning", "data_parallel", "safetensors"],
)
def test_a_fine_tuned_torchvision_head_of_any_size_loads_from_every_checkpoint_form(tmp_path, resnet5, form):
    state = resnet5.state_dict()
    path = tmp_path / "best.pt"
    if form == "bare":
        torch.save(state, path)
    elif form == "tutorial":
        torch.save({"epoch": 3, "model_state_dict": state, "optimizer_state_dict": {}, "loss": 0.1}, path)
    elif form == "lightning":
        torch.save({"state_dict": {f"model.{k}": v for k, v in state.items()}, "hyper_parameters": {}}, path)
    elif form == "data_parallel":
        torch.save({f"module.{k}": v for k, v in state.items()}, path)
    else:
        from safetensors.torch import save_file

        path = tmp_path / "best.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, path, metadata={"classes": json.dumps(FLOWERS)})
    loaded = load_model("resnet18", str(path))
    assert loaded.num_classes == 5 and loaded.module.fc.out_features == 5
    _same_logits(loaded, resnet5)
    expected = FLOWERS if form == "safetensors" else [f"class {i}" for i in range(5)]
    assert loaded.categories == expected  # safetensors metadata carries names
    assert loaded.mean == IMAGENET_MEAN and loaded.preprocessing["arch"] == "resnet18"


def test_class_names_come_from_a_file_the_folders_or_the_checkpoint(tmp_path, resnet5):
    path = tmp_path / "best.pt"
    torch.save({"model": resnet5.state_dict(), "class_to_idx": {n: i for i, n in enumerate(FLOWERS)}}, path)
    assert load_model("resnet18", str(path)).categories == FLOWERS
    names = tmp_path / "names.txt"
    names.write_text("\n".join(reversed(FLOWERS)) + "\n")
    assert load_model("resnet18", str(path), classes=str(names)).categories == list(reversed(FLOWERS))
    data = tmp_path / "data"
    for name in ("tulip", "Daisy", "rose", "dandelion", "sunflower"):
        (data / name).mkdir(parents=True)
    # ImageFolder's order: sorted() of the folder names, capitals first
    assert load_model("resnet18", str(path), classes=str(data)).categories == [
        "Daisy",
        "dandelion",
        "rose",
        "sunflower",
        "tulip",
    ]
    names.write_text("a\nb\nc\n")
    with pytest.raises(CnnvisError, match=r"3 class names \(.*names.txt\) but its head has 5 outputs") as info:
        load_model("resnet18", str(path), classes=str(names))
    assert "\n" not in str(info.value)


def test_random_weights_with_classes_build_a_head_of_that_size():
    loaded = load_model("resnet18", "random", classes=FLOWERS)
    assert loaded.module.fc.out_features == 5 and loaded.categories == FLOWERS


def test_mean_std_and_input_size_given_are_used_and_recorded():
    loaded = load_model("resnet18", "random", mean=[0.5, 0.4, 0.3], std="0.2,0.2,0.2", input_size=96)
    assert loaded.mean == (0.5, 0.4, 0.3) and loaded.std == (0.2, 0.2, 0.2) and loaded.input_size == 96
    assert loaded.preprocessing["mean"] == [0.5, 0.4, 0.3] and loaded.preprocessing["input_size"] == 96
    with pytest.raises(CnnvisError, match="three numbers"):
        load_model("resnet18", "random", mean=[0.5, 0.5])


def test_timm_architectures_with_their_pretrained_config_and_a_checkpoint(tmp_path):
    import timm

    loaded = load_model("timm:resnet18.a1_in1k", "random", classes=FLOWERS)
    assert loaded.num_classes == 5 and loaded.mean == IMAGENET_MEAN and loaded.input_size is None
    assert loaded.preprocessing["source_interpolation"] == "bicubic" and loaded.preprocessing["source_crop_pct"] == 0.95
    torch.manual_seed(1)
    original = timm.create_model("convnext_atto", pretrained=False, num_classes=3).eval()
    path = tmp_path / "checkpoint.pth.tar"  # timm's train script: the weights under 'state_dict'
    torch.save({"epoch": 9, "arch": "convnext_atto", "state_dict": original.state_dict()}, path)
    loaded = load_model("timm:convnext_atto", str(path))
    assert loaded.num_classes == 3
    _same_logits(loaded, original)
    vit = load_model("timm:vit_tiny_patch16_224", "random", classes=["a", "b"])
    assert vit.input_size == 224 and vit.mean == (0.5, 0.5, 0.5)  # a fixed size; its own normalisation
    with pytest.raises(CnnvisError, match="unknown timm model 'resnet1'.*did you mean"):
        load_model("timm:resnet1", "random")
    with pytest.raises(CnnvisError, match="give a weights file") as info:
        load_model("timm:resnet18", "default")  # no hub here
    assert "\n" not in str(info.value)


def test_a_transformers_folder_gives_logits_classes_and_its_processor_s_preprocessing(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=3,
        id2label={0: "cat", 1: "dog", 2: "fox"},
        label2id={"cat": 0, "dog": 1, "fox": 2},
    )
    torch.manual_seed(0)
    original = transformers.ViTForImageClassification(config).eval()
    original.save_pretrained(tmp_path / "vit")
    transformers.ViTImageProcessor(image_mean=[0.4, 0.5, 0.6], image_std=[0.3, 0.3, 0.3]).save_pretrained(
        tmp_path / "vit"
    )
    loaded = load_model(f"hf:{tmp_path / 'vit'}")
    assert loaded.categories == ["cat", "dog", "fox"] and loaded.input_size == 32
    assert loaded.mean == (0.4, 0.5, 0.6) and loaded.std == (0.3, 0.3, 0.3)
    x = torch.rand(2, 3, 32, 32)
    with torch.inference_mode():
        assert torch.allclose(loaded.module(x), original(pixel_values=x).logits, atol=1e-5)
    names = dict(loaded.module.named_modules())
    assert any(name.endswith("1.layernorm_before") and name.startswith("vit.") for name in names)  # HF's own names
    with pytest.raises(CnnvisError, match="not a transformers model folder"):
        load_model(f"hf:{tmp_path}")


def test_the_user_s_own_function_builds_the_model(tmp_path, monkeypatch):
    (tmp_path / "mynets").mkdir()
    (tmp_path / "mynets" / "__init__.py").write_text("")
    (tmp_path / "mynets" / "small.py").write_text(
        textwrap.dedent(
            """
            from torch import nn

            def build(classes=4, width=8):
                return nn.Sequential(
                    nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
                    nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, classes),
                )
            """
        )
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    torch.manual_seed(0)
    import importlib

    original = importlib.import_module("mynets.small").build(classes=3, width=6).eval()
    torch.save(original.state_dict(), tmp_path / "w.pt")
    loaded = load_model("module:mynets.small:build", "w.pt", arch_args='{"classes": 3, "width": 6}')
    _same_logits(loaded, original)
    assert loaded.categories == ["class 0", "class 1", "class 2"]
    with pytest.raises(CnnvisError, match=r"does not fit module:mynets.small:build: size mismatch for 0.weight"):
        load_model("module:mynets.small:build", "w.pt")  # width 8 by default
    with pytest.raises(CnnvisError, match="cannot import nope"):
        load_model("module:nope.mod:build", "random")
    with pytest.raises(CnnvisError, match="write module:package.module:function"):
        arch_source("module:no_function")


def test_torchscript_runs_what_needs_no_layer_and_refuses_the_rest_by_name(tmp_path, resnet5):
    path = tmp_path / "model.torchscript.pt"
    torch.jit.save(torch.jit.trace(resnet5, torch.zeros(1, 3, 64, 64)), path)
    loaded = load_model("torchscript", str(path), classes=FLOWERS)
    assert not loaded.has_module_tree and loaded.num_classes == 5
    _same_logits(loaded, resnet5)
    common = ["--model", "torchscript", "--weights", str(path), "--image", str(CAT), "--size", "64", "-q"]
    result = CliRunner().invoke(cli, ["saliency", *common, "--out-gray", str(tmp_path / "s.png")])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(cli, ["grad-cam", *common, "--out-gray", str(tmp_path / "g.png")])
    assert result.exit_code == 1
    assert result.output.strip() == (
        "Error: grad-cam cannot run on a TorchScript archive (torchscript): it reads a named layer's activations; "
        "load the model from its architecture and a state dict instead"
    )
    with pytest.raises(CnnvisError, match="arch: torchscript"):
        load_model("resnet18", str(path))


def test_a_pickled_model_loads_only_when_trusted(tmp_path, resnet5):
    path = tmp_path / "whole.pt"
    torch.save(resnet5, path)
    with pytest.raises(CnnvisError, match="trust_pickle: true.*model.state_dict") as info:
        load_model("resnet18", str(path))
    assert "\n" not in str(info.value)
    loaded = load_model("resnet18", str(path), trust_pickle=True)
    _same_logits(loaded, resnet5)


def test_config_entries_default_their_arch_to_their_name():
    assert spec_from_config("resnet18", {"weights": "default"}) == ModelSpec(name="resnet18", arch="resnet18")
    spec = spec_from_config("flowers", {"arch": "timm:convnext_atto", "classes": {"from": "folders"}}, "random")
    assert (spec.name, spec.source, spec.target, spec.weights) == ("flowers", "timm", "convnext_atto", "random")


def test_a_timm_name_without_its_prefix_says_how_to_write_it():
    with pytest.raises(CnnvisError, match="it is a timm architecture; write timm:convnext_atto"):
        load_model("convnext_atto", "random")
