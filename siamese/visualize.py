"""Pictures of search results: each query beside its nearest gallery images and their distances.

The seed's imshow printed a "Dissimilarity" under each pair; this draws a whole row per query,
marking matches of the expected identity (when known) in green and others in red.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from siamese.index.results import QueryResult
from siamese.io import atomic_path

_THUMB = 2.0  # inches per thumbnail


def _thumbnail(path: str):
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as image:
            return ImageOps.exif_transpose(image).convert("RGB")
    except (OSError, ValueError):
        return Image.new("RGB", (64, 64), (128, 128, 128))


def plot_query_results(
    queries: Sequence[str],
    results: Sequence[QueryResult],
    out_path: str | os.PathLike[str],
    *,
    expected: Sequence[str | None] | None = None,
    k: int = 5,
) -> Path:
    """Write a PNG grid: one row per query, the query then its top-k matches with distances."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = max(1, len(queries))
    cols = 1 + max([min(k, len(r.matches)) for r in results] + [1])
    fig, axes = plt.subplots(rows, cols, figsize=(cols * _THUMB, rows * (_THUMB + 0.4)), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for row, (query, result) in enumerate(zip(queries, results)):
        want = expected[row] if expected else None
        axes[row][0].imshow(_thumbnail(query), cmap="gray")
        axes[row][0].set_title(f"query\n{Path(query).name}" + (f" ({want})" if want else ""), fontsize=9)
        for col, match in enumerate(result.matches[:k], start=1):
            axes[row][col].imshow(_thumbnail(match.path), cmap="gray")
            colour = "black" if want is None else ("green" if match.identity == want else "red")
            axes[row][col].set_title(f"{match.identity}\nDissimilarity: {match.distance:.3f}", fontsize=9, color=colour)
    fig.tight_layout()
    out_path = Path(out_path)
    with atomic_path(out_path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)
    return out_path
