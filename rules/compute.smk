# One rule per job of the plan: a technique (or the predictions of a model), a
# model, a setting and (for techniques that read images) a chunk of images.  Each
# job loads the model once and runs its images through it in batches; its outputs
# are plain paths, so Snakemake matches them at once however many images there
# are.  The device and the batch size are resources, not params: changing them
# re-runs nothing.


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
