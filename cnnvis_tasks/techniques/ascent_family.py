"""What the gradient-ascent techniques share (class-viz, filter-viz, deep dream):
their optimisation options, their one rendering, and their recorded figures."""

from __future__ import annotations

from typing import Any

from cnnvis_tasks.technique import (
    BOOL,
    COMMAND_ONLY,
    FLOAT,
    INT,
    Cost,
    Option,
    Rendered,
    Rendering,
    Result,
    option_passes,
)

PLAIN_STEPS, PLAIN_LR = 200, 0.1  # the reference gallery's settings
# Robust mode: the Fourier parameters move the image more per unit step, so a smaller
# learning rate with a few more steps (as in Olah et al.) gives smoother pictures.
ROBUST_STEPS, ROBUST_LR = 256, 0.05

PICTURE = Rendering("picture", "PNG of the resulting image.")
RAW_IMAGE = "Raw image per row (.npy, 3 x H x W float32 in [0, 1])."

# what one synthesis costs the scheduler: a forward and a backward per step
ASCENT_COST = Cost(passes=option_passes("steps", unset=ROBUST_STEPS))
WIDTH = Option(
    "width", INT, 224, "Width of the synthesised image (a model of fixed input size, a ViT: its own).", minimum=8
)
HEIGHT = Option(
    "height", INT, 224, "Height of the synthesised image (a model of fixed input size, a ViT: its own).", minimum=8
)
STEPS = Option(
    "steps",
    INT,
    None,
    "Optimisation steps.",
    minimum=1,
    nullable=True,
    default_text=f"{ROBUST_STEPS} robust, {PLAIN_STEPS} plain",
)
LR = Option(
    "lr",
    FLOAT,
    None,
    "Adam learning rate.",
    above=0,
    nullable=True,
    default_text=f"{ROBUST_LR} robust, {PLAIN_LR} plain",
)
ROBUST = Option(
    "robust",
    BOOL,
    True,
    "Robust: decorrelated Fourier image and random jitter/scale/rotation each step "
    "(recognisable pictures); plain: the reference gallery's pixel-space Adam from a random start.",
    negative="plain",
)
BATCH_SIZE = Option("batch_size", INT, 16, "Images optimised together.", minimum=1, affects_results=False)
SAVE_EVERY = Option(
    "save_every",
    INT,
    0,
    "Also write a snapshot every K steps as the picture's name + '.stepNNNN.png' (0: none).",
    minimum=0,
    where=COMMAND_ONLY,
)


def steps_and_lr(steps: int | None, lr: float | None, robust: bool) -> tuple[int, float]:
    """The steps and learning rate a run uses when left at their defaults (None)."""
    if steps is None:
        steps = ROBUST_STEPS if robust else PLAIN_STEPS
    if lr is None:
        lr = ROBUST_LR if robust else PLAIN_LR
    return steps, lr


def ascent_result(name: str, outcome: Any, **extra: Any) -> Result:
    """A :class:`Result` from a ``mechanisms.ascent.AscentResult``."""
    facts = {"steps": outcome.steps}
    if outcome.octaves is not None:
        facts["octaves_used"] = outcome.octaves
    numbers = {"objective_start": outcome.objective_start, "objective_end": outcome.objective_end}
    return Result(
        name,
        maps=outcome.images,
        probabilities=outcome.probabilities,
        row_numbers=numbers,
        facts=facts | extra.pop("facts", {}),
        **extra,
    )


def render_picture(result: Result, row: int, renderings: tuple[str, ...], options: dict[str, Any]) -> Rendered:
    """The optimised image as it is."""
    from cnnvis_tasks import render

    return Rendered({PICTURE.name: (render.to_uint8(result.maps[row]), {})})


# The options of the techniques that synthesise an image from nothing (class-viz, filter-viz),
# and what every ascent technique writes: its one picture, the image as --raw, step reports.
SYNTHESIS_OPTIONS = (WIDTH, HEIGHT, STEPS, LR, ROBUST, BATCH_SIZE, SAVE_EVERY)
PICTURE_OUTPUT = {"renderings": (PICTURE,), "raw": RAW_IMAGE, "render": render_picture, "reports_steps": True}
