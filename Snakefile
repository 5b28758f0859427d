# cnnvis: the gallery workflow.  `snakemake --cores 4` builds results/index.html
# from the images and config.yaml (see README.md); a second run does nothing.

from snakemake.utils import min_version

min_version("8.0")


include: "rules/common.smk"
include: "rules/activations.smk"
include: "rules/kernels.smk"
include: "rules/backprop.smk"
include: "rules/ascent.smk"
include: "rules/cam.smk"
include: "rules/per_image.smk"
include: "rules/gallery.smk"


rule all:
    default_target: True
    input:
        GALLERY,  # which depends on every result
        BAD_IMAGE_TARGETS,
        MISSING_OUTPUTS,
