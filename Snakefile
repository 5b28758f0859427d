# cnnvis: the gallery workflow.  `snakemake --cores 4` builds results/index.html
# from the images and config.yaml (see README.md); a second run does nothing.
# What each rule does is planned by the package (cnnvis_tasks.workflow): these
# files only declare its rules.

import os

from snakemake.utils import min_version

min_version("8.0")

# The software of the jobs, used only with --software-deployment-method (README.md,
# "Software deployment"): `conda` makes envs/cnnvis.yaml, named by every rule, and
# `apptainer` runs every job in this image, built from Containerfile.  Without the
# option, jobs run the cnnvis-tasks of the Python environment Snakemake runs in.


container: "cnnvis.sif"


# envs/cnnvis.post-deploy.sh installs the repository, this folder, into a new conda environment.
os.environ.setdefault("CNNVIS_SOURCE", workflow.basedir)


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
