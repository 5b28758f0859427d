# The plan of the whole workflow (cnnvis_tasks.workflow): the checked config, the
# images and their chunks, every job and the gallery's tables.  The other rule
# files only declare rules from it.

from snakemake.exceptions import WorkflowError

from cnnvis_tasks.workflow import CHUNK_WILDCARD, ConfigError, check_device, image_source_arguments, load_plan
from cnnvis_tasks.workflow.grouping import cluster_group  # the compute rules' group (on a cluster)

try:
    PLAN = load_plan(config, main_process=workflow.is_main_process)
except ConfigError as error:
    raise WorkflowError(str(error)) from None


onstart:
    # At the start of a run, once Snakemake knows whether its jobs run on this machine.
    check_device(config, local=workflow.local_exec)


def chunk_size(wildcards):
    """The number of images of a chunk-layout job's chunk (its mem_mb and runtime)."""
    return len(PLAN.chunks.get(wildcards.chunk, ()))
