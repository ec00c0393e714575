"""Training curves as PNG (the seed's show_plot, written to the run directory instead of a window)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from siamese.io import atomic_path


def plot_history(history: list[dict[str, Any]], path: Path) -> None:
    """Plot per-epoch training loss, and validation recall@1 when present, into ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    fig, loss_axis = plt.subplots(figsize=(7, 4))
    loss_axis.plot(epochs, [row["loss"] for row in history], color="tab:blue", marker="o", label="training loss")
    loss_axis.set_xlabel("epoch")
    loss_axis.set_ylabel("loss", color="tab:blue")
    recalls = [row.get("val_recall_at_1") for row in history]
    if any(r is not None for r in recalls):
        recall_axis = loss_axis.twinx()
        recall_axis.plot(epochs, recalls, color="tab:green", marker="s", label="validation recall@1")
        recall_axis.set_ylabel("validation recall@1 (unseen identities)", color="tab:green")
        recall_axis.set_ylim(0, 1.02)
    loss_axis.set_title("siamese training")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
