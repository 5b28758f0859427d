# One rule per job of the plan: a technique, a model, a setting and (for
# techniques that read images) a chunk of images.  Each job loads the model once
# and runs its images through it in batches; its outputs are plain paths, so
# Snakemake matches them at once however many images there are.


for job in PLAN.jobs:

    rule:
        name:
            job.rule
        input:
            images=job.images,
            weights=job.weights,
        output:
            [report(o.path, **o.report) if o.report else o.path for o in job.outputs],
        log:
            job.log,
        benchmark:
            job.benchmark
        threads: job.threads
        resources:
            gpu=job.gpu,
        params:
            command=job.command,
            device=job.device,
        shell:
            "cnnvis-tasks {params.command} --device {params.device} --threads {threads} > {log:q} 2>&1"
