# One rule per job of the plan (cnnvis_tasks.workflow.jobs.Job): a technique (or
# the predictions of a model, or a shared pass of several), a model, a setting and
# (for techniques that read images) a chunk of images.  Each job loads the model
# once and runs its images through it in batches; its outputs are plain paths, so
# Snakemake matches them at once however many images there are.  The device and
# the batch size are resources, not params: changing them re-runs nothing.  Each job
# asks for the memory and time (mem_mb, runtime) that cnnvis_tasks/workflow/costs.py
# estimates from what it does.


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
        group:
            cluster_group(job, workflow)  # none: a job of its own is one sbatch call
        conda:
            "../envs/cnnvis.yaml"
        threads: job.threads
        resources:
            gpu=job.gpu,
            device=job.device,
            # estimated from what the job does (cnnvis_tasks/workflow/costs.py); a job killed
            # (for memory or time) is retried with more of both and half the batch size
            mem_mb=lambda wildcards, attempt, job=job: job.mem_mb(attempt),
            runtime=lambda wildcards, attempt, job=job: job.runtime_minutes(attempt),
            runtime_options=lambda wildcards, attempt, job=job: job.runtime_options(attempt),
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
        group:
            cluster_group(chunk_job, workflow)  # on a cluster, N chunks to one sbatch call (profiles/slurm)
        conda:
            "../envs/cnnvis.yaml"
        threads: chunk_job.threads
        resources:
            gpu=chunk_job.gpu,
            device=chunk_job.device,
            mem_mb=lambda wildcards, attempt, job=chunk_job: job.mem_mb(attempt, chunk_size(wildcards)),
            runtime=lambda wildcards, attempt, job=chunk_job: job.runtime_minutes(attempt, chunk_size(wildcards)),
            runtime_options=lambda wildcards, attempt, job=chunk_job: job.runtime_options(attempt),
        params:
            command=chunk_job.command,  # "{chunk}" is the wildcard (no other brace: refused)
        shell:
            "cnnvis-tasks {params.command} {resources.runtime_options} --device {resources.device}"
            " --threads {threads} > {log:q} 2>&1"
