"""Crash safety for real: `siamese index build` subprocesses killed with SIGKILL at random moments.

After every kill the gallery must be absent (killed before its first commit) or load, pass
`verify` (checksums, counts, every id once, fingerprints, file hashes) and hold only files of
the folder, each once; its committed progress never goes back, and the next run continues from
it. A last run completes the gallery. The figures are printed (`pytest -s`).
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from siamese.index import Gallery

from siamese.errors import GalleryError
from siamese.synthetic import SyntheticSpec, generate_identities

# Scale up the run (e.g. SIAMESE_FUZZ_SCALE=20) to hunt longer; the default keeps the suite to minutes.
FUZZ_SCALE = max(1, int(os.environ.get("SIAMESE_FUZZ_SCALE", "1")))

COMMIT_EVERY = 6


@pytest.fixture(scope="module")
def crash_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_identities(
        tmp_path_factory.mktemp("crash") / "images",
        SyntheticSpec(identities=24, images_per_identity=8, size=40),
        seed=5,
    )


def build_command(images: Path, model: Path, gallery: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "siamese.cli",
        "index",
        "build",
        str(images),
        "--model",
        str(model),
        "--out",
        str(gallery),
        "--commit-every",
        str(COMMIT_EVERY),
        "--batch-size",
        "3",
        "--json",
    ]


def inspect(gallery: Path, expected: set[str], tally: Counter) -> tuple[int, int]:
    """Check a gallery after a kill; return its committed progress (published + staged items) and its published items."""
    if not gallery.exists():
        tally["absent"] += 1  # killed before the first commit: nothing to load, nothing lost
        return 0, 0
    try:
        Gallery.open(gallery).close()
    except GalleryError as exc:
        tally["unreadable"] += 1
        pytest.fail(f"unreadable gallery after a kill: {exc}")
    report = Gallery.verify(gallery)
    tally["missing_ids"] += report.missing_ids
    tally["duplicate_ids"] += report.duplicate_ids
    tally["phantom_ids"] += report.phantom_ids
    tally["verify_failures"] += 0 if report.ok else 1
    assert report.ok, report.problems
    with sqlite3.connect(f"file:{gallery / 'items.sqlite'}?mode=ro", uri=True) as db:
        paths = [row[0] for row in db.execute("SELECT path FROM items WHERE removed_gen IS NULL")]
    tally["duplicate_paths"] += len(paths) - len(set(paths))
    tally["phantom_paths"] += len(set(paths) - expected)
    tally["staged_after_kill"] += report.staged
    tally["published_after_kill"] += report.count or 0
    return len(paths), report.count or 0


def check_complete(gallery: Path, expected: set[str], tally: Counter) -> None:
    inspect(gallery, expected, tally)
    with Gallery.open(gallery) as done:
        assert {item.path for item in done.items.all_items()} == expected
    tally["completed_builds"] += 1


def kill_builds(
    images: Path, model: Path, gallery: Path, kills: int, seed: int, min_resumable: int = 0
) -> Counter:
    """SIGKILL builds at random moments until `kills` kills, starting over once a build completes."""
    expected = {str(p) for p in images.rglob("*") if p.is_file()}
    calibration = gallery.parent / "calibration"
    started = time.perf_counter()
    subprocess.run(build_command(images, model, calibration), check=True, capture_output=True)
    full = time.perf_counter() - started
    started = time.perf_counter()
    subprocess.run(build_command(images, model, calibration), check=True, capture_output=True)
    idle = time.perf_counter() - started  # a run with nothing to do: start-up and checks
    rng = np.random.default_rng(seed)
    tally: Counter = Counter()
    progress = published = 0
    # Until `kills` kills, and (up to four times as many) until `min_resumable` kills have landed mid-build.
    while tally["kills"] < kills or (
        tally["resumable_states"] < min_resumable and tally["kills"] < 4 * kills
    ):
        process = subprocess.Popen(
            build_command(images, model, gallery), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        # Start-up takes most of a small build: aim most kills at the part where work is committed.
        time.sleep(float(rng.uniform(0.6 * idle, full)))
        killed = process.poll() is None
        if killed:
            os.kill(process.pid, signal.SIGKILL)
            tally["kills"] += 1
        _, stderr = process.communicate()
        if not killed:
            assert process.returncode == 0, (
                f"a build that was not killed failed (exit {process.returncode}):\n{stderr.decode(errors='replace')}"
            )
        else:
            now, published = inspect(gallery, expected, tally)
            assert now >= progress, "committed work was lost"
            tally["resumable_states"] += 0 < now < len(expected)
            progress = now
        # It finished, or died after publishing everything: check it and start anew. (Killed with every
        # file staged but not yet published, it is not finished: the next run must publish them.)
        if not killed or published == len(expected):
            check_complete(gallery, expected, tally)
            shutil.rmtree(gallery)
            progress = published = 0
    final = subprocess.run(build_command(images, model, gallery), capture_output=True, text=True)
    assert final.returncode == 0, final.stderr
    check_complete(gallery, expected, tally)
    print(
        f"\ncrash test: {tally['kills']} kills ({tally['absent']} before the first commit, {tally['resumable_states']} mid-build states "
        f"resumed by the next run), {tally['completed_builds']} builds completed; unreadable galleries {tally['unreadable']}, "
        f"verify failures {tally['verify_failures']}, missing ids {tally['missing_ids']}, duplicate ids {tally['duplicate_ids']}, "
        f"phantom ids {tally['phantom_ids']}, duplicate paths {tally['duplicate_paths']}, phantom paths {tally['phantom_paths']}; "
        f"full build {full:.1f}s, idle run {idle:.1f}s"
    )
    for key in (
        "unreadable",
        "verify_failures",
        "missing_ids",
        "duplicate_ids",
        "phantom_ids",
        "duplicate_paths",
        "phantom_paths",
    ):
        assert tally[key] == 0, key
    return tally


def test_builds_killed_at_random_moments(
    crash_images: Path, model_path: Path, tmp_path: Path
) -> None:
    kills = 10 * FUZZ_SCALE
    minimum = max(
        1, kills // 5
    )  # some kills must land mid-build, not only at start-up or after the last commit
    tally = kill_builds(
        crash_images,
        model_path,
        tmp_path / "g",
        kills=kills,
        seed=FUZZ_SCALE - 1,
        min_resumable=minimum,
    )
    assert tally["resumable_states"] >= minimum
