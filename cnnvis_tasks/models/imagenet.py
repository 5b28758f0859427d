"""The 1000 ImageNet-1k class names, in class-index order (torchvision's list).

Read from ``data/imagenet_classes.txt`` (one name per line) so that the embedded
model gets its class names without importing torchvision;
tests/test_models.py checks it against torchvision.
"""

from importlib.resources import files

IMAGENET_CATEGORIES: tuple[str, ...] = tuple(
    (files("cnnvis_tasks") / "data" / "imagenet_classes.txt").read_text(encoding="utf-8").splitlines()
)
