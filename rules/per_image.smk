# One rule per per-image job: a technique setting (rules/activations.smk,
# backprop.smk, ascent.smk and cam.smk register them), a model and a chunk of
# images.  Each job loads the model once and runs its images through it in
# batches.  Include this file after every file that registers jobs.

for _job in PER_IMAGE_JOBS:
    _job_folder = f"{_job.model}/{TECHNIQUES[_job.key]}/{_job.setting}"
    for _chunk, _names in CHUNKS.items():
        _args, _outputs = _job.job_of_chunk(_names)

        rule:
            name:
                chunk_rule_name(_job.key, _job.model, _job.setting, _chunk)
            input:
                images=[IMAGES[name] for name in _names],
                weights=weights_of(_job.model),
            output:
                _outputs,
            log:
                f"{RESULTS}/logs/{_job_folder}/{_chunk}.log",
            benchmark:
                f"{RESULTS}/benchmarks/{_job_folder}/{_chunk}.tsv"
            threads: THREADS
            resources:
                gpu=GPU,
            params:
                device=DEVICE,
                command=_job.command,
                args=_args,
            shell:
                COMPUTE

        add_targets(_outputs)

PER_IMAGE_RULES_MADE = True
