# cnnvis: the gallery workflow.  `snakemake --cores 4` builds results/index.html
# from the images and config.yaml (see README.md); a second run does nothing.
# What each rule does is planned by the package (cnnvis_tasks.workflow): these
# files only declare its rules.

from snakemake.utils import min_version

min_version("8.0")


# With --configfile, use only the files given (config.yaml is not merged underneath).
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


include: "rules/common.smk"
include: "rules/compute.smk"
include: "rules/gallery.smk"


rule all:
    default_target: True
    input:
        PLAN.gallery_page,  # which depends on every job
        PLAN.missing,
