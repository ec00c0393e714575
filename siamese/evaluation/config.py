"""EvalConfig: every choice ``siamese eval`` makes; the command's options are generated from it.

Kept apart from the evaluation itself so the command line is built without importing NumPy,
FAISS or the engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from siamese.core.config_fields import setting
from siamese.core.errors import DataError, named


def parse_fars(text: str) -> tuple[float, ...]:
    """``"0.01,0.001"`` → (0.01, 0.001); anything else is a one-line error."""
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise DataError(
            f"false-accept rates ({named('fars')}) are comma-separated numbers such as "
            f"0.01,0.001, got {text!r}"
        ) from None
    if not all(0.0 < value < 1.0 for value in values):
        raise DataError(f"false-accept rates ({named('fars')}) lie between 0 and 1, got {text!r}")
    return values


def show_fars(fars: tuple[float, ...]) -> str:
    return ",".join(f"{value:g}" for value in fars)


@dataclass(frozen=True)
class EvalConfig:
    """Options of ``siamese eval``: the command's options are generated from these fields.

    Either ``data_dir`` (split per identity: ``gallery_per_identity`` images enrol the identity,
    the rest are queries; ``split`` picks them at random with ``seed`` or the first by file name),
    or both ``gallery_dir`` and ``queries_dir``.
    """

    #: ``siamese eval --help`` groups the options in these panels.
    PANELS: ClassVar[dict[str, tuple[str, ...]]] = {
        "Data": ("gallery_dir", "queries_dir", "captions", "gallery_per_identity", "split", "seed"),
        "Model": ("gallery_model", "device", "batch_size"),
        "Report": ("fars", "out_dir"),
    }

    model: str = setting(help="model.onnx from `siamese export`.", argument=True)
    data_dir: str | None = setting(
        None, "ImageFolder to split per identity into gallery and queries.", argument=True
    )
    gallery_dir: str | None = setting(
        None,
        "Gallery images: an ImageFolder (instead of DATA_DIR).",
        names=("--gallery-images",),
        aliases=("--gallery",),
    )
    queries_dir: str | None = setting(
        None, "Query ImageFolder (with --gallery-images).", names=("--queries",)
    )
    gallery_per_identity: int = setting(
        1, "Images per identity that enrol it in the gallery; the rest are queries.", min=1
    )
    split: Literal["random", "first"] = setting(
        "random", "random (seeded) or first (by file name): which images enrol."
    )
    seed: int = setting(0, "Random seed for the split and pair sampling.")
    fars: tuple[float, ...] = setting(
        (1e-2, 1e-3),
        "Target false-accept rates for TAR and thresholds, comma-separated.",
        names=("--far",),
        parse=parse_fars,
        show=show_fars,
    )
    device: Literal["auto", "cpu", "cuda", "tensorrt"] = setting("auto", "Execution provider.")
    batch_size: int = setting(64, "Images per inference call.", min=1)
    out_dir: str | None = setting(
        None, "Write eval.json, roc.png and distances.png here.", names=("--out", "-o")
    )
    gallery_model: str | None = setting(
        None, "A pair's gallery tower for --gallery-images (default: the partner MODEL names)."
    )
    captions: str | None = setting(
        None, "Text queries: a captions CSV/JSONL, for MODEL a pair's text tower."
    )
