#!/usr/bin/env bash
# Snakemake runs this once in a conda environment it has just made from
# cnnvis.yaml (--software-deployment-method conda): it installs the repository
# (the `cnnvis-tasks` command) into it, editable and without dependencies, since
# cnnvis.yaml already holds them with pyproject.toml's pins.  Why here and not in
# cnnvis.yaml's pip section: see the comment at the top of cnnvis.yaml.
#
# Snakefile sets CNNVIS_SOURCE (unless it is set) to its own folder, the repository; by hand
# (`conda env create -f envs/cnnvis.yaml` and then this script in the activated
# environment), it takes the current folder.
set -euo pipefail
source_dir=${CNNVIS_SOURCE:-$PWD}
if ! grep -q '^name = "cnnvis-tasks"$' "$source_dir/pyproject.toml" 2>/dev/null; then
    echo "cnnvis.post-deploy.sh: $source_dir is not the cnnvis repository (set CNNVIS_SOURCE to it)" >&2
    exit 1
fi
python -m pip install --no-deps --editable "$source_dir"
