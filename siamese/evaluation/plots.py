"""Pictures of search results: each query beside its nearest gallery images and their distances.

The seed's imshow printed a "Dissimilarity" under each pair; this draws a whole row per query,
marking matches of the expected identity (when known) in green and others in red.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from siamese.core.errors import ImageDecodeError
from siamese.core.files import atomic_path
from siamese.data.images import thumbnail
from siamese.index import QueryResult

_THUMB = 2.0  # inches per thumbnail


def _thumbnail(path: str):
    """The image as the service shows it, or a grey square when it cannot be shown."""
    from PIL import Image

    try:
        return thumbnail(path, 256).convert("RGB")
    except ImageDecodeError:
        return Image.new("RGB", (64, 64), (128, 128, 128))


def plot_query_results(
    queries: Sequence[str],
    results: Sequence[QueryResult],
    out_path: str | os.PathLike[str],
    *,
    expected: Sequence[str | None] | None = None,
    k: int = 5,
    texts: bool = False,
) -> Path:
    """Write a PNG grid: one row per query, the query then its top-k matches with distances.

    ``texts``: the queries are texts (a text → image pair), shown as wrapped words, not images.
    """
    plt = _pyplot()
    rows = max(1, len(queries))
    cols = 1 + max([min(k, len(r.matches)) for r in results] + [1])
    fig, axes = plt.subplots(
        rows, cols, figsize=(cols * _THUMB, rows * (_THUMB + 0.4)), squeeze=False
    )
    for axis in axes.flat:
        axis.axis("off")
    for row, (query, result) in enumerate(zip(queries, results)):
        want = expected[row] if expected else None
        verdict = "\nunknown (beyond threshold)" if result.unknown else ""
        if texts:
            import textwrap

            axes[row][0].text(
                0.5, 0.5, textwrap.fill(query, 22), ha="center", va="center", fontsize=8, wrap=True
            )
        else:
            axes[row][0].imshow(_thumbnail(query), cmap="gray")
        label = "text" if texts else Path(query).name
        axes[row][0].set_title(
            f"query\n{label}" + (f" ({want})" if want else "") + verdict,
            fontsize=9,
            color="darkorange" if result.unknown else "black",
        )
        for col, match in enumerate(result.matches[:k], start=1):
            axes[row][col].imshow(_thumbnail(match.path), cmap="gray")
            colour = "black" if want is None else ("green" if match.identity == want else "red")
            axes[row][col].set_title(
                f"{match.identity}\nDissimilarity: {match.distance:.3f}", fontsize=9, color=colour
            )
    fig.tight_layout()
    return _save(fig, out_path)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out_path: str | os.PathLike[str]) -> Path:
    out_path = Path(out_path)
    with atomic_path(out_path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    _pyplot().close(fig)
    return out_path


def plot_roc(curve, out_path: str | os.PathLike[str], *, fars: Sequence[float] = ()) -> Path:
    """ROC of verification (TAR against FAR, log-scaled FAR) with the target FARs marked."""
    plt = _pyplot()
    fig, axis = plt.subplots(figsize=(6, 4.5))
    floor = 1.0 / max(1, len(curve.far) * 10)
    axis.plot(np.maximum(curve.far, floor), curve.tar, color="tab:blue")
    for far in fars:
        axis.axvline(far, color="grey", linestyle=":", linewidth=1)
        axis.text(far, 0.02, f" FAR {far:g}", fontsize=8, color="grey")
    axis.set(
        xscale="log",
        xlabel="false accept rate",
        ylabel="true accept rate",
        ylim=(0, 1.02),
        title="verification ROC",
    )
    axis.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, out_path)


def plot_distance_histograms(
    same, different, thresholds: dict[float, float], out_path: str | os.PathLike[str]
) -> Path:
    """Histograms of same-identity and different-identity distances, with FAR thresholds marked."""
    plt = _pyplot()
    fig, axis = plt.subplots(figsize=(7, 4.5))
    bins = np.linspace(
        0, float(max(np.max(same, initial=0), np.max(different, initial=0))) * 1.02 + 1e-9, 60
    )
    axis.hist(
        different,
        bins=bins,
        alpha=0.6,
        density=True,
        color="tab:red",
        label=f"different identity ({len(different)} pairs)",
    )
    axis.hist(
        same,
        bins=bins,
        alpha=0.6,
        density=True,
        color="tab:green",
        label=f"same identity ({len(same)} pairs)",
    )
    for far, threshold in thresholds.items():
        axis.axvline(threshold, color="black", linestyle="--", linewidth=1)
        axis.text(threshold, axis.get_ylim()[1] * 0.9, f" FAR {far:g}", fontsize=8)
    axis.set(
        xlabel="L2 distance", ylabel="density", title="distances between query and gallery images"
    )
    axis.legend()
    fig.tight_layout()
    return _save(fig, out_path)
