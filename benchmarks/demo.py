"""Demo suite: what ``siamese demo`` prints, recorded so the README's figures have a file.

    siamese bench demo [-O seed=0]

Runs the demo exactly as ``siamese demo`` does (its default sizes and epochs; the seed may be
chosen) in the bench work folder and keeps its report: top-1 identification of identities never
seen in training for the exported tower and for raw pixels, the embedding rate, the calibrated
"unknown" threshold and how strangers and enrolled people are answered, and the time of each
stage. The README's demo output is rendered from the newest such file (benchmarks/doc_figures.py).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from _harness import BenchSettings

#: The -O keys this suite reads; the harness refuses any other.
OPTIONS = ("seed",)


def run(settings: BenchSettings) -> dict[str, Any]:
    """The demo's report, without the temporary paths it names."""
    from dataclasses import replace

    from siamese.demos.options import DemoOptions
    from siamese.demos.pipeline import run_demo

    work = Path(tempfile.mkdtemp(prefix="demo-", dir=settings.work_dir))
    options = DemoOptions(out_dir=work, seed=settings.option("seed", 0, int))
    config = options.demo_config()
    if settings.quick:  # the harness's own test: a few identities, one epoch
        config = replace(config, train_identities=12, unseen_identities=4, epochs=1, strangers=2)
    report = run_demo(config, progress=False, log=lambda _: None).to_dict()
    for path_field in ("out_dir", "matches_png", "strangers_dir"):
        report.pop(path_field, None)
    return {"config": {"seed": config.seed, "epochs": config.epochs}, **report}
