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


# The chunk layout (layout: chunks): one rule per technique, model and setting, with
# the chunk as its wildcard, so that Snakemake's work grows with the number of rules
# and chunks, not pictures.  A job reads its chunk's image list and writes its record
# and one folder of pictures (a shared pass: every record and folder of the
# techniques it serves).
for chunk_rule in PLAN.chunk_rules:

    rule:
        name:
            chunk_rule.rule
        input:
            chunk_rule.inputs,
        output:
            chunk_rule.outputs + [directory(folder) for folder in chunk_rule.folders],
        log:
            chunk_rule.log,
        benchmark:
            chunk_rule.benchmark
        wildcard_constraints:
            chunk=CHUNK_WILDCARD,
        threads: chunk_rule.threads
        resources:
            gpu=chunk_rule.gpu,
            device=chunk_rule.device,
            runtime_options=chunk_rule.runtime_command,
        params:
            command=chunk_rule.command,  # "{chunk}" is the wildcard (no other brace: refused)
        shell:
            "cnnvis-tasks {params.command} {resources.runtime_options} --device {resources.device}"
            " --threads {threads} > {log:q} 2>&1"
