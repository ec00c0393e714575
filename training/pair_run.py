"""Reading back a pair's run directory (written by pair_trainer.py) for export and evaluation."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from siamese.contracts.pair_card import pair_fingerprint, tower_fingerprint
from siamese.contracts.spec import InputSpec
from siamese.core.errors import ConfigError, ModelError, RunError, named
from siamese.core.files import read_json, sha256_file
from siamese.data.text import load_tokenizer
from siamese.training.run_dir import CONFIG_FILE
from siamese.training.text_tower import create_text_tower
from siamese.training.towers import create_tower


@dataclass
class RunSide:
    """One trained tower of a pair, in eval mode, and how it reads its input."""

    role: str
    kind: str
    tower: nn.Module
    record: dict[str, Any]
    spec: InputSpec | None
    tokenizer_json: str | None
    weights_sha256: str

    @property
    def fingerprint(self) -> str:
        return tower_fingerprint(self.weights_sha256, self.tokenizer_json)


@dataclass
class PairRun:
    """Both towers of a pair's run directory."""

    run_dir: Path
    config: dict[str, Any]
    query: RunSide
    gallery: RunSide

    @property
    def fingerprint(self) -> str:
        """The pair fingerprint (siamese/contracts/pair_card.py)."""
        return pair_fingerprint(self.query.fingerprint, self.gallery.fingerprint)


def is_pair_run(run_dir: str | os.PathLike[str]) -> bool:
    """Whether ``run_dir`` holds two unshared towers (a shared-weight run is a single tower)."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        return False
    try:
        pair = read_json(path).get("pair")
    except (ValueError, AttributeError, UnicodeDecodeError):
        return False
    return isinstance(pair, dict) and not pair.get("shared", False)


def _side(run_dir: Path, config_path: Path, role: str, record: dict[str, Any]) -> RunSide:
    weights = run_dir / str(record.get("weights", f"{role}.safetensors"))
    if not weights.is_file():
        raise RunError(f"{weights}: missing; is {run_dir} a finished pair run?")
    tokenizer_json = None
    try:
        if record["kind"] == "text":
            tokenizer_path = run_dir / str(record["tokenizer"])
            if not tokenizer_path.is_file():
                raise RunError(f"{tokenizer_path}: missing; the text tower cannot read text")
            tokenizer_json = tokenizer_path.read_text(encoding="utf-8")
            load_tokenizer(tokenizer_json, str(tokenizer_path))
            spec, tower = None, create_text_tower(record["tower"]["options"])
        else:
            spec = InputSpec.from_dict(record["input_spec"])
            tower = create_tower(record["tower"]["name"], spec, record["tower"]["options"])
    except (ValueError, KeyError, TypeError, ConfigError, ModelError) as exc:
        raise RunError(
            f"{config_path}: not a valid pair config for the {role} tower ({exc})"
        ) from exc
    try:
        tower.load_state_dict(load_file(weights))
    except (SafetensorError, OSError) as exc:
        raise RunError(f"{weights}: unreadable weights ({exc})") from exc
    except RuntimeError as exc:
        raise RunError(f"{weights}: weights do not match the {role} tower ({exc})") from exc
    tower.eval()
    return RunSide(role, record["kind"], tower, record, spec, tokenizer_json, sha256_file(weights))


def load_pair_run(run_dir: str | os.PathLike[str]) -> PairRun:
    """Rebuild both towers of a pair run.

    Raises:
        RunError: not a pair run, or a file missing, unreadable or inconsistent.
    """
    run_dir = Path(run_dir)
    config_path = run_dir / CONFIG_FILE
    if not is_pair_run(run_dir):
        raise RunError(
            f"{run_dir}: not a pair run (train one with query images ({named('query_data')}) "
            f"or captions ({named('captions')}))"
        )
    config = read_json(config_path)
    pair = config["pair"]
    try:
        query_record, gallery_record = dict(pair["query"]), dict(pair["gallery"])
    except (KeyError, TypeError, ValueError) as exc:
        raise RunError(f"{config_path}: the pair section lacks a tower ({exc})") from exc
    query = _side(run_dir, config_path, "query", query_record)
    gallery = _side(run_dir, config_path, "gallery", gallery_record)
    return PairRun(run_dir, config, query, gallery)
