"""Jobs that can share one forward and backward, folded into ``shared-pass`` jobs.

Vanilla saliency, feature maps, the gradient CAMs and Eigen-CAM read what they
need from one pass of the model (``Technique.shares_pass``); the jobs of one
model that decode the same images in the same batches become one job whose
members they are.  Everything is read from the jobs' data; their command lines
are made once, at the end (:attr:`~cnnvis_tasks.workflow.jobs.Job.arguments`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from cnnvis_tasks.technique import Technique, slug
from cnnvis_tasks.workflow.jobs import SHARED_PASS, Job

# A shared job's command carries each member's command as one argument; Linux refuses
# a single argument over 128 KiB (MAX_ARG_STRLEN) and a command over about 2 MB, and a
# pictures-layout member names every picture of its chunk.  Larger groups keep their
# jobs apart (chunk_size 256 with paths of usual length stays well under).
MAX_JOB_TEXT = 100_000
MAX_SHARED_COMMAND = 1_000_000


def can_share(techniques: Mapping[str, Technique], job: Job) -> bool:
    """Whether a job's setting can take its results from a shared pass."""
    technique = techniques.get(job.technique)
    if technique is None or technique.shares_pass is None or technique.from_pass is None:
        return False
    values = {o.name: o.parse(job.option(o.name)) for o in technique.repeatable if job.values(o.name)}
    needs = technique.shares_pass(values)
    return needs is not None and not isinstance(needs, str)


def decoding(job: Job) -> tuple:
    """What must be the same for jobs to decode the same batches: model, size, max pixels, batch size."""
    return (job.model, job.option("size"), job.option("max_pixels"), job.runtime_values.get("batch_size"))


def share_passes(jobs: list[Job], techniques: Mapping[str, Technique], results: str) -> list[Job]:
    """The jobs of one model (and chunk) whose settings can share one forward and backward
    and that decode the same images in the same batches, folded into one shared-pass job
    in the place of the first of them; the others are kept as they are, and so are the
    jobs of a group whose command would be too long to start (:data:`MAX_JOB_TEXT`)."""
    groups: dict[tuple, list[Job]] = {}
    for job in jobs:
        if (job.chunk is not None or job.chunks) and can_share(techniques, job):
            groups.setdefault((*decoding(job), job.chunk, job.chunks, job.images), []).append(job)
    chunked = [members for members in groups.values() if len(members) > 1 and members[0].chunks]
    replaced: dict[int, Job | None] = {}  # id of a job -> the shared job in its place (None: folded in)
    numbers: dict[tuple[str, str | None], int] = {}
    for members in groups.values():
        if len(members) == 1:
            continue
        first = members[0]
        if first.chunks:
            # the chunk layout: one rule per model (numbered when a model has several groups)
            number = chunked.index(members)
            suffix = f"-{number}" if len(chunked) > 1 else ""
            where = f"{first.model}/{SHARED_PASS}{suffix}"
            rule = slug(f"shared_pass_{first.model}{suffix.replace('-', '_')}")
            log, benchmark = f"{results}/logs/{where}/{{chunk}}.log", f"{results}/benchmarks/{where}/{{chunk}}.tsv"
        else:
            texts = [member.member_text.encode() for member in members]
            words = sum(len(text) + len(b"--job") for text in texts)
            words += sum(len(image.encode()) for image in first.images)
            if max(len(text) for text in texts) > MAX_JOB_TEXT or words > MAX_SHARED_COMMAND:
                continue
            number = numbers.setdefault((first.model, first.chunk), 0)
            numbers[(first.model, first.chunk)] += 1
            name = SHARED_PASS + (f"-{number}" if number else "")
            where = f"{first.model}/{name}/{first.chunk}"
            rule = slug(f"{name.replace('-', '_')}_{first.model}_{first.chunk}")
            log, benchmark = f"{results}/logs/{where}.log", f"{results}/benchmarks/{where}.tsv"
        replaced.update({id(member): None for member in members})
        replaced[id(first)] = replace(
            first,
            rule=rule,
            technique=SHARED_PASS,
            setting="",
            options=(),
            runtime=(),
            rows=(),
            job_outputs=(),
            record=None,
            folder=None,
            description=None,
            outputs=tuple(output for member in members for output in member.outputs),
            log=log,
            benchmark=benchmark,
            members=tuple(members),
        )
    if any(job.chunks for job in jobs):
        # the chunk layout lists the jobs that cannot share, those alone in their group, then the shared ones
        grouped = {id(job) for members in groups.values() for job in members}
        alone = [members[0] for members in groups.values() if len(members) == 1]
        shared = [replaced[id(members[0])] for members in chunked]
        return [job for job in jobs if id(job) not in grouped] + alone + shared
    kept = [replaced.get(id(job), job) for job in jobs]
    return [job for job in kept if job is not None]
