"""Install profiles suite: each profile in a fresh venv, its install time and its size on disk.

    siamese bench install_profiles [--quick] [-O profiles="cpu|gpu|train,cpu"] [-O python=python3]

A profile is a set of extras of this checkout (docs/install.md): ``cpu`` is the serve-only
install (the base and the CPU onnxruntime), ``gpu`` the same with onnxruntime-gpu and NVIDIA's
CUDA and cuDNN wheels, ``train,cpu`` adds PyTorch for training and export, ``test`` is what the
README's set-up command installs. Each one is installed with ``pip install "<checkout>[extras]"``
into a new venv with its own empty pip cache, so every install downloads what it needs (time
includes downloads from this machine's package index); size is ``du`` of the whole venv. The
venv is inspected (distributions, whether torch and which onnxruntime builds are installed) and
removed. ``--quick`` measures the ``cpu`` profile alone.

Options (-O): profiles (``|``-separated, each a comma list of extras), python (the interpreter
that creates the venvs), keep (1: leave the venvs in the work folder).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the suite's private helpers beside it

from _harness import BenchSettings

OPTIONS = ("profiles", "python", "keep")
DEFAULT_PROFILES = "cpu|gpu|train,cpu"
CHECKOUT = Path(__file__).resolve().parents[1]
#: Distributions whose versions each profile's record names.
_NOTED = ("onnxruntime", "onnxruntime-gpu", "torch", "torchvision", "faiss-cpu", "numpy", "ray")


def _du(path: Path) -> tuple[int, str]:
    """Bytes on disk (``du -sk``) and the human-readable size ``du -sh`` prints."""
    kib = int(
        subprocess.run(
            ["du", "-sk", str(path)], capture_output=True, text=True, check=True
        ).stdout.split()[0]
    )
    human = subprocess.run(
        ["du", "-sh", str(path)], capture_output=True, text=True, check=True
    ).stdout.split()[0]
    return kib * 1024, human


def _inspect(venv: Path) -> dict[str, Any]:
    """What the profile installed: distributions, noted versions, whether torch imports."""
    python = venv / "bin" / "python"
    listed = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=json"],
        capture_output=True,
        text=True,
        check=True,
    )
    dists = {d["name"].lower().replace("_", "-"): d["version"] for d in json.loads(listed.stdout)}
    torch = subprocess.run([str(python), "-c", "import torch"], capture_output=True, check=False)
    return {
        "distributions": len(dists),
        "versions": {name: dists[name] for name in _NOTED if name in dists},
        "torch_importable": torch.returncode == 0,
        "onnxruntime_builds": sorted(n for n in dists if n.startswith("onnxruntime")),
        "nvidia_wheels": sorted(n for n in dists if n.startswith("nvidia-")),
    }


def measure(extras: str, work: Path, python: str, keep: bool) -> dict[str, Any]:
    """Install ``<checkout>[extras]`` into a fresh venv; time, size and contents."""
    venv = work / f"venv-{extras.replace(',', '-')}"
    cache = work / f"pip-cache-{extras.replace(',', '-')}"
    for path in (venv, cache):
        shutil.rmtree(path, ignore_errors=True)
    started = time.perf_counter()
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    venv_s = time.perf_counter() - started
    env = {**os.environ, "PIP_CACHE_DIR": str(cache), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", f"{CHECKOUT}[{extras}]"],
        check=True,
        env=env,
    )
    install_s = time.perf_counter() - started - venv_s
    size, human = _du(venv)
    record = {
        "profile": extras,
        "command": f'pip install "siamese[{extras}]"',
        "install_s": round(install_s, 1),
        "venv_s": round(venv_s, 1),
        "size_bytes": size,
        "size_gib": round(size / 2**30, 2),
        "du_sh": human,
        **_inspect(venv),
    }
    if not keep:
        shutil.rmtree(venv, ignore_errors=True)
    shutil.rmtree(cache, ignore_errors=True)
    return record


def run(settings: BenchSettings) -> dict[str, Any]:
    """Measure each profile in turn (one at a time: they share the disk and the network)."""
    default = "cpu" if settings.quick else DEFAULT_PROFILES
    profiles = [p.strip() for p in settings.option("profiles", default).split("|") if p.strip()]
    python = settings.option("python", "python3")
    keep = settings.option("keep", "0") == "1"
    work = settings.work_dir.resolve() / "install_profiles"
    work.mkdir(parents=True, exist_ok=True)
    measured = []
    for extras in profiles:
        print(f"install_profiles: installing [{extras}]", file=sys.stderr, flush=True)
        measured.append(measure(extras, work, python, keep))
    return {
        "profiles": measured,
        "note": (
            "cold installs: a fresh venv and an empty pip cache per profile, wheels from this "
            "machine's package index; size is du of the whole venv"
        ),
    }
