"""Training-time suite: how long `siamese train` takes with its defaults, recipes side by side.

    siamese bench training-time [--quick] [-O recipes=default,96px] [-O size=100]
                                [-O images=5000] [-O epochs=30]

--quick (3 steps of one epoch on small images) checks the machinery; its times mean nothing.

The data is the issue 20 case: about 5,000 images of about 100 × 100 px of a few hundred
identities, the glyph set rendered at ``size`` px from installed fonts when Debian's Noto fonts
are there (benchmarks/_glyphs.py), generated identities otherwise. Each recipe runs as its own
``python -m siamese train`` process, one after the other, so the figures are what a user sees:
wall time including start-up and decoding, CPU user and system time, minor page faults and peak
memory of that process (``os.wait4``), the training images/s of the optimisation steps
(history.json), and those images/s times the FLOPs per training image (forward and backward,
training/flops.py) against the machine's arithmetic peak. The load average before and after each
run is recorded: figures taken while other jobs share the machine say so.

Recipes: ``default`` (no options), ``64px`` (``--image-size 64``: what the default picks for
images of 64 px and more), ``96px`` (the default before issue 20: 2.25× the FLOPs per image),
``one-cycle`` (``--schedule one-cycle``); any other name is refused.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _compute_peak import measured_matmul_gflops, nominal_peak_gflops
from _glyphs import GlyphSettings, glyph_fonts_available, glyphs
from _harness import BenchSettings

from siamese.core.errors import ConfigError

#: Command-line options of each recipe (on top of the data, the output folder and the epochs).
RECIPES: dict[str, list[str]] = {
    "default": [],
    "96px": ["--image-size", "96"],
    "64px": ["--image-size", "64"],
    "one-cycle": ["--schedule", "one-cycle"],
}
TARGET_SECONDS = 600.0  # issue 20: at most 10 minutes on 2 idle cores


def _data(work: Path, size: int, images: int, quick: bool) -> tuple[Path, str]:
    """A folder of about ``images`` images of ``size`` px, and what it holds."""
    if glyph_fonts_available():
        settings = GlyphSettings(size=size, max_characters_per_script=6 if quick else 30)
        train, _ = glyphs(work / ("glyphs-quick" if quick else "glyphs"), settings)
        count = sum(1 for path in train.rglob("*") if path.is_file())
        return train, f"glyphs of 19 scripts, {size} px, {count} images (fonts-noto-*)"
    from siamese.demos.synthetic import SyntheticSpec, generate_identities

    per_identity = 10
    identities = max(images // per_identity, 4)
    folder = work / f"identities-{identities}x{per_identity}-{size}"
    if not folder.is_dir():
        generate_identities(folder, SyntheticSpec(identities, per_identity, size=size), seed=0)
    return folder, f"generated identities, {size} px, {identities * per_identity} images"


def _train(data: Path, out: Path, options: list[str], epochs: int, quick: bool) -> dict[str, Any]:
    """One `siamese train` process: its wall time and resource use, and its history's figures."""
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-m", "siamese", "train", str(data), "--out", str(out)]
    command += ["--epochs", str(epochs), *options]
    if quick:  # a look at the machinery, not a figure: three steps
        command += ["--steps-per-epoch", "3"]
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    errors = process.stderr.read().decode(errors="replace") if process.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"siamese train {' '.join(options)} failed: {errors.strip()[-500:]}")
    history = json.loads((out / "history.json").read_text())
    history = history["epochs"] if isinstance(history, dict) else history
    return {
        "options": options,
        "wall_seconds": round(wall, 1),
        "user_seconds": round(usage.ru_utime, 1),
        "system_seconds": round(usage.ru_stime, 1),
        "minor_page_faults": usage.ru_minflt,
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "load_average_before": round(load_before, 2),
        "load_average_after": round(os.getloadavg()[0], 2),
        "epochs_run": len(history),
        **_throughput(out, history),
        "best_val_map_at_r": round(max(row.get("val_map_at_r", 0.0) for row in history), 4),
    }


def _throughput(run_dir: Path, history: list[dict[str, Any]]) -> dict[str, Any]:
    from siamese.training import load_run
    from siamese.training.flops import training_flops

    loaded = load_run(run_dir)
    flops = training_flops(loaded.tower, loaded.spec)
    images = sum(row.get("images", 0) for row in history)
    seconds = sum(row.get("train_seconds", 0.0) for row in history)
    rate = images / seconds if seconds else 0.0
    return {
        "input": f"{loaded.spec.height}px",
        "train_images": images,
        "train_step_seconds": round(seconds, 1),
        "train_images_per_second": round(rate, 1),
        "gflops_per_image": {k: round(v / 1e9, 4) for k, v in flops.items()},
        "train_gflops_per_second": round(rate * (flops["forward"] + flops["backward"]) / 1e9, 2),
    }


#: The -O keys this suite reads; the harness refuses any other.
OPTIONS = ("recipes", "size", "epochs", "images")


def run(settings: BenchSettings) -> dict[str, Any]:
    """Train each recipe on the same data, one after the other, and compare."""
    names = settings.option("recipes", "default,96px", str).split(",")
    if unknown := [name for name in names if name not in RECIPES]:
        raise ConfigError(f"unknown recipe {', '.join(unknown)}; choose from {', '.join(RECIPES)}")
    size = settings.option("size", 48 if settings.quick else 100, int)
    epochs = settings.option("epochs", 1 if settings.quick else 30, int)
    images = settings.option("images", 400 if settings.quick else 5000, int)
    work = settings.work_dir / "training-time"
    data, description = _data(work, size, images, settings.quick)
    runs = {
        name: _train(data, work / f"run-{name}", RECIPES[name], epochs, settings.quick)
        for name in names
    }
    result: dict[str, Any] = {
        "data": description,
        "epochs": epochs,
        "runs": runs,
        "arithmetic_peak": {
            "nominal": nominal_peak_gflops(),
            "measured_matmul_gflops": measured_matmul_gflops(),
        },
    }
    if "default" in runs:
        wall = runs["default"]["wall_seconds"]
        result["target"] = {
            f"default wall seconds <= {TARGET_SECONDS:.0f}": {
                "value": wall,
                "met": wall <= TARGET_SECONDS,
            }
        }
        result["wall_ratio_to_default"] = {
            name: round(run["wall_seconds"] / wall, 3) for name, run in runs.items()
        }
    return result
