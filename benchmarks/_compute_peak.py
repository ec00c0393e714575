"""The machine's arithmetic ceiling for training throughput.

Nominal from /proc/cpuinfo, and measured.

Nominal peak = cores × clock × FP32 FLOPs per cycle from the widest FMA units the flags name
(AVX-512: 2 × 16 × 2 = 64, AVX2 + FMA: 2 × 8 × 2 = 32, else 8), assuming two FMA ports (true of
recent x86 server cores; some have one 512-bit port, which halves the AVX-512 figure). Measured
peak = a large fp32 matrix product through torch on all threads: what dense arithmetic reaches
here, the realistic ceiling for convolutions. On a shared machine both are upper bounds.
"""

from __future__ import annotations

import os
import time
from pathlib import Path


def nominal_peak_gflops(cpuinfo: str | None = None, cores: int | None = None) -> dict:
    """Cores × GHz × FLOPs per cycle, with what went into it.

    Clock from the cpuinfo "cpu MHz" lines.
    """
    text = cpuinfo if cpuinfo is not None else Path("/proc/cpuinfo").read_text()
    flags = next((line for line in text.splitlines() if line.startswith("flags")), "").split()
    mhz = [float(line.split(":")[1]) for line in text.splitlines() if line.startswith("cpu MHz")]
    per_cycle = 64 if "avx512f" in flags else 32 if {"avx2", "fma"} <= set(flags) else 8
    cores = cores or os.cpu_count() or 1
    ghz = max(mhz) / 1000 if mhz else 0.0
    return {
        "gflops": round(cores * ghz * per_cycle, 1),
        "cores": cores,
        "ghz": round(ghz, 3),
        "fp32_flops_per_cycle": per_cycle,
    }


def measured_matmul_gflops(size: int = 1024, seconds: float = 1.0) -> float:
    """Best GFLOP/s of repeated size × size fp32 products over about ``seconds``."""
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)  # warm-up
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        torch.mm(a, b)
        best = max(best, 2 * size**3 / (time.perf_counter() - started) / 1e9)
    return round(best, 1)
