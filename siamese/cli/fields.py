"""Command-line options generated from a config dataclass's fields (siamese/core/config_fields.py).

:func:`config_options` gives a Typer command one option per field: the field's type (a
``Literal`` becomes a choice), its default, and the help, names, bounds and hidden aliases its
:class:`~siamese.core.config_fields.Setting` declares. :func:`config_from_options` maps the parsed
values back onto the dataclass, one field each. Nothing is mapped by hand, so an option cannot
be forgotten, renamed on one side only, or given a second default.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from typer.core import TyperArgument, TyperCommand, TyperOption

from siamese.core.config_fields import Setting, setting_of
from siamese.core.errors import ConfigError

C = TypeVar("C")
F = TypeVar("F", bound=Callable[..., Any])
_ALIAS = "__alias_"  # parameter name of a hidden alias: FIELD__alias_N


def _described_fields(cls: type) -> list[tuple[dataclasses.Field[Any], Setting]]:
    described = []
    for item in dataclasses.fields(cls):
        how = setting_of(item)
        if how is None:
            raise TypeError(f"{cls.__name__}.{item.name} has no setting(): no option describes it")
        described.append((item, how))
    return described


def config_parameters(cls: type) -> list[inspect.Parameter]:
    """One keyword-only parameter per field of ``cls``, typed for Typer; hidden aliases after."""
    hints = typing.get_type_hints(cls)
    parameters, aliases = [], []
    for item, how in _described_fields(cls):
        annotation = hints[item.name]
        default: Any = item.default
        if default is dataclasses.MISSING:
            default = inspect.Parameter.empty
        if how.parse is not None:  # written as text on the command line
            annotation = str | None if default is None else str
            if default not in (None, inspect.Parameter.empty) and how.show is not None:
                default = how.show(default)
        panel = _panel_of(cls, item.name)
        if how.argument:
            info: Any = typer.Argument(help=how.help, metavar=item.name.upper())
        else:
            info = typer.Option(
                *how.names,
                help=how.help,
                min=how.min,
                max=how.max,
                metavar=_metavar(annotation),
                rich_help_panel=panel,
            )
        parameters.append(
            inspect.Parameter(
                item.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=default,
                annotation=Annotated[annotation, info],
            )
        )
        for number, alias in enumerate(how.aliases):
            hidden = typer.Option(alias, hidden=True, min=how.min, max=how.max)
            aliases.append(
                inspect.Parameter(
                    f"{item.name}{_ALIAS}{number}",
                    inspect.Parameter.KEYWORD_ONLY,
                    default=None,
                    annotation=Annotated[annotation | None, hidden],
                )
            )
    return parameters + aliases


def _panel_of(cls: type, name: str) -> str | None:
    """The help panel a config groups the field under (its ``PANELS``), if any."""
    for panel, names in getattr(cls, "PANELS", {}).items():
        if name in names:
            return panel
    return None


def _metavar(annotation: Any) -> str | None:
    """What ``--help`` shows after an option: a word for its value, nothing after a flag.

    Closed choices keep Typer's own list; Python type names never show.
    """
    from siamese.core.config_fields import choices_of

    if choices_of(annotation) is not None:
        return None
    kinds = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
    kind = kinds[0]
    if kind is bool:
        return ""
    if kind is Path or "path" in str(kind).lower():
        return "PATH"
    return {int: "N", float: "X"}.get(kind, "TEXT")


class WordsNotTypes(TyperCommand):
    """A verb whose ``--help`` names values in words (PATH, N, TEXT) and shows flags bare.

    Typer's own labels speak Python (``<bool>``, ``<str>``, ``<list[Path]>``); a user of the
    command line needs to know what to type, not the annotation behind it. Closed choices keep
    their list. Generated options already carry a word (:func:`_metavar`); this covers the
    verbs' own options, their arguments and ``--help``.
    """

    def get_params(self, ctx: Any) -> list[Any]:
        """The parameters, each with a word for its value (or none, for a flag)."""
        params = super().get_params(ctx)
        for param in params:
            if type(param) is TyperArgument:
                param.__class__ = _WordArgument  # its name (the metavar) says it; no type column
            elif isinstance(param, TyperOption) and param.metavar is None:
                param.metavar = _word_of(param)
        return params


def speak_words(app: typer.Typer) -> None:
    """Give every verb registered on ``app`` so far the :class:`WordsNotTypes` help."""
    for command in app.registered_commands:
        if command.cls in (None, TyperCommand):
            command.cls = WordsNotTypes


class _WordArgument(TyperArgument):
    def display_type_rich(self, ctx: Any) -> str | None:
        return None


def _word_of(param: TyperOption) -> str | None:
    """The word ``--help`` shows after an option: none after a flag; None keeps a choice list."""
    if param.is_flag:
        return ""
    kind = param.type_descriptor
    if kind.is_choice:
        return None
    items = typing.get_args(kind.annotation) if kind.is_list else (kind.annotation,)
    return _metavar(items[0] if items else str) or "TEXT"


def with_config_options(cls: type) -> Callable[[F], F]:
    """Decorate ``command(*, own options…, **fields)`` so Typer sees ``cls``'s fields as options.

    The command's own parameters (CLI-only options such as ``--json``) keep their annotations;
    every field of ``cls`` arrives in ``**fields`` for :func:`config_from_options`.
    """

    def decorate(command: F) -> F:
        own = [
            p
            for p in inspect.signature(command, eval_str=True).parameters.values()
            if p.kind is not inspect.Parameter.VAR_KEYWORD
        ]
        generated = config_parameters(cls)
        names = {p.name for p in generated}
        clash = [p.name for p in own if p.name in names]
        if clash:
            raise TypeError(f"{command.__name__}: {clash} are already fields of {cls.__name__}")
        command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [*generated, *(p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own)]
        )
        return command

    return decorate


def config_from_options(cls: type[C], values: dict[str, Any]) -> C:
    """The ``cls`` the parsed options describe: each field from its option, or from an alias.

    Raises:
        ConfigError: an option and its alias both given with different values, or text a field's
            ``parse`` refuses.
    """
    chosen: dict[str, Any] = {}
    for item, how in _described_fields(cls):
        value = values[item.name]
        for number, alias in enumerate(how.aliases):
            given = values.get(f"{item.name}{_ALIAS}{number}")
            if given is None:
                continue
            if value not in (given, _shown_default(item, how)):
                primary = how.names[0] if how.names else "--" + item.name.replace("_", "-")
                raise ConfigError(f"{alias} is another name for {primary}: give one of them")
            value = given
        if how.parse is not None and isinstance(value, str):
            value = how.parse(value)
        chosen[item.name] = value
    return cls(**chosen)


def _shown_default(item: dataclasses.Field[Any], how: Setting) -> Any:
    default = item.default
    if (
        how.parse is not None
        and how.show is not None
        and default not in (None, dataclasses.MISSING)
    ):
        return how.show(default)
    return default


def option_names(cls: type) -> dict[str, tuple[str, ...]]:
    """Every field's option names, visible ones first, then its hidden aliases (for tests/docs)."""
    names = {}
    for item, how in _described_fields(cls):
        own = how.names or ("--" + item.name.replace("_", "-"),)
        names[item.name] = (*own, *how.aliases)
    return names
