"""The benchmarks' own harness.

Discovery of benchmarks/*.py, machine facts, timing statistics, JSON results.

It lives beside the suites, not in the installed package: benchmarks run from a source checkout.

A suite is a file ``benchmarks/<name>.py`` defining ``run(settings: BenchSettings) -> dict``.
`siamese bench <name>` parses the options (the CLI is the only argument parser), runs the suite,
and writes its figures with the machine, versions and settings to ``benchmarks/results/``.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from siamese.core.errors import ConfigError, SiameseError
from siamese.core.files import write_json_atomic

_VERSIONED = (
    "siamese",
    "torch",
    "torchvision",
    "onnx",
    "onnxruntime",
    "onnxruntime-gpu",
    "faiss-cpu",
    "numpy",
    "Pillow",
)


@dataclass(frozen=True)
class BenchSettings:
    """Options every suite receives.

    Attributes:
        quick: a small, fast configuration (used by tests and for a first look).
        work_dir: scratch space for generated inputs and models.
        plot: also write plots next to the JSON result.
        options: suite-specific ``key=value`` options (strings; the suite converts them).
    """

    quick: bool = False
    work_dir: Path = Path(".bench-work")
    plot: bool = False
    options: dict[str, str] = field(default_factory=dict)

    def option(self, key: str, default: Any, kind: Callable[[str], Any] = str) -> Any:
        """A suite option converted with ``kind``, or ``default`` when absent."""
        return kind(self.options[key]) if key in self.options else default


def benchmarks_dir() -> Path:
    """The suites' folder: this harness's own, unless SIAMESE_BENCHMARKS names another."""
    if "SIAMESE_BENCHMARKS" in os.environ:
        return Path(os.environ["SIAMESE_BENCHMARKS"])
    return Path(__file__).resolve().parent


def available_suites(folder: Path | None = None) -> list[str]:
    """Names of the suites found in the benchmarks folder: the public modules defining ``run``.

    Read, not imported: a tool beside the suites (doc_figures.py renders the docs' figures from
    their results) is not offered as one.
    """
    folder = folder or benchmarks_dir()
    if not folder.is_dir():
        return []
    return sorted(
        p.stem for p in folder.glob("*.py") if not p.name.startswith("_") and _defines_run(p)
    )


def _defines_run(path: Path) -> bool:
    tree = ast.parse(path.read_text(), filename=str(path))
    return any(isinstance(node, ast.FunctionDef) and node.name == "run" for node in tree.body)


def load_suite(name: str, folder: Path | None = None) -> ModuleType:
    """Import ``benchmarks/<name>.py``.

    Raises:
        SiameseError: the folder or suite is missing (e.g. siamese installed from a wheel).
    """
    folder = folder or benchmarks_dir()
    name = name.replace("-", "_")  # `training-time` names benchmarks/training_time.py
    path = folder / f"{name}.py"
    if not path.is_file():
        known = ", ".join(available_suites(folder)) or "none found"
        raise SiameseError(
            f"{path}: no such benchmark suite (available: {known}); benchmarks run from a source "
            "checkout"
        )
    spec = importlib.util.spec_from_file_location(f"siamese_bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    sys.modules[spec.name] = module  # dataclasses and pickling look modules up by name
    spec.loader.exec_module(module)
    if not callable(getattr(module, "run", None)):
        raise SiameseError(f"{path}: a suite must define run(settings) -> dict")
    return module


def machine_info() -> dict[str, Any]:
    """Facts that make a figure interpretable: CPU, cores, memory, GPU, library versions."""
    versions = {}
    for package in _VERSIONED:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = None
    try:
        memory = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    return {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": memory,
        "gpu": _gpu_name(),
        "versions": versions,
    }


def _gpu_name() -> str | None:
    try:
        return (
            Path("/proc/driver/nvidia/gpus")
            .iterdir()
            .__next__()
            .joinpath("information")
            .read_text()
            .splitlines()[0]
            .split(":", 1)[1]
            .strip()
        )
    except (OSError, StopIteration, IndexError):
        return None


def latency_stats(seconds: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/mean of per-call latencies, in milliseconds."""
    values = np.asarray(seconds, dtype=np.float64) * 1000.0
    return {
        "p50_ms": round(float(np.percentile(values, 50)), 3),
        "p95_ms": round(float(np.percentile(values, 95)), 3),
        "p99_ms": round(float(np.percentile(values, 99)), 3),
        "mean_ms": round(float(values.mean()), 3),
        "calls": int(values.size),
    }


def time_calls(call: Callable[[], Any], *, repeat: int, warmup: int = 2) -> list[float]:
    """Wall-clock seconds of ``repeat`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        call()
    durations = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        durations.append(time.perf_counter() - started)
    return durations


def check_options(suite: str, given: dict[str, str], known: tuple[str, ...]) -> None:
    """Refuse -O keys the suite does not read: a misspelt key would otherwise do nothing.

    Raises:
        ConfigError: one line naming the unknown keys and the known ones.
    """
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise ConfigError(
            f"bench {suite}: unknown option(s) {', '.join(unknown)}; it reads "
            f"{', '.join(known) or 'no options'}"
        )


def run_suite(
    name: str, settings: BenchSettings, results_dir: Path | None = None
) -> tuple[dict[str, Any], Path]:
    """Run a suite and write ``results/<name>-<timestamp>.json``; return (record, path)."""
    module = load_suite(name)
    check_options(name, settings.options, tuple(getattr(module, "OPTIONS", ())))
    settings.work_dir.mkdir(parents=True, exist_ok=True)
    started = datetime.now(timezone.utc)
    clock = time.perf_counter()
    figures = module.run(settings)
    record = {
        "suite": name,
        "started": started.isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - clock, 2),
        "machine": machine_info(),
        "settings": {**asdict(settings), "work_dir": str(settings.work_dir)},
        "results": figures,
    }
    results_dir = results_dir or benchmarks_dir() / "results"
    suffix = "-quick" if settings.quick else ""
    path = results_dir / f"{name}{suffix}-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    plot = figures.get("plot") if isinstance(figures, dict) else None
    if isinstance(plot, str) and Path(plot).is_file():  # drawn in the work folder: keep it
        path.parent.mkdir(parents=True, exist_ok=True)
        figures["plot"] = str(shutil.copyfile(plot, path.with_suffix(".png")))
    write_json_atomic(path, record)
    return record, path
