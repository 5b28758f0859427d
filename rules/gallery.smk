# The image check, the failure of bad images, and the HTML gallery.
# An image that cannot be decoded gets a job of its own instead of results: the
# job fails with the image's name and reason in its log, so the run fails, while
# --keep-going still builds everything else, the gallery (which lists it) included.


rule image_status:
    """The status of every input image (ok, or failed with a one-line reason), for
    the gallery; decoding is cached by size and time, so this is quick."""
    input:
        PLAN.image_check_inputs,
    output:
        PLAN.image_status_file,
    log:
        f"{PLAN.results}/logs/image-status.log",
    params:
        source=image_source_arguments(config),
        cache=PLAN.image_check_cache,
    shell:
        "cnnvis-tasks check-images {params.source:q} --cache {params.cache:q} --out {output:q} --no-fail > {log:q} 2>&1"


rule bad_image:
    """Fails, naming the image and why it cannot be used."""
    input:
        lambda wildcards: PLAN.images[wildcards.image],
    output:
        f"{PLAN.results}/logs/check-images/{{image}}.ok",
    log:
        f"{PLAN.results}/logs/check-images/{{image}}.log",
    wildcard_constraints:
        image=PLAN.bad_image_pattern,
    shell:
        "cnnvis-tasks check-images --image {input:q} --out {output:q} > {log:q} 2>&1"


rule gallery:
    """One HTML page of every result, in the gallery's order of techniques."""
    input:
        PLAN.gallery_inputs,
        status=PLAN.image_status_file,
    output:
        page=PLAN.gallery_page,
        pages=directory(f"{PLAN.results}/gallery"),
    log:
        f"{PLAN.results}/logs/gallery.log",
    params:
        spec=lambda wildcards: PLAN.gallery_spec,  # a function: its "{image}" is not a wildcard
        title=config["gallery"]["title"],
        preview=config["gallery"]["preview_rows"],
        per_page=config["gallery"]["rows_per_page"],
    shell:
        "cnnvis-tasks gallery --spec {params.spec:q} --images {input.status:q} --out {output.page:q}"
        " --title {params.title:q} --preview-rows {params.preview} --rows-per-page {params.per_page}"
        " --log-template 'logs/check-images/{{image}}.log' > {log:q} 2>&1"
