"""Running techniques over many rows: the entry points of the one runner.

A technique command runs :func:`run`: one technique call over its rows; the
``shared-pass`` command runs :func:`run_shared`: several calls over the same
images from one forward and backward per batch.  Both are a *pass* of members
(:class:`~cnnvis_tasks.run.members.Member`: one technique call each) driven by
:func:`cnnvis_tasks.run.driver.run_pass`:

* :mod:`cnnvis_tasks.run.rows`: rows, settings, what to do on a failure;
* :mod:`cnnvis_tasks.run.members`: a member and its state while the pass runs;
* :mod:`cnnvis_tasks.run.driver`: decoding in batches, computing, the retries;
* :mod:`cnnvis_tasks.run.shared_batch`: one shared forward and backward for a batch;
* :mod:`cnnvis_tasks.run.failures`: failed rows, rows written behind, targets, notes;
* :mod:`cnnvis_tasks.run.writer`: each row's files, placeholders, the record;
* :mod:`cnnvis_tasks.run.session`: the loaded model, its device, the input size.

With I/O workers (:func:`cnnvis_tasks.run.pipeline.split_cores`) the next batch is
decoded and the last one rendered and written while a batch computes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnvis_tasks.io.outputs import DEFAULT_PNG_LEVEL
from cnnvis_tasks.models.names import DEFAULT_MODEL
from cnnvis_tasks.run.driver import run_pass
from cnnvis_tasks.run.members import Member, pass_settings
from cnnvis_tasks.run.rows import RAW, Failures, Row, combinations
from cnnvis_tasks.run.session import Session, decoding_size, input_crop
from cnnvis_tasks.technique import BATCH_SIZE, Technique

if TYPE_CHECKING:
    from cnnvis_tasks.models.loading import LoadedModel

NAME = "shared-pass"  # the progress label of a shared pass
SharedJob = Member  # one technique call of a shared pass (its former name)

__all__ = [
    "NAME",
    "RAW",
    "Failures",
    "Member",
    "Row",
    "Session",
    "SharedJob",
    "combinations",
    "decoding_size",
    "input_crop",
    "load_model",
    "open_session",
    "pass_settings",
    "run",
    "run_shared",
]


def load_model(*args: Any, **kwargs: Any) -> LoadedModel:
    """:func:`cnnvis_tasks.models.loading.load_model`, imported on first use (it imports
    torch); a name of this module, so that bench/dataset.py can replace it."""
    from cnnvis_tasks.models.loading import load_model

    return load_model(*args, **kwargs)


def open_session(
    model: str = DEFAULT_MODEL,
    weights: str = "default",
    device: str = "auto",
    seed: int = 0,
    threads: int | None = None,
    quiet: bool = False,
    debug: bool = False,
    **spec_options: Any,
) -> Session:
    """Configure threads and seed, then load the model once for this process.
    ``spec_options``: the model's other options (:func:`cnnvis_tasks.models.spec.spec_from_options`)."""
    from cnnvis_tasks.io.outputs import keep_room
    from cnnvis_tasks.models.spec import spec_from_options

    keep_room()  # at once, before other jobs fill the disk: the job's log keeps room to say why it stopped
    spec = spec_from_options(model, weights, **spec_options)
    import torch

    from cnnvis_tasks.run.devices import configure_threads, default_threads, resolve_device, use_full_precision
    from cnnvis_tasks.run.gpu_claim import spread_over_gpus
    from cnnvis_tasks.run.pipeline import split_cores

    torch_device = spread_over_gpus(resolve_device(device), quiet)  # plain cuda: a GPU of its own
    compute_threads, io_workers = split_cores(threads or default_threads(), torch_device.type)
    configure_threads(compute_threads)
    torch.manual_seed(seed)
    use_full_precision(torch_device)
    model_loaded = load_model(spec, device=torch_device, seed=seed)
    return Session(model=model_loaded, device=torch_device, seed=seed, quiet=quiet, io_workers=io_workers)


def run(
    technique: Technique,
    session: Session,
    rows: Sequence[Row],
    options: dict[str, Any],
    *,
    images: Sequence[Path] = (),
    targets: Sequence[int | str | None] | None = None,
    columns: Mapping[str, Sequence[Any]] | None = None,
    renderings: Sequence[str] = (),
    failures: Failures | None = None,
    max_pixels: int | None = None,
    png_level: int = DEFAULT_PNG_LEVEL,
    reduced: Path | None = None,
    warn: Callable[[str], None] = print,
    note: Callable[[str], None] = print,
) -> dict[int, str]:
    """Compute ``rows`` with ``options`` (single values, parsed) and write their files.

    ``renderings`` are the rendering names every row writes (plus ``raw`` when
    its path is given).  Per-image techniques read ``images`` (the rows' image
    indices point into it) with the target of each image in ``targets`` (None:
    its top-1 prediction; a label: a class index, WordNet ID or class name).
    A technique that reads per-image inputs (``Technique.columns``: a box) gets each
    image's value in ``columns`` (column name -> per image, in the image's own terms,
    None: none) moved onto its input (:mod:`cnnvis_tasks.io.columns`).
    An image that fails (it cannot be read, it is larger than ``max_pixels``
    after resizing, its label names no class, the model fails on it alone)
    stops the call, or with ``failures.keep_going`` fails alone; so does a row
    whose files cannot be rendered or written.  PNGs are written at zlib level
    ``png_level``.  A technique that reduces its images (``Technique.reduction``) writes
    them all into one file, ``reduced``.  Returns the failed rows: position -> reason.
    """
    member = Member(technique, rows, options, targets, renderings, failures or Failures(), png_level, columns, reduced)
    return run_pass(
        session,
        [member],
        images,
        size=options.get("size"),
        batch_size=options.get("batch_size", BATCH_SIZE.default),
        max_pixels=max_pixels,
        warn=warn,
        note=note,
    )[0]


def run_shared(
    session: Session,
    jobs: Sequence[Member],
    images: Sequence[Path],
    *,
    size: int | None,
    batch_size: int,
    max_pixels: int | None = None,
    warn: Callable[[str], None] = print,
    note: Callable[[str], None] = print,
) -> list[dict[int, str]]:
    """Compute and write every job's rows over ``images``, decoded once at ``size`` (None:
    none given, the default) in batches of ``batch_size``, from one shared pass per
    batch.  A job whose options cannot share the pass raises :class:`CnnvisError` saying
    why, before any work.  Each job's warnings begin with its technique's name.
    Writes each job's record; returns each job's failed rows: position -> reason."""
    return run_pass(
        session,
        jobs,
        images,
        shared=True,
        size=size,
        batch_size=batch_size,
        max_pixels=max_pixels,
        label=NAME,
        warn=warn,
        note=note,
        name_warnings=True,
    )
