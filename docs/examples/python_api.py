"""cnnvis from Python, notebook style: run it whole, or cell by cell (``# %%``) in an editor.

    python docs/examples/python_api.py [OUT_DIR]      # pictures go to OUT_DIR, else $OUT, else a temporary folder

A small torchvision ResNet-18 with random weights and five classes stands in for your
own model: any classifier ``nn.Module`` is called the same way.  See docs/python.md.
"""

# %% A model of your own: any nn.Module that returns class scores
import os
import sys
import tempfile
from pathlib import Path

import torch
import torchvision

import cnnvis_tasks as cv

torch.manual_seed(0)
CLASSES = ["astronaut", "cat", "coffee", "rocket", "other"]
module = torchvision.models.resnet18(num_classes=len(CLASSES))  # random weights: the maps show the mechanics only
model = cv.wrap_model(module, classes=CLASSES, name="resnet18-5")  # ImageNet mean and std by default
out = Path(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("OUT") or tempfile.mkdtemp(prefix="cnnvis-"))

# %% Images: paths, PIL images or tensors in [0, 1]
folder = Path(__file__).resolve().parents[2] / "images"  # the repository's sample images
paths = [folder / name for name in ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg")]
images = cv.load_images(paths, 128, crop=True)  # central squares, so that they share a batch
print("images", tuple(images.shape))

# %% Grad-CAM: each image's top-1 class, then one class by index and by name
cam = cv.compute("grad-cam", model, images)
print("grad-cam", tuple(cam.maps.shape), "at layer", cam.layer, "for classes", cam.targets.tolist())
cat = cv.compute("grad-cam", model, images, target=1, layer=module.layer4)  # a layer by its module
assert torch.equal(cat.maps, cv.compute("grad-cam", model, images, target="cat", layer="layer4").maps)
for row, path in enumerate(paths):
    cv.save_picture(cat, row, out / f"grad-cam-cat-{path.stem}.png", "overlay")

# %% Saliency: the gradient of the target logit with respect to the input
saliency = cv.compute("saliency", model, paths[1], target="cat", size=128)  # one path: read as the commands do
print("saliency", tuple(saliency.maps.shape), "probability of cat", round(float(saliency.probabilities[0]), 3))
cv.save_picture(saliency, 0, out / "saliency-cat.png")

# %% Integrated Gradients, one class per image (None: that image's top-1 class)
ig = cv.compute("integrated-gradients", model, images, target=[0, "cat", "coffee", None], steps=8)
print("integrated-gradients", tuple(ig.maps.shape), "classes", ig.targets.tolist())
picture = ig.picture(3, "gray")  # an H x W x 3 uint8 array, to show or save as you like
print("picture", picture.shape, picture.dtype)
for row, path in enumerate(paths):
    cv.save_picture(ig, row, out / f"integrated-gradients-{path.stem}.png")

print("pictures in", out)
