"""Training curves as PNG (the seed's show_plot, written to the run directory, not a window)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from siamese.core.files import atomic_path

_VALIDATION_CURVES = (
    ("val_map_at_r", "mAP@R", "tab:green"),
    ("val_recall_at_1", "recall@1", "tab:orange"),
    ("val_roc_auc", "ROC-AUC", "tab:purple"),
)


def plot_history(history: list[dict[str, Any]], path: Path) -> None:
    """Plot per-epoch training loss and, when present, validation metrics on held-out identities."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    has_validation = any("val_map_at_r" in row for row in history)
    fig, axes = plt.subplots(
        1, 2 if has_validation else 1, figsize=(12 if has_validation else 7, 4), squeeze=False
    )
    loss_axis = axes[0][0]
    loss_axis.plot(epochs, [row["loss"] for row in history], color="tab:blue", marker="o")
    loss_axis.set(xlabel="epoch", ylabel="training loss", title="training loss")
    if has_validation:
        val_axis = axes[0][1]
        for key, label, colour in _VALIDATION_CURVES:
            val_axis.plot(
                epochs, [row.get(key) for row in history], marker="s", color=colour, label=label
            )
        val_axis.set(xlabel="epoch", ylim=(0, 1.02), title="validation on held-out identities")
        val_axis.legend(loc="lower right")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
