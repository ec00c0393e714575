"""MkDocs hook: the command-line reference, generated from the Typer app at build time.

The page ``reference/cli.md`` holds the marker ``<!-- cli-reference -->``; this hook replaces it
with every visible command of ``siamese.cli.app``: its help, usage, arguments and options grouped
in the same panels as ``--help`` shows them. The text comes from the commands themselves (the
options of train, eval, serve, index build, index add and demo come from their configs), so the
reference cannot drift from the program. Typer bundles its own copy of click, which
``mkdocs-click`` does not read; the walk below uses the parameters' own help records instead.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any

MARKER = "<!-- cli-reference -->"
_RICH_MARKUP = re.compile(r"\[/?(?:bold|italic|red|green|yellow|dim|cyan|blue)\]")


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Expand the marker on the page that holds it; other pages pass through."""

    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, render_reference())


def render_reference() -> str:
    """Markdown for every visible command, in the order ``siamese --help`` lists them."""

    import typer

    from siamese.cli import app

    root = typer.main.get_command(app)
    context = type(root).context_class(root, info_name="siamese")
    return "\n\n".join(_render(command, ctx) for command, ctx in _walk(root, context))


def _walk(command: Any, ctx: Any) -> Iterator[tuple[Any, Any]]:
    """Each command with its context, depth first; groups give their subcommands."""

    commands = getattr(command, "commands", None)
    if commands is None:
        yield command, ctx
        return
    for name in command.list_commands(ctx):
        sub = commands[name]
        if not sub.hidden:
            yield from _walk(sub, type(ctx)(sub, info_name=name, parent=ctx))


def _text(value: str) -> str:
    """Help text as Markdown: rich markup dropped, angle brackets kept visible."""

    return html.escape(_RICH_MARKUP.sub("", value), quote=False)


def _render(command: Any, ctx: Any) -> str:
    path = ctx.command_path
    usage = command.get_usage(ctx).removeprefix("Usage: ")
    usage = re.sub(r"\{([A-Z_]+)\}", r"\1", usage)
    lines = [f"## `{path}`", "", _text(command.help or ""), "", "```text", usage, "```"]
    panels: dict[str, list[str]] = {}
    for param in command.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is None or getattr(param, "hidden", False) or param.name == "help":
            continue
        names, help_text = record
        panel = getattr(param, "rich_help_panel", None)
        if panel is None:
            panel = "Arguments" if param.param_type_name == "argument" else "Options"
        panels.setdefault(panel, []).append(f"- `{names}`: {_text(help_text)}")
    for panel, items in sorted(panels.items(), key=lambda item: item[0] != "Arguments"):
        lines += ["", f"**{panel}**", "", *items]
    return "\n".join(lines)
