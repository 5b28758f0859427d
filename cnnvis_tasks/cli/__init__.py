"""The ``cnnvis-tasks`` command line: one click group, one command per task.

Technique commands are made from the techniques' descriptions
(:mod:`.techniques`); the others describe models (:mod:`.inspect`), check image
sets (:mod:`.dataset`) and write the gallery (:mod:`.gallery`), each added to the
group of :mod:`.group`.  Loading the group imports no torch: each command imports
what it needs when it runs.
"""

from __future__ import annotations

from cnnvis_tasks.cli.group import cli


def _register() -> None:
    from cnnvis_tasks.cli import dataset, gallery, inspect, reduce, shared_pass, techniques  # noqa: F401  (they register their commands)

    techniques.register(cli)
    reduce.register(cli)


_register()


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="cnnvis-tasks")
