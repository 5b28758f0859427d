# The plan of the whole workflow (cnnvis_tasks.workflow): the checked config, the
# images and their chunks, every job and the gallery's tables.  The other rule
# files only declare rules from it.

from snakemake.exceptions import WorkflowError

from cnnvis_tasks.workflow import ConfigError, image_source_arguments, load_plan

try:
    # Jobs run here unless an executor plugin (SLURM, ...) is in use: its settings are set.
    PLAN = load_plan(config, main_process=workflow.is_main_process, local=workflow.executor_settings is None)
except ConfigError as error:
    raise WorkflowError(str(error)) from None
