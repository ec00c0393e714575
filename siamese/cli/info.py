"""`siamese info`: what a model or a gallery says about itself."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from siamese.cli.index import index_info
from siamese.cli.support import friendly_errors as _friendly_errors
from siamese.cli.support import (
    print_facts,
)
from siamese.core.errors import SiameseError


def _model_info(path: Path) -> dict[str, Any]:
    from siamese.engine import open_query_embedder

    embedder = open_query_embedder(path, device="cpu")
    session_input = embedder.session.get_inputs()[0]
    return {
        "kind": "model",
        "path": str(path),
        "fingerprint": embedder.fingerprint,
        "size_bytes": path.stat().st_size,
        "embeds": embedder.kind,
        "input": {"name": session_input.name, "shape": [str(d) for d in session_input.shape]},
        **embedder.info.to_dict(),
        **({"pair": embedder.pair.to_dict()} if embedder.pair is not None else {}),
    }


@_friendly_errors
def info(
    path: Annotated[Path, typer.Argument(help="A model.onnx or a gallery directory.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Show what a model or a gallery holds (a gallery as `siamese index info` shows it)."""
    if path.is_dir():
        index_info(gallery_arg=path, as_json=as_json)
    elif path.is_file():
        print_facts(_model_info(path), as_json)
    else:
        raise SiameseError(
            f"{path}: no such file or folder (expected a model.onnx or a gallery directory)"
        )
