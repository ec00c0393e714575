"""The `siamese` command line: one module per verb group, registered here in pipeline order.

Heavy libraries are imported inside commands, so `siamese query` never loads PyTorch. User
mistakes surface as one line on stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

from typing import Annotated

import typer

from siamese import __version__
from siamese.cli.bench import bench
from siamese.cli.demo import demo
from siamese.cli.evaluate import eval_command
from siamese.cli.export import export
from siamese.cli.fields import speak_words
from siamese.cli.index import index_app
from siamese.cli.info import info
from siamese.cli.query import query
from siamese.cli.serve import serve
from siamese.cli.support import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_SKIPPED,
    out,
)
from siamese.cli.train import train

__all__ = ["EXIT_ERROR", "EXIT_OK", "EXIT_SKIPPED", "app"]

app = typer.Typer(
    name="siamese",
    help="Train Siamese towers, export them to ONNX, and search image galleries by identity.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version_callback(value: bool) -> None:
    if value:
        out.print(f"siamese {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_version_callback,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """Train Siamese towers, export them to ONNX, and search image galleries by identity."""


# The verbs, in the order of the pipeline (`siamese --help` lists them so).
app.command()(train)
app.command(
    help=(
        "Export the run's tower to ONNX (dynamic batch), verified against PyTorch (and variants "
        "against fp32)."
    ),
)(export)
app.add_typer(index_app, name="index")
app.command(
    help=(
        "Find the nearest gallery identities of each query image. Exit code 3: some queries were "
        "unreadable."
    ),
)(query)
app.command()(serve)
app.command(
    "eval",
    help=(
        "Measure identification (recall@k, mAP@R) and verification (ROC-AUC, EER, TAR@FAR) of "
        "MODEL on your data."
    ),
)(eval_command)
app.command()(info)
app.command()(bench)
app.command(
    help=(
        "Run the whole pipeline on generated identities: train, export, index unseen identities, "
        "query."
    ),
)(demo)
speak_words(app)  # every verb's --help names values in words, not Python types

if __name__ == "__main__":
    app()
