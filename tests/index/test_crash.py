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

from siamese.core.errors import GalleryError
from siamese.demos.synthetic import SyntheticSpec, generate_identities
from siamese.index import Gallery

# Scale up the run (e.g. SIAMESE_FUZZ_SCALE=20) to hunt longer; the default keeps the suite to
# minutes.
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
    """Check a gallery after a kill.

    Return its committed progress (published + staged items) and its published items.
    """
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
    """SIGKILL builds at random moments until `kills` kills.

    It starts over once a build completes.
    """
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
    # Until `kills` kills, and (up to four times as many) until `min_resumable` kills have landed
    # mid-build.
    while tally["kills"] < kills or (
        tally["resumable_states"] < min_resumable and tally["kills"] < 4 * kills
    ):
        process = subprocess.Popen(
            build_command(images, model, gallery), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        # Start-up takes most of a small build: aim most kills at the part where work is committed.
        # (on a busy machine the idle run can take longer than the full one: keep the range ordered)
        time.sleep(float(rng.uniform(*sorted((0.6 * idle, full)))))
        killed = process.poll() is None
        if killed:
            os.kill(process.pid, signal.SIGKILL)
            tally["kills"] += 1
        _, stderr = process.communicate()
        if not killed:
            assert process.returncode == 0, (
                f"a build that was not killed failed (exit {process.returncode}):\n"
                f"{stderr.decode(errors='replace')}"
            )
        else:
            now, published = inspect(gallery, expected, tally)
            assert now >= progress, "committed work was lost"
            tally["resumable_states"] += 0 < now < len(expected)
            progress = now
        # It finished, or died after publishing everything: check it and start anew. (Killed with
        # every file staged but not yet published, it is not finished: the next run must publish
        # them.)
        if not killed or published == len(expected):
            check_complete(gallery, expected, tally)
            shutil.rmtree(gallery)
            progress = published = 0
    final = subprocess.run(
        build_command(images, model, gallery), capture_output=True, text=True, check=False
    )
    assert final.returncode == 0, final.stderr
    check_complete(gallery, expected, tally)
    print(
        f"\ncrash test: {tally['kills']} kills ({tally['absent']} before the first commit, "
        f"{tally['resumable_states']} mid-build states resumed by the next run), "
        f"{tally['completed_builds']} builds completed; "
        f"unreadable galleries {tally['unreadable']}, "
        f"verify failures {tally['verify_failures']}, missing ids {tally['missing_ids']}, "
        f"duplicate ids {tally['duplicate_ids']}, phantom ids {tally['phantom_ids']}, "
        f"duplicate paths {tally['duplicate_paths']}, phantom paths {tally['phantom_paths']}; "
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


def change_files(images: Path, stash: Path, rng: np.random.Generator, tally: Counter) -> None:
    """Between runs, as a user would: rewrite a few images in place, delete one, bring one back."""
    files = sorted(p for p in images.rglob("*") if p.is_file())
    for target in rng.choice(files, size=min(10, len(files)), replace=False):
        source = files[int(rng.integers(len(files)))]
        mtime = target.stat().st_mtime_ns + 10**9  # always a new mtime: size and mtime are trusted
        target.write_bytes(source.read_bytes())
        os.utime(target, ns=(mtime, mtime))
        tally["rewritten"] += 1
    if len(files) > 20 and rng.random() < 0.6:
        victim = files[int(rng.integers(len(files)))]
        kept = stash / str(victim.relative_to(images)).replace(os.sep, "__")
        victim.rename(kept)
        tally["deleted"] += 1
    stashed = sorted(stash.iterdir())
    if stashed and rng.random() < 0.4:
        back = stashed[int(rng.integers(len(stashed)))]
        back.rename(images / back.name.replace("__", os.sep))
        tally["restored"] += 1


def kill_builds_while_files_change(
    images: Path, model: Path, gallery: Path, kills: int, seed: int
) -> Counter:
    """SIGKILL builds at random moments while files change between runs.

    Files are rewritten, deleted and restored between runs.

    After a kill the gallery opens, verifies (ids, counts, fingerprints) and holds no path twice
    and no path that never existed; after every finished build it passes `verify` with file
    hashes and holds exactly the files on disk, however many kills came before.
    """
    stash = gallery.parent / "stash"
    stash.mkdir()
    ever = {str(p) for p in images.rglob("*") if p.is_file()}
    subprocess.run(build_command(images, model, gallery), check=True, capture_output=True)
    started = time.perf_counter()
    subprocess.run(build_command(images, model, gallery), check=True, capture_output=True)
    idle = time.perf_counter() - started
    rng = np.random.default_rng(seed)
    tally: Counter = Counter()
    while tally["kills"] < kills and tally["runs"] < 3 * kills:
        tally["runs"] += 1
        change_files(images, stash, rng, tally)
        expected = {str(p) for p in images.rglob("*") if p.is_file()}
        process = subprocess.Popen(
            build_command(images, model, gallery), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        if rng.random() < 0.5:
            time.sleep(float(rng.uniform(0.6 * idle, 1.4 * idle)))  # start-up, then the commits
        else:
            wait_until_staged(gallery, process, deadline=time.perf_counter() + 4 * idle)
        killed = process.poll() is None
        if killed:
            os.kill(process.pid, signal.SIGKILL)
            tally["kills"] += 1
        _, stderr = process.communicate(timeout=300)
        tally["tracebacks"] += b"Traceback" in stderr
        if killed:
            inspect_after_kill(gallery, ever, tally)
            if rng.random() < 0.4:  # a finished build right after a kill must repair everything
                finished = subprocess.run(
                    build_command(images, model, gallery),
                    check=False,
                    capture_output=True,
                    timeout=300,
                )
                assert finished.returncode == 0, finished.stderr.decode(errors="replace")
                tally["tracebacks"] += b"Traceback" in finished.stderr
                check_complete(gallery, expected, tally)
        else:
            assert process.returncode == 0, stderr.decode(errors="replace")
            check_complete(gallery, expected, tally)
    final = subprocess.run(
        build_command(images, model, gallery), check=False, capture_output=True, text=True
    )
    assert final.returncode == 0, final.stderr
    check_complete(gallery, {str(p) for p in images.rglob("*") if p.is_file()}, tally)
    print(
        f"\ncrash test with changing files: {tally['kills']} kills, "
        f"{tally['completed_builds']} builds completed, "
        f"{tally['rewritten']} rewrites, {tally['deleted']} deletions, "
        f"{tally['restored']} restores; "
        f"verify failures {tally['verify_failures']}, duplicate paths {tally['duplicate_paths']}, "
        f"phantom paths {tally['phantom_paths']}, duplicate ids {tally['duplicate_ids']}, "
        f"missing ids {tally['missing_ids']}, phantom ids {tally['phantom_ids']}, "
        f"tracebacks {tally['tracebacks']}"
    )
    for key in (
        "tracebacks",
        "verify_failures",
        "duplicate_paths",
        "phantom_paths",
        "duplicate_ids",
        "missing_ids",
        "phantom_ids",
    ):
        assert tally[key] == 0, key
    return tally


def wait_until_staged(gallery: Path, process: subprocess.Popen, deadline: float) -> None:
    """Return once the build has staged embeddings it has not published, or once it ends.

    Staged but unpublished embeddings are the window of issue 21.
    """
    items = gallery / "items.sqlite"
    while process.poll() is None and time.perf_counter() < deadline:
        try:
            with sqlite3.connect(f"file:{items}?mode=ro", uri=True, timeout=0.05) as db:
                staged = db.execute("SELECT COUNT(*) FROM items WHERE added_gen IS NULL").fetchone()
            if staged[0]:
                return
        except sqlite3.Error:
            pass  # busy or mid-checkpoint: look again
        time.sleep(0.01)


def inspect_after_kill(gallery: Path, ever: set[str], tally: Counter) -> None:
    """A killed build leaves a gallery that opens and agrees with itself.

    Its files may be behind the folder.
    """
    report = Gallery.verify(gallery, check_files=False)
    tally["verify_failures"] += 0 if report.ok else 1
    assert report.ok, report.problems
    with sqlite3.connect(f"file:{gallery / 'items.sqlite'}?mode=ro", uri=True) as db:
        gen = report.generation
        paths = [
            row[0]
            for row in db.execute(
                "SELECT path FROM items WHERE added_gen <= ? "
                "AND (removed_gen IS NULL OR removed_gen > ?)",
                (gen, gen),
            )
        ]
    tally["duplicate_paths"] += len(paths) - len(set(paths))
    tally["phantom_paths"] += len(set(paths) - ever)


def test_builds_killed_while_files_change(
    crash_images: Path, model_path: Path, tmp_path: Path
) -> None:
    images = tmp_path / "images"
    shutil.copytree(crash_images, images)
    tally = kill_builds_while_files_change(
        images, model_path, tmp_path / "g", kills=6 * FUZZ_SCALE, seed=FUZZ_SCALE
    )
    assert tally["kills"] >= 3 * FUZZ_SCALE and tally["rewritten"] > 0
