"""The resumable training state (checkpoint.pt): weights, optimiser, schedule, RNGs, history.

Written atomically each epoch with torch.save and read back only with ``weights_only=True``, so a
checkpoint from elsewhere cannot run code when resumed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from siamese.core.errors import RunError
from siamese.core.files import atomic_path

CHECKPOINT_FILE = "checkpoint.pt"


def save_checkpoint(run_dir: Path, state: dict[str, Any]) -> None:
    """Atomically write the training state."""
    with atomic_path(run_dir / CHECKPOINT_FILE) as tmp:
        torch.save(state, tmp)


def load_checkpoint(run_dir: Path) -> dict[str, Any]:
    """Read the training state safely.

    Raises:
        RunError: missing, unreadable, or holding anything but tensors and plain data.
    """
    path = run_dir / CHECKPOINT_FILE
    if not path.is_file():
        raise RunError(f"{path}: no checkpoint to resume from")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # includes pickles that would need code execution
        raise RunError(
            f"{path}: cannot load checkpoint safely ({str(exc).strip().splitlines()[0]})"
        ) from exc
