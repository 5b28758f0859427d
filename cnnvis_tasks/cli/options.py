"""A technique's options on the command line: one click parameter per :class:`Option`.

Each parameter's type converts and checks its values with :meth:`Option.parse`, the
same parser as the config check and the Python verb, so a bad value gets the same
message everywhere (here as a usage error naming the flag); its help text and
metavar are click's usual ones for the option's kind (``INTEGER RANGE``, ``[a|b]``,
the range after the default).  :func:`parse_flags` parses a method given as text
(``'grad-cam --layer X'``) with that technique's own parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

from cnnvis_tasks.errors import CnnvisError
from cnnvis_tasks.technique import BOOL, CHOICE, FILTER, FLOAT, INT, TARGET, Option, Technique


class OptionType(click.ParamType):
    """A click type that parses with :meth:`Option.parse`.  ``keep_text``: a valid value
    is kept as given (a repeated ``--filter all`` or ``--target label`` stays text until
    its row is computed: file names and the image list's labels read it)."""

    def __init__(self, option: Option, keep_text: bool = False, **shape: Any):
        super().__init__(**shape)
        self.option, self.keep_text = option, keep_text

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            parsed = self.option.parse(value)
        except ValueError as error:
            self.fail(str(error), param, ctx)
        return value if self.keep_text else parsed


# The shapes click shows in --help (metavar, range), with Option.parse as their parser.
class _IntOption(OptionType, click.IntRange):
    pass


class _FloatOption(OptionType, click.FloatRange):
    pass


class _ChoiceOption(OptionType, click.Choice):
    pass


class _TextOption(OptionType, click.types.StringParamType):
    pass


def option_type(option: Option, keep_text: bool = False) -> OptionType:
    """The click type of ``option``."""
    if option.kind == INT:
        return _IntOption(option, keep_text, min=option.minimum, max=option.maximum)
    if option.kind == FLOAT:
        low = option.above if option.above is not None else option.minimum
        return _FloatOption(option, keep_text, min=low, max=option.maximum, min_open=option.above is not None)
    if option.kind == CHOICE:
        return _ChoiceOption(option, keep_text, choices=option.choices)
    return _TextOption(option, keep_text)


def negative_flag(option: Option) -> str:
    """A boolean's "off" flag: ``--mean``, ``--no-robust``."""
    return f"--{option.negative or 'no-' + option.name.replace('_', '-')}"


def option_param(option: Option) -> click.Option:
    """The click option of a technique option."""
    show_default: Any = option.default_text or True
    if option.kind == BOOL:
        return click.Option(
            [f"{option.flag}/{negative_flag(option)}"],
            default=bool(option.default),
            help=option.help,
            show_default=show_default,
        )
    multiple = option.repeatable or option.per_image
    if multiple:
        default = () if option.default is None else (option.default,)
    else:
        default = option.default
    if option.default is None and not option.default_text:
        show_default = False
    text = option.help if not option.repeatable or "repeat" in option.help else option.help + " Repeatable."
    return click.Option(
        [option.flag],
        type=option_type(option, keep_text=multiple and option.kind in (TARGET, FILTER)),
        multiple=multiple,
        default=default,
        required=option.required,
        metavar=option.metavar,
        help=text,
        show_default=show_default,
    )


# --- a method's flags --------------------------------------------------------------------


class UnknownFlag(CnnvisError):
    """A word of a method's text that names none of the options it may take."""

    def __init__(self, word: str):
        super().__init__(f"no option {word}")
        self.word = word


_ORDER = "cnnvis.order"


class _InOrder(click.Command):
    """A command that notes its options as they were given: in order, each time."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        _values, _rest, order = self.make_parser(ctx).parse_args(args=list(args))
        ctx.meta[_ORDER] = [param.name for param in order]
        return super().parse_args(ctx, args)


_COMMANDS: dict[tuple[str, tuple[str, ...]], click.Command] = {}


def _flags_command(technique: Technique, names: tuple[str, ...]) -> click.Command:
    key = (technique.name, names)
    if key not in _COMMANDS:
        _COMMANDS[key] = _InOrder(
            technique.name,
            params=[option_param(technique.option(name)) for name in names],
            add_help_option=False,
            context_settings={"allow_extra_args": True, "help_option_names": []},
        )
    return _COMMANDS[key]


def parse_flags(technique: Technique, words: Sequence[str], names: Sequence[str]) -> dict[str, Any]:
    """``words`` (flags and values, as a shell splits them) parsed by ``technique``'s own
    click options, those of ``names`` only: the options given, in the order given, one
    value each (a method is one setting), as :meth:`Option.parse` makes them.

    Raises :class:`UnknownFlag` for a word that names none of them, and a
    :class:`CnnvisError` in one line for a bad value, a flag without its value or an
    option given twice."""
    command = _flags_command(technique, tuple(names))
    try:
        context = command.make_context(technique.name, list(words))
    except click.NoSuchOption as error:
        raise UnknownFlag(error.option_name) from None
    except click.BadParameter as error:
        flag = error.param.opts[0] if error.param is not None else error.param_hint
        raise CnnvisError(f"{flag}: {error.message}") from None
    except click.BadOptionUsage as error:
        if "requires an argument" in error.message:
            raise CnnvisError(f"{error.option_name} needs a value") from None
        raise CnnvisError(error.message) from None
    except click.UsageError as error:
        raise CnnvisError(error.message) from None
    if context.args:
        raise UnknownFlag(context.args[0])
    given: dict[str, Any] = {}
    for name in context.meta[_ORDER]:
        option = technique.option(name)
        if name in given:
            raise CnnvisError(f"{option.flag} given twice (a method is one setting)")
        value = context.params[name]
        given[name] = option.parse(value[0] if isinstance(value, tuple) else value)
    return given
