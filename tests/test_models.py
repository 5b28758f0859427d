import time

import pytest
import torch
import torchvision
from conftest import CAT

from cnnvis_tasks.errors import CnnvisError
from cnnvis_tasks.io.images import load_image
from cnnvis_tasks.models.loading import load_model
from cnnvis_tasks.models.names import EMBEDDED_MODEL, known_models
from cnnvis_tasks.models.standard_weights import cached_weights_path, fetch_weights


def test_embedded_model_sees_a_cat(embedded_model):
    assert embedded_model.mean == embedded_model.std == (0.5, 0.5, 0.5)
    image = load_image(CAT, 224)[None]
    with torch.inference_mode():
        probabilities = embedded_model.module(embedded_model.normalize(image)).softmax(-1)[0]
    top = int(probabilities.argmax())
    assert embedded_model.class_name(top) in {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}
    cats = probabilities[281:286].sum()  # ImageNet's domestic cats
    assert cats > 0.6
    assert not any(p.requires_grad for p in embedded_model.module.parameters())
    assert not embedded_model.module.training


def test_known_models_are_every_torchvision_classifier():
    names = known_models()
    assert names[0] == EMBEDDED_MODEL
    assert set(torchvision.models.list_models(module=torchvision.models)) <= set(names)
    assert "vgg16" in names and "fasterrcnn_resnet50_fpn" not in names


def test_unknown_model_suggests_close_names():
    with pytest.raises(CnnvisError, match="did you mean resnet50"):
        load_model("resnet5O")


def test_random_weights_are_seeded():
    a = load_model("resnet18", "random", seed=3).module.state_dict()
    b = load_model("resnet18", "random", seed=3).module.state_dict()
    c = load_model("resnet18", "random", seed=4).module.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["conv1.weight"], c["conv1.weight"])


def test_weights_file_round_trip_and_dataparallel_prefix(tmp_path):
    source = load_model("resnet18", "random", seed=1)
    plain = tmp_path / "r18.pth"
    torch.save(source.module.state_dict(), plain)
    wrapped = tmp_path / "wrapped.pt"
    torch.save({"state_dict": {"module." + k: v for k, v in source.module.state_dict().items()}}, wrapped)
    x = torch.randn(1, 3, 64, 64)
    expected = source.module(x)
    for path in (plain, wrapped):
        loaded = load_model("resnet18", str(path))
        assert loaded.weights == str(path)
        assert not any(t.is_meta for t in loaded.module.state_dict().values())
        assert torch.allclose(loaded.module(x), expected)


def test_mismatched_weights_file_is_a_clear_error(tmp_path):
    path = tmp_path / "alex.pth"
    torch.save(load_model("alexnet", "random").module.state_dict(), path)
    with pytest.raises(CnnvisError) as info:
        load_model("resnet18", str(path))
    message = str(info.value)
    assert "does not fit resnet18" in message and "alex.pth" in message
    assert "missing conv1.weight" in message and "unexpected features.0.weight" in message
    assert "\n" not in message


class Evil:
    """Any class: loading it would mean unpickling arbitrary objects."""


def test_weights_file_never_unpickles_objects(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"conv1.weight": Evil()}, path)
    with pytest.raises(CnnvisError, match="holds a pickled Python object.*trust_pickle: true") as info:
        load_model("resnet18", str(path))
    assert "\n" not in str(info.value) and "model.state_dict()" in str(info.value)


@pytest.mark.parametrize("weights,match", [("nope.pth", "neither 'default', 'random' nor an existing file")])
def test_bad_weights_argument(weights, match):
    with pytest.raises(CnnvisError, match=match):
        load_model("resnet18", weights)


def test_default_weights_offline_say_where_to_put_the_file(_private_torch_home):
    with pytest.raises(CnnvisError) as info:
        load_model("vgg16")
    expected = _private_torch_home / "hub" / "checkpoints" / "vgg16-397923af.pth"
    assert str(expected) in str(info.value) and "vgg16-397923af.pth" in str(info.value)


def test_default_weights_from_the_hub_cache_load_fast_and_exactly(_private_torch_home):
    torch.manual_seed(0)
    reference = torchvision.models.vgg16().eval()
    path = cached_weights_path("vgg16")
    path.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), path)
    started = time.perf_counter()
    loaded = load_model("vgg16")
    elapsed = time.perf_counter() - started
    assert loaded.mean == (0.485, 0.456, 0.406) and loaded.categories[263] == "Pembroke"
    x = torch.randn(1, 3, 64, 64)
    assert torch.allclose(loaded.module(x), reference(x), atol=1e-5)
    assert elapsed < 1.5, f"loading VGG16 took {elapsed:.2f}s: random initialisation not skipped?"
    assert fetch_weights("vgg16") == (path, False)  # cached: nothing to do


def test_old_densenet_checkpoint_keys_are_renamed(_private_torch_home):
    torch.manual_seed(0)
    reference = torchvision.models.densenet121().eval()
    old_style = {}
    for key, value in reference.state_dict().items():
        for part in ("norm", "relu", "conv"):
            for number in ("1", "2"):
                key = key.replace(f".{part}{number}.", f".{part}.{number}.")
        old_style[key] = value
    assert any(".norm.1." in key for key in old_style)
    path = cached_weights_path("densenet121")
    path.parent.mkdir(parents=True)
    torch.save(old_style, path)
    x = torch.randn(1, 3, 64, 64)
    assert torch.allclose(load_model("densenet121").module(x), reference(x), atol=1e-5)


def test_fetch_weights_offline_fails_clearly():
    with pytest.raises(CnnvisError, match="resnet18-f37072fd.pth"):
        fetch_weights("resnet18")
    path, downloaded = fetch_weights(EMBEDDED_MODEL)
    assert path.is_file() and not downloaded


def test_imagenet_categories_are_torchvisions():
    from cnnvis_tasks.models.imagenet import IMAGENET_CATEGORIES

    assert list(IMAGENET_CATEGORIES) == torchvision.models.ResNet50_Weights.DEFAULT.meta["categories"]
