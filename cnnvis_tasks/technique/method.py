"""A method another technique computes inside itself: an object in Python, text at the edges.

The trust metrics score an attribution method (``--explain 'saliency --method
guided'``) and SmoothGrad averages one (``--method 'integrated-gradients --steps
16'``).  In Python a method is an object, and objects compose, as captum's
wrappers do::

    Method("grad-cam", layer="_blocks.15")
    Method("smooth-grad", method=Method("integrated-gradients", steps=16))

On the command line and in the config it is text: a technique's name and its own
flags, one value each (a method is one setting), split as a shell would (never run
by one) and parsed by that technique's own click options
(:func:`cnnvis_tasks.cli.options.parse_flags`), so that every value passes the same
:meth:`Option.parse` as everywhere else.  Where a method goes (a :class:`Slot`:
``metrics --explain``, ``smooth-grad --method``) says which techniques and options it
takes there.  Imports neither torch nor, until a text is parsed, click.
"""

from __future__ import annotations

import functools
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cnnvis_tasks.errors import CnnvisError
from cnnvis_tasks.technique.description import Technique
from cnnvis_tasks.technique.options import BOOL, FILTER, METHOD, TARGET, Option


class Method:
    """A technique and the options given to it (parsed: as its ``compute`` takes them).

    ``Method("integrated-gradients", steps=16)``; a method inside a method is a
    :class:`Method` too (text given there is parsed into one).  Two methods are equal
    when they name the same technique and options, however they were written.
    """

    __slots__ = ("technique", "options", "_text")

    def __init__(self, technique: str | Technique, /, **options: Any):
        from cnnvis_tasks.techniques import get_technique

        self.technique: Technique = get_technique(technique)
        known = {option.name: option for option in self.technique.options}
        parsed: dict[str, Any] = {}
        for name, value in options.items():
            if name not in known:
                raise CnnvisError(
                    f"{self.technique.name} has no option {name} (its options: {', '.join(known) or 'none'})"
                )
            if isinstance(value, (list, tuple)):
                raise CnnvisError(f"{self.technique.name}: {name}: a method is one setting: give one value")
            try:
                parsed[name] = _inner(self.technique, known[name], known[name].parse(value))
            except ValueError as error:
                raise CnnvisError(f"{self.technique.name}: {name}: {error}") from None
        self.options: dict[str, Any] = parsed
        self._text: str | None = None

    @classmethod
    def _parsed(cls, technique: Technique, options: dict[str, Any], text: str) -> Method:
        method = cls.__new__(cls)
        method.technique = technique
        method.options = {name: _inner(technique, technique.option(name), v) for name, v in options.items()}
        method._text = text
        return method

    @property
    def text(self) -> str:
        """The method as text: as it was given, or as its technique's command line would say it."""
        if self._text is not None:
            return self._text
        words = [self.technique.name]
        for name, value in self.options.items():
            option = self.technique.option(name)
            if option.kind == BOOL:
                from cnnvis_tasks.cli.options import negative_flag

                words.append(option.flag if value else negative_flag(option))
            else:
                shown = {TARGET: "top1", FILTER: "all"}.get(option.kind) if value is None else str(value)
                words += [option.flag, str(shown)]
        return shlex.join(words)

    def option_words(self, space: str) -> list[str]:
        """Each option as in the technique's own file names (``space`` ""): ``guided``,
        ``steps8``, ``no-squared``, or headers (``space`` " "): ``layer _blocks.15``, ``steps 8``."""
        return [self._words(name, value, space) for name, value in self.options.items()]

    @property
    def token(self) -> str:
        """The method in file names and rule names: ``saliency-guided``, ``grad-cam-_blocks.15``."""
        return self.token_as(self.technique.name)

    def token_as(self, name: str) -> str:
        """The token with ``name`` for the technique's (SmoothGrad's ``ig-steps32``)."""
        return re.sub(r"[^A-Za-z0-9_.\-]+", "_", "-".join([name, *self.option_words("")]))

    @property
    def label(self) -> str:
        """The method in tables and plots: ``Saliency maps (guided)``."""
        labels = self.option_words(" ")
        return self.technique.title + (f" ({', '.join(labels)})" if labels else "")

    def values(self) -> dict[str, Any]:
        """Every option of the technique: its default, or the value given here."""
        return {**self.technique.defaults(), **self.options}

    def _words(self, name: str, value: Any, space: str) -> str:
        option = self.technique.option(name)
        if option.repeatable:
            return option.token(value) if not space else option.label(value)
        if option.kind == BOOL:
            return option.name if value else f"no{space or '-'}{option.name}"
        return f"{option.name}{space}{value}"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Method) and self.technique.name == other.technique.name and self.options == other.options
        )

    def __hash__(self) -> int:
        return hash((self.technique.name, tuple(self.options.items())))

    def __repr__(self) -> str:
        given = "".join(f", {name}={value!r}" for name, value in self.options.items())
        return f"Method({self.technique.name!r}{given})"

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True, eq=False)
class Slot:
    """Where a method goes: option ``option`` of technique ``owner``, which ``verb``s it.

    ``given``: the owner's options that it gives every method (refused in the method).
    ``techniques``: the techniques it takes, each with the options it may take there
    (None: every attribution technique, with every option but ``given``).  ``words``:
    single words that name a method (SmoothGrad's ``guided``: saliency's guided gradient).
    """

    owner: str
    option: str
    verb: str
    given: tuple[str, ...] = ()
    techniques: Mapping[str, tuple[str, ...]] | None = None
    words: Mapping[str, tuple[str, Mapping[str, Any]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _SLOTS[(self.owner, self.option)] = self

    def usable(self) -> list[str]:
        if self.techniques is not None:
            return [*self.words, *self.techniques]
        from cnnvis_tasks.techniques import all_techniques

        return [technique.name for technique in all_techniques() if technique.attribution]

    def refusal(self, technique: Technique) -> str | None:
        """Why ``technique`` cannot go here, or None."""
        usable = ", ".join(self.usable())
        if not technique.attribution:
            return f"{technique.name} makes no attribution map to {self.verb} (usable: {usable})"
        if self.techniques is not None and technique.name not in self.techniques:
            return f"{self.owner} does not {self.verb} {technique.name} (usable: {usable})"
        return None

    def option_names(self, technique: Technique) -> tuple[str, ...]:
        """The options a method of ``technique`` may take here."""
        names = [option.name for option in technique.options if option.name not in self.given]
        if self.techniques is not None:
            names = [name for name in names if name in self.techniques.get(technique.name, ())]
        return tuple(names)

    def parse(self, value: Any) -> Method:
        """``value`` (text or a :class:`Method`) as a method that fits here, or a
        :class:`CnnvisError` saying what is wrong in one line."""
        if isinstance(value, Method):
            problem = self._misfit(value)
            if problem:
                raise CnnvisError(f"{self.owner} {self.option}={value!r}: {problem}")
            return value
        if not isinstance(value, str):
            raise CnnvisError(
                f"{self.owner} {self.option}: give a Method or text such as 'grad-cam', not a {type(value).__name__}"
            )
        return _parse_text(value, self)

    def problem(self, value: Any) -> str | None:
        """What is wrong with ``value`` here, in one line, or None (an option's ``check``)."""
        try:
            self.parse(value)
        except CnnvisError as error:
            return str(error)
        return None

    def _misfit(self, method: Method) -> str | None:
        refusal = self.refusal(method.technique)
        if refusal:
            return refusal
        allowed = self.option_names(method.technique)
        for name in method.options:
            if name not in allowed:
                given = f" (the {self.owner} job gives it to every method)" if name in self.given else ""
                return f"{method.technique.name} takes no {name} here{given}; it takes {', '.join(allowed) or 'none'}"
        return None


_SLOTS: dict[tuple[str, str], Slot] = {}


def slot_of(technique: Technique | str, option: str) -> Slot:
    """The slot of ``technique``'s method option ``option`` (``metrics``, ``explain``)."""
    from cnnvis_tasks.techniques import get_technique

    name = get_technique(technique).name  # its module, which defines the slot, is loaded
    return _SLOTS[(name, option)]


def _inner(technique: Technique, option: Option, value: Any) -> Any:
    """A method option's value inside a method as a :class:`Method` (text parsed)."""
    if option.kind == METHOD and value is not None and (technique.name, option.name) in _SLOTS:
        return _SLOTS[(technique.name, option.name)].parse(value)
    return value


@functools.lru_cache(maxsize=512)
def _parse_text(text: str, slot: Slot) -> Method:
    from cnnvis_tasks.cli.options import UnknownFlag, parse_flags
    from cnnvis_tasks.techniques import get_technique

    try:
        words = shlex.split(text)
    except ValueError as error:
        raise CnnvisError(f"method {text!r}: {error}") from None
    if not words:
        raise CnnvisError(f"an empty method: give a technique's name, e.g. {' or '.join(slot.usable()[:2])}")
    if len(words) == 1 and words[0] in slot.words:
        name, options = slot.words[words[0]]
        technique = get_technique(name)
        return Method._parsed(technique, {k: technique.option(k).parse(v) for k, v in options.items()}, text)
    try:
        technique = get_technique(words[0])
    except CnnvisError as error:
        raise CnnvisError(f"method {text!r}: {error}") from None
    refusal = slot.refusal(technique)
    if refusal:
        raise CnnvisError(f"method {text!r}: {refusal}")
    names = slot.option_names(technique)
    try:
        options = parse_flags(technique, words[1:], names)
    except UnknownFlag as error:
        allowed = [technique.option(name) for name in names]
        flags = [option.flag for option in allowed]
        flags += [f"--{option.negative}" for option in allowed if option.kind == BOOL and option.negative]
        name = error.word.partition("=")[0].lstrip("-").replace("-", "_")
        given = f" (the {slot.owner} job gives it to every method)" if name in slot.given else ""
        if not given and any(option.name == name for option in technique.options):
            given = f" inside {slot.owner}"
        known = ", ".join(sorted(flags)) or "none"
        raise CnnvisError(
            f"method {text!r}: {technique.name} has no option {error.word}{given}; its options: {known}"
        ) from None
    except CnnvisError as error:
        raise CnnvisError(f"method {text!r}: {error}") from None
    return Method._parsed(technique, options, text)
