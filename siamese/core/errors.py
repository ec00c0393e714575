"""Typed errors: every user mistake becomes one of these, and the CLI prints it as one line.

A message that tells the user to change a setting names it with :func:`named` (the config
field's name, ``out_dir``), never with a command-line flag: the stages do not know which command,
if any, called them. A library user reads the field's name; the command line shows the option
of the command that ran instead (``--out`` for ``siamese train``, ``--gallery`` for
``siamese index build``), since siamese/cli/support.py knows the verb's options.
"""

from __future__ import annotations

import re
from collections.abc import Callable

# Private-use code points around a setting's name: no path or message text holds them, so a
# marked name is found again without ambiguity, and they never reach a user (see SiameseError).
_START, _END = "\ue000", "\ue001"
_NAMED = re.compile(f"{_START}([A-Za-z_][A-Za-z0-9_]*){_END}")


def named(setting: str) -> str:
    """``setting`` (a config field's name, e.g. ``"out_dir"``) marked inside an error message.

    The error shows it as the name itself (``out_dir``) and records it in ``settings``; the
    command line writes the option of the verb that ran in its place (``--out``).
    """
    return f"{_START}{setting}{_END}"


class SiameseError(Exception):
    """Base class of every error the product raises on purpose (bad input, mismatches).

    Attributes:
        settings: the settings the message names (config field names), in order; empty if none.
        template: the message with its settings still marked (:func:`named`), so a caller that
            knows other names for them (the CLI's flags) can word it (:meth:`worded`), or a
            wrapping error can keep them (``RunError(f"rank 1: {exc.template}")``).
    """

    settings: tuple[str, ...] = ()
    _template: str | None = None

    def __init__(self, *args: object) -> None:
        if args and isinstance(args[0], str) and _START in args[0]:
            self._template = args[0]
            self.settings = tuple(dict.fromkeys(_NAMED.findall(args[0])))
            args = (_NAMED.sub(r"\1", args[0]), *args[1:])
        super().__init__(*args)

    @property
    def setting(self) -> str | None:
        """The first setting the message names (the one to change), or None."""
        return self.settings[0] if self.settings else None

    @property
    def template(self) -> str:
        """The message with its settings marked (plain text when it names none)."""
        return self._template if self._template is not None else str(self)

    def worded(self, name_of: Callable[[str], str]) -> str:
        """The message with each setting written as ``name_of(setting)`` (e.g. its flag)."""
        return _NAMED.sub(lambda match: name_of(match.group(1)), self.template)


class DataError(SiameseError):
    """A dataset or image folder is missing, empty or malformed."""


class ImageDecodeError(DataError):
    """One image file cannot be decoded; carries the path so batch jobs can report and skip it.

    ``kind`` says what class of problem it is, so a caller (the HTTP service) can answer
    differently without parsing the message: "missing", "empty", "too_large" (bytes or pixels),
    "unsupported" (not an image, or a format outside the allow-list) or "corrupt".
    """

    def __init__(self, path: str, reason: str, *, kind: str = "corrupt") -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason
        self.kind = kind


class ConfigError(SiameseError):
    """A configuration value is invalid (unknown tower, bad size, inconsistent options)."""


class RunError(SiameseError):
    """A training run directory is missing or incomplete."""


class ModelError(SiameseError):
    """An ONNX model is missing, unreadable, or not a siamese model."""


class ParityError(SiameseError):
    """The exported ONNX model does not reproduce the PyTorch tower within tolerance."""


class DeviceUnavailableError(SiameseError):
    """The execution provider the user insisted on cannot run on this machine."""


class GalleryError(SiameseError):
    """A gallery directory is missing, incomplete or inconsistent."""


class ModelMismatchError(GalleryError):
    """A gallery was built with a different model than the one offered to search it."""


class GalleryLockedError(GalleryError):
    """Another process is writing the gallery; writers take turns."""


class RecallTooLowError(GalleryError):
    """An approximate index does not reach the recall the user asked for; nothing was published."""
