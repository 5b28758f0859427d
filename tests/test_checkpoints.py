"""Checkpoint files in every form people bring, read back into the architecture they fit."""

from __future__ import annotations

import importlib
import json
import sys
import warnings
from collections import OrderedDict

import pytest
import torch
import torchvision
from safetensors.torch import save_file
from torch import nn

from cnnvis_tasks.errors import CnnvisError
from cnnvis_tasks.models.checkpoints import Checkpoint, fit_state_dict, head_size, read_checkpoint, tensor_shapes


def tiny() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5)).eval()


@pytest.fixture(scope="module")
def model() -> nn.Module:
    torch.manual_seed(0)
    return tiny()


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    torch.manual_seed(1)
    return torchvision.models.resnet18(weights=None, num_classes=5).eval()


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(2))


def prefixed(state: dict, prefix: str) -> OrderedDict:
    return OrderedDict((prefix + key, value) for key, value in state.items())


def assert_same_model(original: nn.Module, build, checkpoint: Checkpoint, x: torch.Tensor, run: bool = True) -> None:
    """The tensors equal the saved ones and a strictly loaded model computes what the original does."""
    expected = original.state_dict()
    state = fit_state_dict(checkpoint.state, expected.keys())
    assert sorted(state) == sorted(expected)
    for key, value in expected.items():
        assert torch.equal(state[key], value), key
    fresh = build().eval()
    fresh.load_state_dict(state, strict=True)
    if run:  # a resnet's forward is slow on a busy CPU: once is enough
        with torch.no_grad():
            assert torch.equal(fresh(x), original(x))


def one_line_error(path, **options) -> str:
    with pytest.raises(CnnvisError) as caught:
        read_checkpoint(path, **options)
    message = str(caught.value)
    assert "\n" not in message and "\x1b" not in message
    assert str(path) in message
    return message


# (name, how the file's object is made from the state dict, the form read_checkpoint reports)
FORMS = [
    ("bare", lambda sd: sd, "state dict"),
    ("state_dict", lambda sd: {"state_dict": sd, "epoch": 3}, "'state_dict' entry"),
    ("model", lambda sd: {"model": sd, "args": {"lr": 0.1}}, "'model' entry"),
    (
        "tutorial",
        lambda sd: {"epoch": 3, "model_state_dict": sd, "optimizer_state_dict": {"state": {}, "param_groups": []}},
        "'model_state_dict' entry",
    ),
    ("net", lambda sd: {"net": sd, "acc": 0.9}, "'net' entry"),
    ("network", lambda sd: {"network": sd}, "'network' entry"),
    ("ema only", lambda sd: {"state_dict_ema": sd, "epoch": 7}, "'state_dict_ema' entry"),
    (
        "lightning",
        lambda sd: {
            "epoch": 4,
            "global_step": 100,
            "pytorch-lightning_version": "2.4.0",
            "state_dict": prefixed(sd, "model."),
            "hyper_parameters": {"lr": 0.01},
        },
        "'state_dict' entry",
    ),
    ("dataparallel", lambda sd: prefixed(sd, "module."), "state dict"),
    ("compiled", lambda sd: prefixed(sd, "_orig_mod."), "state dict"),
    ("lightning over ddp", lambda sd: {"state_dict": prefixed(sd, "model.module.")}, "'state_dict' entry"),
    ("nested", lambda sd: {"model": {"state_dict": sd}}, "'model'/'state_dict' entry"),
]


@pytest.mark.parametrize(("make", "form"), [f[1:] for f in FORMS], ids=[f[0] for f in FORMS])
def test_each_torch_form_loads_the_same_model(tmp_path, model, x, make, form):
    path = tmp_path / "weights.pth"
    torch.save(make(model.state_dict()), path)
    checkpoint = read_checkpoint(path)
    assert checkpoint.form == form
    assert checkpoint.module is None and checkpoint.classes is None and checkpoint.path == path
    assert_same_model(model, tiny, checkpoint, x)


@pytest.mark.parametrize("suffix", [".pt", ".bin", ".ckpt", ".tar", ".weights"])
def test_any_suffix(tmp_path, model, x, suffix):
    path = tmp_path / f"weights{suffix}"
    torch.save({"state_dict": model.state_dict(), "arch": "tiny"}, path)
    assert_same_model(model, tiny, read_checkpoint(path), x)


def resnet18() -> nn.Module:
    return torchvision.models.resnet18(weights=None, num_classes=5)


def test_a_resnet_training_checkpoint(tmp_path, resnet, x):
    path = tmp_path / "model_best.pth.tar"
    torch.save(
        {"epoch": 9, "arch": "resnet18", "state_dict": resnet.state_dict(), "best_acc1": torch.tensor(0.9)}, path
    )
    checkpoint = read_checkpoint(path)
    assert checkpoint.form == "'state_dict' entry"
    assert_same_model(resnet, resnet18, checkpoint, x, run=False)
    assert head_size(checkpoint.state, ("fc.weight",)) == 5


def test_dataparallel_resnet(tmp_path, resnet, x):
    path = tmp_path / "dp.pth"
    torch.save(nn.DataParallel(resnet).state_dict(), path)
    checkpoint = read_checkpoint(path)
    assert next(iter(checkpoint.state)).startswith("module.")
    assert_same_model(resnet, resnet18, checkpoint, x)


def test_legacy_format_falls_back_from_mmap(tmp_path, model, x):
    path = tmp_path / "old.pth"
    torch.save(model.state_dict(), path, _use_new_zipfile_serialization=False)
    assert_same_model(model, tiny, read_checkpoint(path), x)


def test_the_trained_weights_come_before_the_ema(tmp_path, model):
    path = tmp_path / "timm.pth"
    ema = {key: value + 1 for key, value in model.state_dict().items()}
    torch.save({"state_dict_ema": ema, "state_dict": model.state_dict()}, path)
    checkpoint = read_checkpoint(path)
    assert checkpoint.form == "'state_dict' entry"
    assert torch.equal(checkpoint.state["3.weight"], model.state_dict()["3.weight"])


def test_non_tensor_values_in_a_state_dict_are_dropped(tmp_path, model, x):
    path = tmp_path / "meta.pth"
    state = OrderedDict(model.state_dict())
    state["_metadata_note"] = {"": {"version": 1}}
    torch.save({"state_dict": state}, path)
    checkpoint = read_checkpoint(path)
    assert "_metadata_note" not in checkpoint.state
    assert_same_model(model, tiny, checkpoint, x)


def test_safetensors_with_classes_in_its_metadata(tmp_path, resnet, x):
    path = tmp_path / "model.safetensors"
    classes = ["daisy", "dandelion", "rose", "sunflower", "tulip"]
    save_file(resnet.state_dict(), str(path), metadata={"classes": json.dumps(classes), "format": "pt"})
    checkpoint = read_checkpoint(path)
    assert checkpoint.form == "safetensors" and checkpoint.classes == classes
    assert_same_model(resnet, resnet18, checkpoint, x, run=False)
    shapes = tensor_shapes(path)
    assert shapes == {key: tuple(value.shape) for key, value in resnet.state_dict().items()}
    assert head_size(shapes, ("fc.weight",)) == 5


def test_safetensors_without_classes_and_under_another_name(tmp_path, model, x):
    path = tmp_path / "model.bin"  # a safetensors file by content, not by name
    save_file(prefixed(model.state_dict(), "module."), str(path), metadata={"classes": "not json"})
    checkpoint = read_checkpoint(path)
    assert checkpoint.form == "safetensors" and checkpoint.classes is None
    assert_same_model(model, tiny, checkpoint, x)


def script(module: nn.Module, path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(module), str(path))


def test_torchscript_archive(tmp_path, model, x):
    path = tmp_path / "scripted.pt"
    script(model, path)
    checkpoint = read_checkpoint(path, torchscript=True)
    assert checkpoint.form == "TorchScript archive" and checkpoint.state is None
    with torch.no_grad():
        assert torch.equal(checkpoint.module(x), model(x))
    assert tensor_shapes(path, torchscript=True)["3.weight"] == (5, 4)

    message = one_line_error(path)
    assert "TorchScript archive" in message and "arch: torchscript" in message and "--model torchscript" in message
    with pytest.raises(CnnvisError, match="TorchScript"):
        tensor_shapes(path)


def test_torchscript_option_on_a_state_dict(tmp_path, model):
    path = tmp_path / "plain.pt"
    torch.save(model.state_dict(), path)
    assert "not a TorchScript archive" in one_line_error(path, torchscript=True)
    safetensors_path = tmp_path / "plain.safetensors"
    save_file(model.state_dict(), str(safetensors_path))
    assert "not a TorchScript archive" in one_line_error(safetensors_path, torchscript=True)


def test_a_pickled_model_needs_trust(tmp_path, model, x):
    path = tmp_path / "whole.pt"
    torch.save(model, path)
    message = one_line_error(path)
    assert "pickled" in message and "run code" in message
    assert "trust_pickle: true" in message and "--trust-pickle" in message
    assert "torch.nn.modules.container.Sequential" in message
    assert message.endswith("torch.save(model.state_dict(), PATH)")  # whole, not cut off

    checkpoint = read_checkpoint(path, trust_pickle=True)
    assert checkpoint.form == "pickled model" and checkpoint.state is None
    with torch.no_grad():
        assert torch.equal(checkpoint.module(x), model(x))


def test_a_trusted_pickle_holding_a_model_and_its_classes(tmp_path, model, x):
    path = tmp_path / "bundle.pt"
    torch.save({"model": model, "classes": ["a", "b", "c", "d", "e"], "epoch": 2}, path)
    assert "pickled" in one_line_error(path)
    checkpoint = read_checkpoint(path, trust_pickle=True)
    assert checkpoint.module is not None and checkpoint.classes == ["a", "b", "c", "d", "e"]
    with torch.no_grad():
        assert torch.equal(checkpoint.module(x), model(x))


def test_trust_on_a_plain_state_dict_changes_nothing(tmp_path, model, x):
    path = tmp_path / "plain.pt"
    torch.save({"model_state_dict": model.state_dict()}, path)
    checkpoint = read_checkpoint(path, trust_pickle=True)
    assert checkpoint.form == "'model_state_dict' entry" and checkpoint.module is None
    assert_same_model(model, tiny, checkpoint, x)


def test_a_pickled_model_whose_class_is_gone(tmp_path, monkeypatch):
    (tmp_path / "gone_models_xyz.py").write_text(
        "import torch\nclass Net(torch.nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n        self.fc = torch.nn.Linear(2, 3)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "net.pt"
    torch.save(importlib.import_module("gone_models_xyz").Net(), path)
    monkeypatch.delitem(sys.modules, "gone_models_xyz")
    (tmp_path / "gone_models_xyz.py").unlink()
    message = one_line_error(path, trust_pickle=True)
    assert "cannot be found" in message and "gone_models_xyz" in message and "model.state_dict()" in message


@pytest.mark.parametrize(
    ("stored", "classes"),
    [
        ({"classes": ["x", "y"]}, ["x", "y"]),
        ({"class_names": ["x", "y"]}, ["x", "y"]),
        ({"labels": ["x", "y"]}, ["x", "y"]),
        ({"labels": torch.tensor([0, 1])}, None),  # targets, not names
        ({"class_to_idx": {"tulip": 1, "rose": 0}}, ["rose", "tulip"]),
        ({"idx_to_class": {1: "tulip", 0: "rose"}}, ["rose", "tulip"]),
        ({"idx_to_class": {"1": "tulip", "0": "rose"}}, ["rose", "tulip"]),
        ({"hyper_parameters": {"class_names": ["p", "q"]}}, ["p", "q"]),
    ],
)
def test_class_names_stored_in_the_checkpoint(tmp_path, model, stored, classes):
    path = tmp_path / "with_classes.pth"
    torch.save({"state_dict": model.state_dict(), **stored}, path)
    assert read_checkpoint(path).classes == classes


@pytest.mark.parametrize(
    ("stored", "says"),
    [
        ({"class_to_idx": {"rose": 0, "tulip": 2}}, "no class at index 1"),
        ({"idx_to_class": {0: "rose", "0": "tulip"}}, "index 0 to both 'rose' and 'tulip'"),
        ({"classes": ["rose", "rose"]}, "names class 'rose' twice"),
    ],
)
def test_broken_class_names_in_the_checkpoint(tmp_path, model, stored, says):
    path = tmp_path / "bad_classes.pth"
    torch.save({"state_dict": model.state_dict(), **stored}, path)
    message = one_line_error(path)
    assert says in message and "classes:" in message


def test_an_unknown_form_lists_its_keys(tmp_path):
    path = tmp_path / "odd.pth"
    torch.save({"epoch": 3, "weights_blob": [torch.zeros(2)], "notes": "hi"}, path)
    message = one_line_error(path)
    assert "keys: 'epoch', 'weights_blob', 'notes'" in message
    assert "'model_state_dict'" in message and "safetensors" in message and "accepted" in message

    many = tmp_path / "many.pth"
    torch.save({f"k{i}": i for i in range(14)}, many)
    message = one_line_error(many)
    assert "'k9' and 4 more" in message and "'k10'" not in message


def test_a_list_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(2)], path)
    assert "holds a list, not a state dict" in one_line_error(path)


def test_files_that_are_missing_or_broken(tmp_path, model):
    assert "not found" in one_line_error(tmp_path / "nowhere.pth")
    assert "is a folder" in one_line_error(tmp_path)

    whole = tmp_path / "whole.pth"
    torch.save(model.state_dict(), whole)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    assert "cut short" in one_line_error(truncated)

    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    assert "empty or cut short" in one_line_error(empty)

    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"this is not a checkpoint at all")
    assert "is not a PyTorch checkpoint, a safetensors file or a TorchScript archive" in one_line_error(junk)

    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    assert "cannot read weights file" in one_line_error(broken)
    with pytest.raises(CnnvisError, match="cannot read weights file"):
        tensor_shapes(broken)


def test_fit_never_strips_a_real_child_named_model():
    class Wrapper(nn.Module):  # as an HF model whose top-level child is 'model'
        def __init__(self):
            super().__init__()
            self.model = tiny()

    expected = Wrapper().state_dict().keys()
    state = {key: torch.zeros(1) for key in expected}
    assert list(fit_state_dict(state, expected)) == list(expected)
    # saved from DataParallel around it: only 'module.' goes
    assert list(fit_state_dict(prefixed(state, "module."), expected)) == list(expected)


def test_fit_keeps_what_fits_nothing_and_renames_densenet_keys():
    expected = ["features.denseblock1.denselayer1.norm1.weight", "features.denseblock1.denselayer1.conv2.weight"]
    state = {
        "module.features.denseblock1.denselayer1.norm.1.weight": 1,
        "module.features.denseblock1.denselayer1.conv.2.weight": 2,
        "module.extra.head": 3,
    }
    assert fit_state_dict(state, expected) == {
        "features.denseblock1.denselayer1.norm1.weight": 1,
        "features.denseblock1.denselayer1.conv2.weight": 2,
        "extra.head": 3,
    }
    # a model whose own keys are the old-looking ones keeps them
    own = ["denselayer1.norm.1.weight"]
    assert fit_state_dict({"denselayer1.norm.1.weight": 1}, own) == {"denselayer1.norm.1.weight": 1}
    # stripping fits no better: the keys stay as saved
    assert fit_state_dict({"model.foo": 1, "module.bar": 2}, ["baz"]) == {"model.foo": 1, "module.bar": 2}
    # nothing to strip or rename: the same keys in the same order
    assert list(fit_state_dict({"b": 1, "a": 2}, ["a"])) == ["b", "a"]


def test_head_size():
    state = {"fc.bias": torch.zeros(5), "fc.weight": torch.zeros(5, 4), "head.weight": torch.zeros(7, 4)}
    assert head_size(state, ("fc.weight",)) == 5
    assert head_size(state, ("classifier.weight", "head.weight", "fc.weight")) == 7
    assert head_size(state, ("fc.bias",)) is None  # 1-D: not a head's weight
    assert head_size(state, ("classifier.weight",)) is None
    assert head_size({"classifier.1.weight": (10, 512, 1, 1)}, ("classifier.1.weight",)) == 10
    assert head_size({"conv.weight": (8, 3, 3, 3)}, ("conv.weight",)) is None


def test_tensor_shapes_of_a_torch_file(tmp_path, model):
    path = tmp_path / "lightning.ckpt"
    torch.save({"state_dict": prefixed(model.state_dict(), "model."), "epoch": 1}, path)
    shapes = tensor_shapes(path)
    assert shapes == {
        "model.0.weight": (4, 3, 3, 3),
        "model.0.bias": (4,),
        "model.3.weight": (5, 4),
        "model.3.bias": (5,),
    }
    assert head_size(fit_state_dict(shapes, model.state_dict().keys()), ("3.weight",)) == 5
    whole = tmp_path / "whole.pt"
    torch.save(model, whole)
    with pytest.raises(CnnvisError, match="trust_pickle"):
        tensor_shapes(whole)
    assert tensor_shapes(whole, trust_pickle=True)["3.weight"] == (5, 4)
