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


class DiskFull(CnnvisError, OSError):
    """A file could not be written because its file system is full (ENOSPC) or its owner's
    quota is spent (EDQUOT).  Nothing partial was left (files are written to a temporary
    name and renamed), but every later write would fail too: a command stops as a whole,
    saying where and how far it got, instead of failing each row for it.  Also an OSError,
    with its ``errno``, so that code that forgives a failed write (a cache) still does.
    ``lead`` names the place ("no space left on tmpfs at /scratch"), ``detail`` what was
    being written."""

    def __init__(self, lead: str, detail: str = "", errno: int = 28):
        super().__init__(f"{lead}: {detail}" if detail else lead)
        self.lead, self.detail, self.errno = lead, detail, errno
