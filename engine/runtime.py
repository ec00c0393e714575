"""onnxruntime tuning: thread counts, graph optimisation, caches and per-provider options.

On a CPU the engine shares the cores between the decode pool and onnxruntime's intra-op
threads. onnxruntime's workers spin while waiting for work by default, which burns the very
cycles the decoders need, so spinning is off whenever a decode pool runs beside inference.
GPU providers get their own options: CUDA an explicit device, TensorRT engine and timing caches
in the user cache dir, fp16 when asked, and one optimisation profile covering batch 1 to the
embedder's batch size.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnxruntime as ort

from siamese.contracts.spec import InputSpec

OPTIMIZATION_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def available_cores() -> int:
    """Cores this process may run on (the affinity mask, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def user_cache_dir() -> Path:
    """Where optimised models and TensorRT engines are cached.

    $SIAMESE_CACHE_DIR or ~/.cache/siamese.
    """
    if os.environ.get("SIAMESE_CACHE_DIR"):
        return Path(os.environ["SIAMESE_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "siamese"


@dataclass(frozen=True)
class RuntimeOptions:
    """How the onnxruntime session is set up.

    Attributes:
        intra_op_threads: threads per operator (None: one per available core).
        spinning: let idle intra-op threads spin (None: off, since decoding shares the cores).
        optimization: graph optimisation level, one of OPTIMIZATION_LEVELS.
        cache: keep optimised models and TensorRT engines in ``cache_dir`` between runs.
        cache_dir: cache folder (None: :func:`user_cache_dir`).
        fp16: let TensorRT build fp16 engines (ignored elsewhere; use an fp16 export for CUDA).
        warmup: run a batch right after the session opens so the first real call is not slow.
    """

    intra_op_threads: int | None = None
    spinning: bool | None = None
    optimization: str = "all"
    cache: bool = True
    cache_dir: Path | None = None
    fp16: bool = False
    warmup: bool = True

    @property
    def threads(self) -> int:
        """The intra-op thread count actually used."""
        return self.intra_op_threads or available_cores()

    @property
    def cache_root(self) -> Path:
        """The resolved cache folder."""
        return Path(self.cache_dir) if self.cache_dir else user_cache_dir()


def session_options(runtime: RuntimeOptions, level: str | None = None) -> ort.SessionOptions:
    """SessionOptions with the thread, spinning and optimisation settings of ``runtime``."""
    options = ort.SessionOptions()
    options.graph_optimization_level = OPTIMIZATION_LEVELS[level or runtime.optimization]
    options.execution_mode = (
        ort.ExecutionMode.ORT_SEQUENTIAL
    )  # a chain of convs: nothing to run in parallel
    options.intra_op_num_threads = runtime.threads
    options.inter_op_num_threads = 1
    spin = "1" if runtime.spinning else "0"
    options.add_session_config_entry("session.intra_op.allow_spinning", spin)
    options.add_session_config_entry("session.inter_op.allow_spinning", spin)
    options.log_severity_level = 3
    return options


def _shape(spec: InputSpec, batch: int, input_name: str) -> str:
    return f"{input_name}:{batch}x{spec.channels}x{spec.height}x{spec.width}"


def provider_options(
    device: str,
    runtime: RuntimeOptions,
    spec: InputSpec,
    max_batch: int,
    input_name: str = "images",
) -> dict[str, Any]:
    """Options for the provider of ``device`` ("cpu", "cuda" or "tensorrt")."""
    if device == "cuda":
        return {
            "device_id": 0,
            "cudnn_conv_algo_search": "EXHAUSTIVE",
            "do_copy_in_default_stream": True,
        }
    if device != "tensorrt":
        return {}
    folder = runtime.cache_root / "tensorrt"
    if runtime.cache:
        folder.mkdir(parents=True, exist_ok=True)
    return {
        "device_id": 0,
        "trt_fp16_enable": runtime.fp16,
        "trt_engine_cache_enable": runtime.cache,
        "trt_engine_cache_path": str(folder),
        "trt_timing_cache_enable": runtime.cache,
        "trt_timing_cache_path": str(folder),
        # One profile for every batch the embedder sends: 1 (a query) to its batch size.
        "trt_profile_min_shapes": _shape(spec, 1, input_name),
        "trt_profile_opt_shapes": _shape(spec, max_batch, input_name),
        "trt_profile_max_shapes": _shape(spec, max_batch, input_name),
    }
