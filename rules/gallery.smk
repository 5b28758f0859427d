# The image check, the failure of bad images, and the HTML gallery.

IMAGE_STATUS_FILE = f"{RESULTS}/images.json"
GALLERY = f"{RESULTS}/index.html"
# An image that cannot be decoded gets a job of its own instead of results: the job
# fails with the image's name and reason in its log, so the run fails, while
# --keep-going still builds everything else, the gallery (which lists it) included.
BAD_IMAGE_TARGETS = [f"{RESULTS}/logs/check-images/{name}.ok" for name in BAD_IMAGES]


rule image_status:
    """The status of every input image (ok, or failed with a one-line reason), for
    the gallery; decoding is cached by size and time, so this is quick."""
    input:
        list(IMAGES.values()),
        [config["images"]["manifest"]] if config["images"].get("manifest") else [],
    output:
        IMAGE_STATUS_FILE,
    log:
        f"{RESULTS}/logs/image-status.log",
    params:
        source=quote(image_source_args()),
        cache=f"{RESULTS}/.cache/image-check.json",
    shell:
        "cnnvis-tasks check-images {params.source} --cache {params.cache:q} --out {output:q} --no-fail > {log} 2>&1"


rule bad_image:
    """Fails, naming the image and why it cannot be used."""
    input:
        bad_image_input,
    output:
        f"{RESULTS}/logs/check-images/{{image}}.ok",
    log:
        f"{RESULTS}/logs/check-images/{{image}}.log",
    wildcard_constraints:
        image=one_of(BAD_IMAGES),
    shell:
        "cnnvis-tasks check-images --image {input:q} --out {output:q} > {log} 2>&1"


rule gallery:
    """One HTML page of every result, in the seed gallery's order."""
    input:
        TARGETS,
        status=IMAGE_STATUS_FILE,
    output:
        page=GALLERY,
        pages=directory(f"{RESULTS}/gallery"),
    log:
        f"{RESULTS}/logs/gallery.log",
    params:
        spec=gallery_spec,
        title=config["gallery"]["title"],
        preview=config["gallery"]["preview_rows"],
        per_page=config["gallery"]["rows_per_page"],
    shell:
        "cnnvis-tasks gallery --spec {params.spec:q} --images {input.status:q} --out {output.page:q}"
        " --title {params.title:q} --preview-rows {params.preview} --rows-per-page {params.per_page}"
        " --log-template 'logs/check-images/{{image}}.log' > {log} 2>&1"
