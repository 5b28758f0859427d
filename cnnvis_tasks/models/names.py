"""Names the configuration may use: models and colormaps.

Imports neither torch nor torchvision (nor matplotlib) when loaded, so that the
workflow can check its configuration cheaply: torchvision is imported only to
answer for a name other than the embedded model, matplotlib only for colormaps.
"""

from __future__ import annotations

import difflib

EMBEDDED_MODEL = "efficientnet_lite0"
DEFAULT_MODEL = EMBEDDED_MODEL
DEFAULT_COLORMAP = "jet"

# The torchvision models that run at one square input size only (ViT checks its input;
# MaxViT lays its attention windows out for it when built): that side as torchvision
# builds them, and where their standard weights need another, that one (the weights'
# min_size).  ``tests/test_transformers.py`` checks this table against the architectures.
_FIXED_SIDES = {"vit_b_16": 224, "vit_b_32": 224, "vit_l_16": 224, "vit_l_32": 224, "vit_h_14": 224, "maxvit_t": 224}
_FIXED_SIDES_PRETRAINED = {"vit_h_14": 518}


def torchvision_model_names() -> list[str]:
    """Every torchvision classification model name (imports torchvision)."""
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def known_models() -> list[str]:
    """All names ``--model`` accepts, the embedded default first."""
    return [EMBEDDED_MODEL] + torchvision_model_names()


def model_name_problem(name: str) -> str | None:
    """None for a known model name, else a one-line error with close matches.

    The embedded model is answered without importing torchvision.
    """
    if name == EMBEDDED_MODEL:
        return None
    known = known_models()
    if name in known:
        return None
    if _timm_knows(name):
        return f"unknown torchvision model {name!r}: it is a timm architecture; write timm:{name}"
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return f"unknown model {name!r}{hint} (list them with: cnnvis-tasks models)"


def _timm_knows(name: str) -> bool:
    """Whether timm has an architecture ``name`` (imports timm: only on the way to an error)."""
    try:
        import timm
    except ImportError:
        return False
    return bool(timm.is_model(name))


def fixed_input_size(name: str, weights: str = "default") -> int | None:
    """The side of the one square input model ``name`` with ``weights`` (default,
    random or a file) runs at; None when it takes any size.  Imports nothing."""
    if weights == "default" and name in _FIXED_SIDES_PRETRAINED:
        return _FIXED_SIDES_PRETRAINED[name]
    return _FIXED_SIDES.get(name)


def colormap_names() -> list[str]:
    """Colormap names accepted by :func:`cnnvis_tasks.render.heatmap` (matplotlib's registry)."""
    import matplotlib

    return sorted(matplotlib.colormaps)


def colormap_problem(name: str) -> str | None:
    """None for a known colormap, else a one-line error; the default is answered
    without importing matplotlib."""
    if name == DEFAULT_COLORMAP or name in colormap_names():
        return None
    return f"unknown colormap {name!r} (e.g. jet, viridis, inferno, turbo)"
