# The image check, the summary table and the HTML gallery.  An image that cannot
# be used is listed by the check with the reason, and so do the summary and the
# gallery; it never enters a job in the pictures layout, and fails alone in its
# jobs in the chunk layout (with strict_images: true it stops the run instead).

from cnnvis_tasks.workflow.run_report import finish_run
from cnnvis_tasks.workflow.tables import gallery_arguments, summary_rules


rule image_status:
    """The status of every input image (ok, failed or skipped, with a one-line
    reason), for the summary and the gallery; decoding is cached by size and time."""
    input:
        PLAN.image_check_inputs,
    output:
        PLAN.image_status_file,
    log:
        f"{PLAN.results}/logs/image-status.log",
    conda:
        "../envs/cnnvis.yaml"
    params:
        source=image_source_arguments(config),
        cache=PLAN.image_check_cache,
        decode=PLAN.image_check_mode,
        untracked=lambda wildcards: PLAN.image_check_untracked,
    shell:
        "cnnvis-tasks check-images {params.source:q} --cache {params.cache:q} {params.decode} --out {output:q}"
        " --no-fail > {log:q} 2>&1"


rule summary:
    """summary.csv: every image's label, top-1 class and probability per model, and
    the status of each of its results, from the jobs' records."""
    input:
        PLAN.records,
        status=PLAN.image_status_file,
    output:
        PLAN.summary_file,
    log:
        f"{PLAN.results}/logs/summary.log",
    conda:
        "../envs/cnnvis.yaml"
    params:
        spec=lambda wildcards: PLAN.gallery_spec_argument,  # a function: its "{image}" is not a wildcard
    shell:
        "cnnvis-tasks summary --spec {params.spec:q} --images {input.status:q} --out {output:q} > {log:q} 2>&1"


rule class_summary:
    """per-class.csv, confusion.csv and confusion/MODEL.png: per model and labelled
    class, its accuracy with an interval and the classes it mixes up, from summary.csv."""
    input:
        PLAN.summary_file,
    output:
        table=report(PLAN.class_table_file, category="Classes", caption="report/per-class.rst"),
        confusion=report(PLAN.confusion_file, category="Classes", caption="report/confusion.rst"),
        pictures=[
            report(path, category="Classes", subcategory=model, caption="report/confusion-picture.rst")
            for model, path in PLAN.confusion_pictures.items()
        ],
    log:
        f"{PLAN.results}/logs/class-summary.log",
    conda:
        "../envs/cnnvis.yaml"
    shell:
        "cnnvis-tasks class-summary --summary {input:q} --out {output.table:q} > {log:q} 2>&1"


# One rule per technique whose description has a table (the trust metrics):
# NAME.csv (its numbers per row), NAME-summary.csv (per model and group, with bootstrap
# intervals) and its pictures per model, from its jobs' records.
for table_rule in summary_rules(PLAN):

    rule:
        name:
            table_rule.rule
        input:
            table_rule.records,
            status=PLAN.image_status_file,
        output:
            table=table_rule.files[0],
            beside=table_rule.files[1:],
        log:
            table_rule.log,
        conda:
            "../envs/cnnvis.yaml"
        params:
            spec=lambda wildcards: PLAN.gallery_spec_argument,
        shell:
            "cnnvis-tasks table-summary --spec {params.spec:q} --images {input.status:q} --out {output.table:q}"
            " > {log:q} 2>&1"


# One rule per model and setting of a technique that reduces the data set (the channel
# examples): every chunk's file merged into one folder (the channel atlas), which the
# gallery reads.  Adding images re-runs the jobs of their chunks and this, nothing else.
for reduce_job in PLAN.reductions:

    rule:
        name:
            reduce_job.rule
        input:
            lists=reduce_job.inputs,
            status=PLAN.image_status_file,
            model=reduce_job.model_inputs,
        output:
            directory(reduce_job.folder),
        log:
            reduce_job.log,
        benchmark:
            reduce_job.benchmark
        conda:
            "../envs/cnnvis.yaml"
        threads: reduce_job.threads
        resources:
            gpu=reduce_job.gpu,
            device=reduce_job.device,
        params:
            command=reduce_job.command,
        shell:
            "cnnvis-tasks {params.command} --device {resources.device} --threads {threads} {input.lists:q}"
            " > {log:q} 2>&1"


rule gallery:
    """One HTML page of every result, in the gallery's order of techniques; beside it
    the image index, the views and a page per image and model (docs/gallery.md)."""
    input:
        [path for table_rule in summary_rules(PLAN) for path in table_rule.files],
        status=PLAN.image_status_file,
        summary=PLAN.summary_file,
        classes=PLAN.class_table_file,
        class_files=[PLAN.confusion_file, *PLAN.confusion_pictures.values()],
        reductions=[reduce_job.folder for reduce_job in PLAN.reductions],
    output:
        page=PLAN.gallery_page,
        pages=directory(f"{PLAN.results}/gallery"),
        index=PLAN.gallery_extra_pages,
    log:
        f"{PLAN.results}/logs/gallery.log",
    conda:
        "../envs/cnnvis.yaml"
    params:
        spec=lambda wildcards: PLAN.gallery_spec_argument,
        title=config["gallery"]["title"],
        preview=config["gallery"]["preview_rows"],
        per_page=config["gallery"]["rows_per_page"],
        max_images=config["gallery"]["max_images"],
        tables=gallery_arguments(PLAN),
    shell:
        "cnnvis-tasks gallery --spec {params.spec:q} --images {input.status:q} --summary {input.summary:q}"
        " --out {output.page:q} --title {params.title:q} --preview-rows {params.preview}"
        " --rows-per-page {params.per_page} --max-images {params.max_images} {params.tables:q}"
        " --class-summary {input.classes:q}"
        " > {log:q} 2>&1"


# The end of a run (not a dry run): what it made and what failed, in a few lines; a
# run in which a technique failed on every result exits with status 1, naming it.
onsuccess:
    finish_run(PLAN, success=True)


onerror:
    finish_run(PLAN, success=False)
