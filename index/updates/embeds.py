"""What the index needs from an embedder: a structural protocol, so index/ never imports the engine.

Building or adding to a gallery embeds files; the index only needs the model's identity (its
fingerprint and path, recorded in the manifest so a gallery refuses other models), the vector
size, and a way to turn a list of paths into vectors batch by batch, with the files that could
not be read. :class:`siamese.engine.Embedder` satisfies :class:`Embeds` as it is, and so does
any stand-in with these members (benchmarks feed generated vectors through one).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
from numpy.typing import NDArray


class VectorBatch(Protocol):
    """One batch of embedded files: row i of ``embeddings`` is ``paths[i]``."""

    @property
    def embeddings(self) -> NDArray[np.float32]: ...

    @property
    def paths(self) -> Sequence[str]: ...

    @property
    def failures(self) -> Sequence[tuple[str, str]]:
        """(path, reason) of the batch's files that could not be embedded."""
        ...


class Embeds(Protocol):
    """The embedder a gallery update drives (see the module docstring)."""

    @property
    def fingerprint(self) -> str:
        """sha256 of the model file; a gallery holds vectors of one model only."""
        ...

    @property
    def dim(self) -> int:
        """Length of each vector."""
        ...

    @property
    def model_path(self) -> Path:
        """The model file, recorded so queries can find it later."""
        ...

    def iter_embed_paths(self, paths: list[str]) -> Iterator[VectorBatch]:
        """Embed ``paths`` batch by batch, in order; unreadable files go to a batch's failures."""
        ...
