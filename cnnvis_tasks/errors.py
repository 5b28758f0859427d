"""The one exception type the CLI turns into a one-line message."""


class CnnvisError(Exception):
    """An expected, user-facing error: bad input, unknown name, missing file.

    The CLI prints ``str(error)`` on one line and exits non-zero, without a
    traceback unless ``--debug`` is given.
    """


class ImageError(CnnvisError):
    """What is wrong with one image (it cannot be read, it is too large, its label
    names no class): that image fails, the others of its call go on."""


class OverTimeBudget(CnnvisError):
    """A computation ran past its time budget (the trust metrics' ``max_seconds``): the rows
    it was computing fail, saying so, and the job goes on."""
