"""The one exception type the CLI turns into a one-line message."""


class CnnvisError(Exception):
    """An expected, user-facing error: bad input, unknown name, missing file.

    The CLI prints ``str(error)`` on one line and exits non-zero, without a
    traceback unless ``--debug`` is given.
    """
