# One rule per job of the plan (cnnvis_tasks.workflow.jobs.Job): a technique (or
# the predictions of a model, or a shared pass of several), a model, a setting and
# (for techniques that read images) a chunk of images.  Each job loads the model
# once and runs its images through it in batches; its outputs are plain paths, so
# Snakemake matches them at once however many images there are.  The device and
# the batch size are resources, not params: changing them re-runs nothing.


for job in PLAN.jobs:

    rule:
        name:
            job.rule
        input:
            job.inputs,
        output:
            [report(o.path, **o.report) if o.report else o.path for o in job.outputs],
        log:
            job.log,
        benchmark:
            job.benchmark
        threads: job.threads
        resources:
            gpu=job.gpu,
            device=job.device,
            runtime_options=job.runtime_command,
        params:
            # functions, so that braces in file names are not taken for wildcards
            command=lambda wildcards, job=job: job.command,
            untracked=lambda wildcards, job=job: job.untracked,  # images Snakemake cannot take as inputs
        shell:
            "cnnvis-tasks {params.command} {resources.runtime_options} --device {resources.device}"
            " --threads {threads} > {log:q} 2>&1"


# The chunk layout (layout: chunks): one rule per technique, model and setting, with
# the chunk as its wildcard, so that Snakemake's work grows with the number of rules
# and chunks, not pictures.  A job reads its chunk's image list and writes its record
# and one folder of pictures (a shared pass: every record and folder of the
# techniques it serves).
for chunk_job in PLAN.chunk_rules:

    rule:
        name:
            chunk_job.rule
        input:
            chunk_job.inputs,
        output:
            chunk_job.output_paths + [directory(folder) for folder in chunk_job.folders],
        log:
            chunk_job.log,
        benchmark:
            chunk_job.benchmark
        wildcard_constraints:
            chunk=CHUNK_WILDCARD,
        threads: chunk_job.threads
        resources:
            gpu=chunk_job.gpu,
            device=chunk_job.device,
            runtime_options=chunk_job.runtime_command,
        params:
            command=chunk_job.command,  # "{chunk}" is the wildcard (no other brace: refused)
        shell:
            "cnnvis-tasks {params.command} {resources.runtime_options} --device {resources.device}"
            " --threads {threads} > {log:q} 2>&1"
