"""The map of an attribution method as the trust metrics rank it: one value per input
pixel, from the method's own result (the metrics, the complexity measures)."""

from __future__ import annotations

# Maps that add up to the change in the score (x times a gradient): a pixel's signed sum
# over channels is its contribution.  Other three-channel maps are gradients, whose sign
# alone says little: their largest |value| per pixel, as their gray pictures show them.
ADDITIVE = ("gradient-x-input", "integrated-gradients")


def channel_reduction(explained) -> str:
    """How the metrics make one value per pixel of a method's three-channel map
    (:func:`cnnvis_tasks.mechanisms.faithfulness.as_pixel_map`): ``sum`` or ``max_abs``."""
    options = explained.values()
    name = explained.technique.name
    if name == "smooth-grad":
        from cnnvis_tasks.techniques.smooth_grad import smoothed

        name = smoothed(options["method"]).technique.name
    if name in ADDITIVE:
        return "sum"
    return "max_abs"


def explained_maps(explained, model, images, targets, batch_size: int, seed: int):
    """The method's result on ``images`` for ``targets`` (None: top-1)."""
    options = {**explained.values(), "batch_size": batch_size, "seed": seed}
    options.pop("target", None)
    return explained.technique.compute(model, images, targets, **options)


def explained_pixel_maps(explained, model, images, targets, batch_size: int, seed: int):
    """The method's result on ``images`` for ``targets`` (None: top-1), its maps as one
    value per pixel at the input's size (:func:`channel_reduction`), and that reduction."""
    from cnnvis_tasks.mechanisms.faithfulness import as_pixel_map

    base = explained_maps(explained, model, images, targets, batch_size, seed)
    reduce = channel_reduction(explained)
    shown = base.display if base.display is not None else base.maps
    return base, as_pixel_map(shown, tuple(images.shape[-2:]), reduce), reduce
