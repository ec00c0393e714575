"""The command line, an application: `siamese <verb>` and `siamese index <verb>` (Typer).

One module per verb group: main (train, export, eval, query, info, bench, demo), index (the
gallery verbs), serve (the HTTP service), and support (shared options, errors, output).
"""

from siamese.cli.main import app

__all__ = ["app"]
