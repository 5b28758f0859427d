"""An attribution method named as text, for the trust metrics: ``"saliency --method guided"``.

The first word is a technique whose maps rank the input's pixels for a target
class (``Technique.attribution``: the saliency and CAM families); the rest are
that technique's own flags, one value each (a method is one setting).  The
target class, the image size and the batch size are the metrics job's own, so
they are refused here.  The text is parsed word by word against the
technique's description (never by a shell), so a config value can only name
options that exist, with values of their kind.  Imports neither torch nor click.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Any

from .errors import CnnvisError
from .technique import BOOL, CHOICE, FLOAT, INT, LAYER, LAYER_PATTERN, Option, Technique

# Given by the metrics job to every method it scores.
JOB_OPTIONS = ("target", "size", "batch_size")


@dataclass(frozen=True)
class Explained:
    """A parsed method: the technique and the options given in the text (parsed values)."""

    technique: Technique
    options: dict[str, Any]

    @property
    def token(self) -> str:
        """The method in file names and rule names: ``saliency-guided``, ``grad-cam-_blocks.15``."""
        values = [self.technique.name, *(self._words(name, value, "") for name, value in self.options.items())]
        return re.sub(r"[^A-Za-z0-9_.\-]+", "_", "-".join(values))

    @property
    def label(self) -> str:
        """The method in tables and plots: ``Saliency (guided)``."""
        labels = [self._words(name, value, " ") for name, value in self.options.items()]
        return self.technique.title + (f" ({', '.join(labels)})" if labels else "")

    def _words(self, name: str, value: Any, space: str) -> str:
        """A repeatable option as in the technique's own file names and headers (``guided``,
        ``layer _blocks.15``), another by its name: ``steps 8``, ``squared``, ``no squared``."""
        option = self.technique.option(name)
        if option.repeatable:
            return option.token(value) if not space else option.label(value)
        if option.kind == BOOL:
            return option.name if value else f"no{space or '-'}{option.name}"
        return f"{option.name}{space}{value}"


def _value(option: Option, text: str) -> Any:
    if option.kind == INT:
        value: Any = int(text)
    elif option.kind == FLOAT:
        value = float(text)
    else:
        value = text
    if option.kind == CHOICE and value not in option.choices:
        raise ValueError(f"{text!r} is not one of {', '.join(option.choices)}")
    if option.kind == LAYER and not re.match(LAYER_PATTERN, value):
        raise ValueError(f"{text!r} is not a module path")
    if option.minimum is not None and value < option.minimum:
        raise ValueError(f"{text} is below {option.minimum}")
    if option.maximum is not None and value > option.maximum:
        raise ValueError(f"{text} is above {option.maximum}")
    if option.above is not None and value <= option.above:
        raise ValueError(f"{text} must be above {option.above}")
    if option.check is not None:
        problem = option.check(value)
        if problem:
            raise ValueError(problem)
    return option.parse(value)


def parse_explained(text: str) -> Explained:
    """``text`` as a method, or a :class:`CnnvisError` saying what is wrong with it."""
    from .techniques import all_techniques, get_technique

    try:
        words = shlex.split(str(text))
    except ValueError as error:
        raise CnnvisError(f"method {text!r}: {error}") from None
    if not words:
        raise CnnvisError("an empty method: give a technique's name, e.g. 'grad-cam' or 'saliency --method guided'")
    try:
        technique = get_technique(words[0])
    except CnnvisError as error:
        raise CnnvisError(f"method {text!r}: {error}") from None
    if not technique.attribution:
        usable = ", ".join(t.name for t in all_techniques() if t.attribution)
        raise CnnvisError(f"method {text!r}: {technique.name} makes no attribution map to score (usable: {usable})")
    flags = {option.flag: option for option in technique.options if option.name not in JOB_OPTIONS}
    negatives = {f"--{option.negative}": option for option in flags.values() if option.negative}
    options: dict[str, Any] = {}
    rest = words[1:]
    while rest:
        word = rest.pop(0)
        flag, _, inline = word.partition("=")
        if flag in negatives and not inline:
            option, value = negatives[flag], False
        elif flag in flags and flags[flag].kind == BOOL and not inline:
            option, value = flags[flag], True
        elif flag in flags:
            option = flags[flag]
            if not inline and not rest:
                raise CnnvisError(f"method {text!r}: {flag} needs a value")
            raw = inline or rest.pop(0)
            try:
                value = _value(option, raw)
            except ValueError as error:
                raise CnnvisError(f"method {text!r}: {flag}: {error}") from None
        else:
            known = ", ".join(sorted([*flags, *negatives])) or "none"
            job_option = flag.lstrip("-").replace("-", "_") in JOB_OPTIONS
            given = " (the metrics job gives it to every method)" if job_option else ""
            raise CnnvisError(f"method {text!r}: {technique.name} has no option {word}{given}; its options: {known}")
        if option.name in options:
            raise CnnvisError(f"method {text!r}: {option.flag} given twice (a method is one setting)")
        options[option.name] = value
    return Explained(technique, options)


def explained_problem(text: Any) -> str | None:
    """What is wrong with ``text`` as a method, in one line, or None (the config check)."""
    try:
        parse_explained(text)
    except CnnvisError as error:
        return str(error)
    return None
