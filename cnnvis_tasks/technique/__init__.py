"""What a technique is: one description from which everything else follows.

A :class:`Technique` names a visualisation technique once (``saliency``,
``grad-cam``, ...) and says what it takes and what it makes: its options with
defaults and help, its renderings, whether it reads images, its gallery text,
and the two functions that do the work: ``compute`` (tensors to a
:class:`Result`) and ``render`` (one row of a result to pictures).  From it the
package derives

* the ``cnnvis-tasks NAME`` command (:mod:`cnnvis_tasks.cli.techniques`),
* the technique's block of the config schema (:mod:`cnnvis_tasks.workflow.config`),
* the workflow's jobs, their command lines and outputs (:mod:`cnnvis_tasks.workflow.plan`),
* its gallery section and report category (:mod:`cnnvis_tasks.gallery`),
* the Python verb :func:`cnnvis_tasks.compute`.

One call of a technique computes *rows*: one per image (or, for techniques
without images, one per value of the ``item`` option), times every combination
of the values of its repeatable options (several ``--layer``, ``--method``, ...).
The workflow gives each job one value of every repeatable option except those
marked ``together``, whose values share a job.

Imports neither torch nor click: the workflow reads these descriptions each
time it starts.
"""

from cnnvis_tasks.technique.cost import FORWARD, GRADIENT, WEIGHTS_ONLY, Cost, option_passes
from cnnvis_tasks.technique.description import AUTO_LAYER, ModelRows, PassNeeds, Rendering, Technique
from cnnvis_tasks.technique.options import (
    BATCH_SIZE,
    BOOL,
    CHOICE,
    COMMAND_ONLY,
    FILTER,
    FLOAT,
    INT,
    LAYER,
    LAYER_PATTERN,
    MAX_SIZE,
    METHOD,
    MODEL_LEVEL,
    SIZE,
    SIZED_BY_MODEL,
    STRING,
    TARGET,
    TARGET_CLASS,
    TECHNIQUE_LEVEL,
    Option,
    broadcast,
    filter_label,
    filter_token,
    layer_label,
    layer_option,
    parse_filter,
    parse_target,
    slug,
)
from cnnvis_tasks.technique.reduction import Reduction
from cnnvis_tasks.technique.result import SILENT, Rendered, Report, Result

__all__ = [
    "AUTO_LAYER",
    "BATCH_SIZE",
    "BOOL",
    "CHOICE",
    "Cost",
    "FORWARD",
    "GRADIENT",
    "WEIGHTS_ONLY",
    "COMMAND_ONLY",
    "FILTER",
    "FLOAT",
    "INT",
    "LAYER",
    "LAYER_PATTERN",
    "MAX_SIZE",
    "METHOD",
    "MODEL_LEVEL",
    "SIZE",
    "SIZED_BY_MODEL",
    "STRING",
    "TARGET",
    "TARGET_CLASS",
    "TECHNIQUE_LEVEL",
    "ModelRows",
    "Option",
    "PassNeeds",
    "Reduction",
    "Rendered",
    "Rendering",
    "Report",
    "Result",
    "SILENT",
    "Technique",
    "broadcast",
    "filter_label",
    "filter_token",
    "layer_label",
    "layer_option",
    "option_passes",
    "parse_filter",
    "parse_target",
    "slug",
]
