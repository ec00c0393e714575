"""What every `siamese` command shares: consoles, exit codes, one-line errors, JSON, options."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from siamese.core.errors import GalleryError, SiameseError
from siamese.core.extras import MissingExtraError, missing_extra

#: How --gallery names a gallery in Milvus (docs/milvus.md).
MILVUS_HELP = ", or a Milvus collection: milvus://HOST:PORT/NAME or milvus-lite:FILE.db"
#: Exit codes: success, failure, and "finished but some input files were skipped".
EXIT_OK, EXIT_ERROR, EXIT_SKIPPED = 0, 1, 3
#: Exit code of a verb that needs an extra the install lacks (`pip install "siamese[train]"`).
EXIT_MISSING_EXTRA = 2

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
F = TypeVar("F", bound=Callable[..., Any])


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"
    tensorrt = "tensorrt"


def friendly_errors(command: F) -> F:
    """Turn expected errors into one stderr line and exit code 1.

    A module that only an extra of the install brings (PyTorch for train and export, Ray, the
    onnxruntime build) is not a bug but a missing extra: one line naming the install command,
    exit code 2 (siamese/core/extras.py).
    """

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (MissingExtraError, ModuleNotFoundError) as exc:
            missing = missing_extra(exc, _verb())
            if missing is None:
                raise
            err.print(
                f"[red]error:[/red] {escape(in_flags(missing))}", highlight=False, soft_wrap=True
            )
            raise typer.Exit(EXIT_MISSING_EXTRA) from None
        except SiameseError as exc:
            err.print(f"[red]error:[/red] {escape(in_flags(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_ERROR) from None
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def _verb() -> str | None:
    """The running verb as the user typed it (``siamese index build``), for one-line errors."""
    ctx = current_context()
    return " ".join(["siamese", *ctx.command_path.split()[1:]]) if ctx is not None else None


def current_context() -> Any:
    """The click context of the running command, or None outside one.

    Typer 0.29 runs commands on its own copy of click (typer._click), whose context stack is
    not click's; either is asked, whichever is running the command.
    """
    import importlib

    for name in ("typer._click.globals", "click.globals"):
        try:
            ctx = importlib.import_module(name).get_current_context(silent=True)
        except ImportError:
            continue
        if ctx is not None:
            return ctx
    return None


def in_flags(exc: SiameseError) -> str:
    """The error's message with each setting it names written as the running verb's option.

    Stage errors name settings, not flags (siamese/core/errors.py ``named``); the verb that ran
    knows its options, generated from the same config fields, so ``out_dir`` becomes ``--out``
    under ``siamese train`` and the gallery folder ``--gallery`` under ``siamese index build``.
    A setting the verb lacks is shown as another verb's option (``text`` → ``--text`` of
    ``siamese query``), and one no verb has keeps its name.
    """
    ctx = current_context()
    flags = verb_flags(ctx)
    if ctx is not None and set(exc.settings) - set(flags):
        flags = {**_other_verbs_flags(ctx.find_root().command), **flags}
    return exc.worded(lambda setting: flags.get(setting, setting))


def verb_flags(ctx: Any) -> dict[str, str]:
    """Setting name → how the verb of ``ctx`` spells it: ``--flag`` (option) or NAME (argument).

    Found by parameter name (the config field the option was generated from) and by flag
    (``model`` is ``--model`` even where the field is ``model_path``); hidden aliases never show.
    """
    return {} if ctx is None else _spellings(ctx.command, arguments=True)


def _spellings(command: Any, *, arguments: bool) -> dict[str, str]:
    by_flag: dict[str, str] = {}
    by_name: dict[str, str] = {}
    for param in command.params:
        if getattr(param, "hidden", False) or param.name is None:
            continue
        if param.param_type_name == "argument":
            if arguments:
                by_name[param.name] = param.metavar or param.name.upper()
            continue
        longs = [name for name in param.opts if name.startswith("--")]
        by_name[param.name] = (longs or param.opts)[0]
        for name in longs:
            by_flag[name[2:].replace("-", "_")] = name
    return {**by_flag, **by_name}


def _other_verbs_flags(command: Any) -> dict[str, str]:
    """Every verb's options, the first verb (in ``siamese --help`` order) winning a clash."""
    found: dict[str, str] = {}
    if hasattr(command, "commands"):  # a group
        for sub in command.commands.values():
            for setting, flag in _other_verbs_flags(sub).items():
                found.setdefault(setting, flag)
    else:
        found = _spellings(command, arguments=False)
    return found


def print_json(payload: Any) -> None:
    """Machine-readable output on stdout."""
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")


def report_skipped(failures: list[tuple[str, str]]) -> None:
    """One stderr line per input file that was refused, with its reason.

    File names are printed as text, never as markup (a file may be named "[/x].png"); names
    that are not UTF-8 come out backslash-escaped (stderr's error handler), never as a crash.
    """
    for path, reason in failures:
        err.print(
            f"[yellow]skipped[/yellow] {escape(path)}: {escape(reason)}",
            highlight=False,
            soft_wrap=True,
        )


def search_params(nprobe: int | None, ef_search: int | None) -> dict[str, int] | None:
    """The search parameters given on the command line (None when neither was)."""
    params = {
        name: value
        for name, value in (("nprobe", nprobe), ("efSearch", ef_search))
        if value is not None
    }
    return params or None


def print_facts(facts: dict[str, Any], as_json: bool) -> None:
    """Key/value facts (of a model or a gallery) as JSON or as a two-column table."""
    if as_json:
        print_json(facts)
        return
    from rich.table import Table

    table = Table(show_header=False, show_edge=False)
    for key, value in facts.items():
        if key == "identity_counts":
            value = (
                f"{len(value)} identities: "
                + ", ".join(f"{k} ({v})" for k, v in list(value.items())[:10])
                + (" …" if len(value) > 10 else "")
            )
        elif key == "parts" and isinstance(value, list):  # on-disk data files, without checksums
            value = ", ".join(
                f"{part['name']} ({part['role']}, {part['count']} items, {part['bytes']} bytes)"
                for part in value
            )
        elif isinstance(value, dict):
            value = json.dumps(value)
        table.add_row(key, str(value))
    out.print(table)


#: ``--gallery`` names the gallery directory on every command that takes one.
GalleryOption = Annotated[
    Path | None,
    typer.Option("--gallery", "-g", help=f"Gallery directory{MILVUS_HELP}.", show_default=False),
]
#: The older form, the gallery as the first argument, still accepted.
GalleryArgument = Annotated[
    Path | None,
    typer.Argument(help="Gallery directory (or --gallery).", show_default=False, metavar="GALLERY"),
]


def one_gallery(
    option: Path | None, positional: Path | None, old_name: str = "GALLERY", *, exists: bool = True
) -> Path:
    """The gallery given as ``--gallery`` or in the older form (``old_name``): once, not twice.

    Raises:
        typer.BadParameter: neither given, or two different galleries.
        GalleryError: ``exists`` and the folder is missing (one line, not a traceback).
    """
    if option is None and positional is None:
        raise typer.BadParameter("give the gallery directory", param_hint="--gallery")
    if option is not None and positional is not None and option != positional:
        raise typer.BadParameter(
            f"two galleries given ({old_name} {positional} and --gallery {option})",
            param_hint="--gallery",
        )
    gallery: Path = option if option is not None else positional  # type: ignore[assignment]
    from siamese.index.location import is_milvus  # a Milvus collection: its store checks it

    if exists and not is_milvus(gallery) and not gallery.is_dir():
        raise GalleryError(
            f"{gallery}: gallery folder not found (build one with `siamese index build`)"
        )
    return gallery
