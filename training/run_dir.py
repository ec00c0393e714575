"""The run directory: the contract between training and export.

Layout: config.json (tower, input spec, loss, hyper-parameters, versions), tower.safetensors
(best weights, used by export), last.safetensors, history.json and loss.png. Weights are
safetensors, so loading a run never executes pickled code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import nn

from siamese.contracts.spec import InputSpec
from siamese.core.errors import RunError
from siamese.core.files import read_json, sha256_file, write_bytes_atomic, write_json_atomic
from siamese.training.towers import create_tower

CONFIG_FILE = "config.json"
BEST_WEIGHTS = "tower.safetensors"
LAST_WEIGHTS = "last.safetensors"
HISTORY_FILE = "history.json"
LOSS_PLOT = "loss.png"
RUN_FORMAT_VERSION = 1


@dataclass
class LoadedRun:
    """A tower rebuilt from a run directory, ready for export or evaluation."""

    run_dir: Path
    config: dict[str, Any]
    spec: InputSpec
    tower: nn.Module
    weights_sha256: str


def save_weights(tower: nn.Module, path: Path) -> None:
    """Atomically write the tower's state dict as safetensors."""
    state = {
        name: tensor.detach().cpu().contiguous() for name, tensor in tower.state_dict().items()
    }
    write_bytes_atomic(path, save(state))


def write_config(run_dir: Path, config: dict[str, Any]) -> None:
    """Atomically write config.json."""
    write_json_atomic(run_dir / CONFIG_FILE, {"format_version": RUN_FORMAT_VERSION, **config})


def load_run(run_dir: str | os.PathLike[str]) -> LoadedRun:
    """Rebuild the trained tower of a run directory in eval mode.

    Raises:
        RunError: the folder, config.json or tower weights are missing or unreadable.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"{run_dir}: run directory not found (train one with `siamese train`)")
    config_path, weights_path = run_dir / CONFIG_FILE, run_dir / BEST_WEIGHTS
    for path in (config_path, weights_path):
        if not path.is_file():
            raise RunError(f"{path}: missing; is {run_dir} a finished `siamese train` run?")
    try:
        config = read_json(config_path)
        spec = InputSpec.from_dict(config["input_spec"])
        tower = create_tower(config["tower"]["name"], spec, config["tower"]["options"])
    except (ValueError, KeyError, TypeError) as exc:
        raise RunError(f"{config_path}: not a valid run config ({exc})") from exc
    try:
        state = load_file(weights_path)
    except (SafetensorError, OSError) as exc:
        raise RunError(f"{weights_path}: unreadable weights ({exc})") from exc
    try:
        tower.load_state_dict(state)
    except RuntimeError as exc:
        raise RunError(
            f"{weights_path}: weights do not match the tower in config.json ({exc})"
        ) from exc
    tower.eval()
    return LoadedRun(run_dir, config, spec, tower, sha256_file(weights_path))
