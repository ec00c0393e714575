"""Optimised-model cache: onnxruntime's fully optimised CPU graph, saved once per model and machine.

With every optimisation on, onnxruntime rewrites the graph for this CPU (fused conv+bn+relu,
NCHWc blocked layouts) each time a session opens. The result is saved in the user cache dir
and later sessions load it with optimisation off. The saved graph is hardware specific, so the
key names the model's sha256, the onnxruntime version, the optimisation level and the CPU; the
model's siamese metadata travels in a JSON file beside it (onnxruntime does not keep it). A
damaged entry is deleted and rebuilt, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import onnxruntime as ort

from siamese.core.files import write_json_atomic
from siamese.engine.runtime import RuntimeOptions, session_options


@lru_cache(maxsize=1)
def _cpu_tag() -> str:
    """A short hash of the CPU model and flags.

    The optimised graph is only valid on the same kind.
    """
    text = platform.machine()
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        text += "".join(line for line in lines if line.startswith(("model name", "flags")))[:4096]
    except OSError:
        text += platform.processor()
    return hashlib.sha256(text.encode()).hexdigest()[:10]


@dataclass(frozen=True)
class CacheEntry:
    """Where one model's optimised graph and metadata live."""

    model: Path
    metadata: Path

    @classmethod
    def for_model(cls, runtime: RuntimeOptions, fingerprint: str) -> CacheEntry:
        """The entry for a model fingerprint under the runtime's cache dir."""
        stem = f"{fingerprint[:24]}-ort{ort.__version__}-{runtime.optimization}-{_cpu_tag()}"
        folder = runtime.cache_root / "onnxruntime"
        return cls(folder / f"{stem}.onnx", folder / f"{stem}.json")

    def exists(self) -> bool:
        """Both files are present."""
        return self.model.is_file() and self.metadata.is_file()

    def discard(self) -> None:
        """Remove a damaged or unusable entry."""
        for path in (self.model, self.metadata):
            path.unlink(missing_ok=True)


def load_cached(
    entry: CacheEntry, runtime: RuntimeOptions
) -> tuple[ort.InferenceSession, dict[str, str]] | None:
    """Open the cached optimised graph on the CPU, or None (and discard it) when it is unusable."""
    if not entry.exists():
        return None
    try:
        metadata = json.loads(entry.metadata.read_text(encoding="utf-8"))
        options = session_options(runtime, level="disable")  # already optimised
        session = ort.InferenceSession(
            str(entry.model), options, providers=["CPUExecutionProvider"]
        )
        if not isinstance(metadata, dict):
            raise TypeError("metadata is not an object")
        return session, {str(k): str(v) for k, v in metadata.items()}
    # A cache is never worth failing for: a truncated file, another onnxruntime build (its own
    # exception types, not OSError) or edited JSON all mean the same thing, rebuild the entry.
    except Exception:  # noqa: BLE001
        entry.discard()
        return None


def optimizing_options(
    entry: CacheEntry, runtime: RuntimeOptions
) -> tuple[ort.SessionOptions, Path]:
    """Session options that also write the optimised graph to a temporary file beside the entry."""
    entry.model.parent.mkdir(parents=True, exist_ok=True)
    tmp = entry.model.with_name(f".{entry.model.name}.{os.getpid()}.tmp")
    options = session_options(runtime)
    options.optimized_model_filepath = str(tmp)
    return options, tmp


def publish(entry: CacheEntry, tmp: Path, metadata: dict[str, str]) -> None:
    """Move a freshly written optimised graph into place (metadata first, then the model)."""
    try:
        if tmp.is_file():
            write_json_atomic(entry.metadata, metadata)
            os.replace(tmp, entry.model)
    except OSError:
        pass  # a read-only or full cache dir only costs the next start its optimisation time
    finally:
        tmp.unlink(missing_ok=True)
