"""Config fields that describe themselves: help text and option names live beside the field.

A dataclass field made with :func:`setting` carries a :class:`Setting` in its metadata. The
command line (siamese/cli/fields.py) turns every such field into an option mechanically: the
type, the default and the closed choices (``Literal[...]``) come from the dataclass, the help and
the names from the Setting. So a default, a choice or a name is written once and the config and
the CLI cannot drift apart. This module imports nothing but the standard library and the errors
module: configs of any layer may use it.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field
from typing import Any, Literal, get_args, get_origin

from siamese.core.errors import named

METADATA_KEY = "setting"


@dataclass(frozen=True)
class Setting:
    """How one config field appears on a command line.

    Attributes:
        help: the option's help text.
        names: option names (default: ``--field-name``, and ``--field-name/--no-field-name``
            for booleans).
        aliases: older names still accepted for the same field, hidden from ``--help``.
        min, max: bounds a number must respect (checked by the parser, before the config).
        argument: a positional argument instead of an option.
        parse, show: for fields the command line writes as text (``--widths 16,32``): text →
            value, and value → text for the default shown in ``--help``.
    """

    help: str
    names: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    min: float | None = None
    max: float | None = None
    argument: bool = False
    parse: Callable[[str], Any] | None = None
    show: Callable[[Any], str] | None = None


def setting(default: Any = MISSING, help: str = "", **how: Any) -> Any:
    """A dataclass field with its command-line description (see :class:`Setting`)."""
    return field(default=default, metadata={METADATA_KEY: Setting(help, **how)})


def setting_of(item: dataclasses.Field[Any]) -> Setting | None:
    """The Setting a field was declared with, or None for a field that is not on a command line."""
    return item.metadata.get(METADATA_KEY)


def choices_of(annotation: Any) -> tuple[Any, ...] | None:
    """The values a ``Literal[...]`` (or ``Literal[...] | None``) annotation allows.

    None if open.
    """
    if get_origin(annotation) is Literal:
        return get_args(annotation)
    inner = [a for a in get_args(annotation) if a is not type(None)]
    if len(inner) == 1 and get_origin(inner[0]) is Literal:
        return get_args(inner[0])
    return None


def check_choices(config: Any) -> str | None:
    """The first field of ``config`` whose value its Literal type does not allow, as a message."""
    hints = typing.get_type_hints(type(config))
    for item in dataclasses.fields(config):
        allowed = choices_of(hints[item.name])
        value = getattr(config, item.name)
        if allowed is not None and value is not None and value not in allowed:
            return (
                f"{named(item.name)} must be one of {', '.join(map(str, allowed))}, got {value!r}"
            )
    return None
