"""AddConfig: the choices of adding images to a gallery; `siamese index add`'s options come from it.

A light module (no engine, no FAISS), like siamese/build_config.py, so the command line is built
without loading either; the addition itself is :func:`siamese.galleries.add_with_tower`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from siamese.core.config_fields import setting


@dataclass(frozen=True)
class AddConfig:
    """Options of ``siamese index add`` (the gallery and the images themselves are given apart)."""

    #: ``siamese index add --help`` groups the options in these panels.
    PANELS: ClassVar[dict[str, tuple[str, ...]]] = {
        "What is added": ("identity", "model"),
        "Embedding": ("device", "batch_size", "commit_every", "report_path"),
    }

    identity: str | None = setting(
        None, "Identity of every added image (default: its folder's name)."
    )
    model: Path | None = setting(
        None,
        "Model (default: the one the gallery was built with; a pair's gallery tower).",
        names=("--model", "-m"),
    )
    device: Literal["auto", "cpu", "cuda", "tensorrt"] = setting("auto", "Execution provider.")
    batch_size: int = setting(32, "Images per inference call.", min=1)
    commit_every: int = setting(
        1000, "Images embedded between two commits (a killed run resumes from the last).", min=1
    )
    report_path: Path | None = setting(
        None, "JSON list of refused files (default: GALLERY/rejected.json).", names=("--report",)
    )

    def add_options(self) -> dict[str, Any]:
        """The keyword arguments of :func:`siamese.galleries.add_with_tower` beyond the model."""
        return {
            "device": self.device,
            "batch_size": self.batch_size,
            "identity": self.identity,
            "commit_every": self.commit_every,
            "report_path": self.report_path,
        }
