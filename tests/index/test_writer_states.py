"""The gallery writer as a state machine.

Builds, adds, removes, rewrites, deletes and kills, in any order.

Hypothesis drives random sequences of folder changes and gallery updates, and kills updates at
a random durable step (the writer's crash points: a chunk staged, staged rows dropped, sizes
touched, an index file written, items marked, the manifest replaced) by making the hook raise
there. After every step the gallery opens and its ids, counts and fingerprint agree; after a
finished build it passes `verify` with file hashes and holds exactly the decodable files on
disk, each once: no missing, duplicate or phantom item, whatever was killed before.

Embeddings come from a fake embedder (a vector from each file's bytes) so a run takes seconds.
"""

from __future__ import annotations

import faulthandler
import hashlib
import os
import shutil
import sqlite3
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from siamese.core.errors import DataError
from siamese.core.files import sha256_file
from siamese.index import Gallery
from siamese.index.store import crash_points
from siamese.index.updates.operations import add_to_gallery, build_gallery, remove_from_gallery
from siamese.index.updates.sync import canonical_path

DIM = 8
#: One example of the state machine taking longer than this is a hang (on a pipe, a link loop).
HANG_S = 120
#: Files whose content starts with this are "undecodable": the fake embedder refuses them.
BAD = b"bad"


@dataclass
class Batch:
    """What :meth:`Embedder.iter_embed_paths` yields, as far as gallery updates read it."""

    embeddings: np.ndarray
    paths: list[str]
    failures: list[tuple[str, str]]


class FakeEmbedder:
    """A deterministic vector per file content; refuses files starting with ``BAD``."""

    dim = DIM

    def __init__(self, model_path: Path) -> None:
        self.model_path = model_path
        self.fingerprint = sha256_file(model_path)

    def iter_embed_paths(self, paths: list[str]) -> Iterator[Batch]:
        names = [os.fspath(p) for p in paths]
        for start in range(0, len(names), 3):
            batch = Batch(np.zeros((0, DIM), np.float32), [], [])
            rows = []
            for name in names[start : start + 3]:
                data = Path(name).read_bytes()
                if data.startswith(BAD):
                    batch.failures.append((name, "not an image format Pillow can read"))
                    continue
                digest = np.frombuffer(hashlib.sha256(data).digest(), np.uint8)[:DIM]
                rows.append(digest.astype(np.float32) / 255.0)
                batch.paths.append(name)
            if rows:
                batch.embeddings = np.stack(rows)
            yield batch


class Killed(BaseException):
    """Raised at a crash point: the update dies there, as if killed (nothing after it runs)."""


class KillAt:
    """A crash-point hook that raises :class:`Killed` at the ``n``-th durable step."""

    def __init__(self, n: int | None) -> None:
        self.n, self.seen = n, 0

    def __call__(self, point: str) -> None:
        self.seen += 1
        if self.n is not None and self.seen == self.n:
            raise Killed(point)


NAMES = st.sampled_from(["a/1.png", "a/2.png", "a/3.png", "b/1.png", "b/2.png", "c/9.png"])
CONTENTS = st.one_of(st.binary(min_size=1, max_size=12), st.just(BAD + b"!"))


class GalleryLifecycle(RuleBasedStateMachine):
    """Random folder changes and gallery updates, killed at random crash points."""

    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="siamese-states-"))
        self.images = self.root / "images"
        self.images.mkdir()
        self.gallery = self.root / "gallery"
        model = self.root / "model.onnx"
        model.write_bytes(b"fake model")
        self.embedder = FakeEmbedder(model)
        self.clock = 1_600_000_000 * 10**9
        self.tally: Counter = Counter()
        faulthandler.dump_traceback_later(
            HANG_S, exit=True
        )  # a hang fails the run instead of blocking CI

    def teardown(self) -> None:
        faulthandler.cancel_dump_traceback_later()
        crash_points.install(None)
        shutil.rmtree(self.root, ignore_errors=True)
        self.tally["examples"] += 1
        TALLY.update(self.tally)

    # ------------------------------------------------------------ the folder
    def _on_disk(self) -> dict[str, bytes]:
        return {
            canonical_path(p): p.read_bytes() for p in self.images.rglob("*.png") if p.is_file()
        }

    @initialize(names=st.lists(NAMES, min_size=1, max_size=4), content=CONTENTS)
    def first_files(self, names: list[str], content: bytes) -> None:
        for name in names:
            self.write(name, content + name.encode())

    @rule(name=NAMES, content=CONTENTS)
    def write(self, name: str, content: bytes) -> None:
        """Create or rewrite a file in place.

        Every write gets a new mtime (size and mtime are trusted).
        """
        self.tally["writes"] += 1
        path = self.images / name
        path.parent.mkdir(exist_ok=True)
        if path.is_symlink() or path.exists() and not path.is_file():
            path.unlink()  # writing into a pipe would block this test
        path.write_bytes(content)
        self.clock += 10**9
        os.utime(path, ns=(self.clock, self.clock))

    @rule(name=NAMES)
    def delete(self, name: str) -> None:
        (self.images / name).unlink(missing_ok=True)

    @rule(name=NAMES, kind=st.sampled_from(["pipe", "dangling", "self-link", "folder-loop"]))
    def make_odd(self, name: str, kind: str) -> None:
        """Put something that is no image file where an image was (or next to it).

        It is refused, never read.
        """
        path = self.images / name
        path.parent.mkdir(exist_ok=True)
        path.unlink(missing_ok=True)
        if kind == "pipe":
            os.mkfifo(path)
        elif kind == "dangling":
            path.symlink_to("no-such-file.png")
        elif kind == "self-link":
            path.symlink_to(path.name)
        elif not (path.parent / "loop").exists():
            (path.parent / "loop").symlink_to("..", target_is_directory=True)

    # ------------------------------------------------------------ updates
    def _run(self, kill_at: int | None, update) -> bool:
        """Run an update with the kill hook; True when it finished."""
        hook = KillAt(kill_at)
        crash_points.install(hook)
        try:
            update()
        except Killed:
            self.tally["kills"] += 1
            return False
        except DataError:  # an empty folder: nothing to build, refused with a reason
            return False
        finally:
            crash_points.install(None)
            self.tally["points"] += hook.seen
        return True

    @rule(kill=st.booleans(), kill_at=st.integers(1, 5), commit_every=st.integers(1, 3))
    def build(self, kill: bool, kill_at: int, commit_every: int) -> None:
        """A build, killed at its ``kill_at``-th durable step when ``kill``.

        It finishes if it has fewer steps.
        """
        self._build(kill_at if kill else None, commit_every)

    def _build(self, kill_at: int | None, commit_every: int) -> None:
        self.tally["builds"] += 1
        finished = self._run(
            kill_at,
            lambda: build_gallery(
                self.images, self.embedder, self.gallery, commit_every=commit_every
            ),
        )
        if finished and self.gallery.exists():
            self.tally["finished_builds"] += 1
            self._check_matches_folder()

    @precondition(lambda self: (self.gallery / "manifest.json").exists())
    @rule(
        names=st.lists(NAMES, min_size=1, max_size=3), kill=st.booleans(), kill_at=st.integers(1, 5)
    )
    def add(self, names: list[str], kill: bool, kill_at: int) -> None:
        paths = [self.images / n for n in names if (self.images / n).is_file()]
        if not paths:
            return
        finished = self._run(
            kill_at if kill else None,
            lambda: add_to_gallery(self.gallery, paths, self.embedder, commit_every=1),
        )
        if finished:
            self.tally["finished_adds"] += 1
            with Gallery.open(self.gallery) as gallery:
                held = {item.path: item.sha256 for item in gallery.items.all_items()}
            for path in paths:
                data = path.read_bytes()
                if not data.startswith(BAD):
                    assert held[canonical_path(path)] == hashlib.sha256(data).hexdigest()

    @precondition(lambda self: (self.gallery / "manifest.json").exists())
    @rule(name=NAMES)
    def remove(self, name: str) -> None:
        path = canonical_path(self.images / name)
        with Gallery.open(self.gallery) as gallery:
            if not gallery.items.by_paths([path]):
                return
        remove_from_gallery(self.gallery, paths=[path])
        with Gallery.open(self.gallery) as gallery:
            assert not gallery.items.by_paths([path])

    # ------------------------------------------------------------ checks
    def _check_matches_folder(self) -> None:
        """After a finished build: verify passes with file hashes.

        Items are exactly the decodable files.
        """
        report = Gallery.verify(self.gallery)
        assert report.ok, report.problems
        assert report.staged == 0
        expected = {
            path: hashlib.sha256(data).hexdigest()
            for path, data in self._on_disk().items()
            if not data.startswith(BAD)
        }
        with Gallery.open(self.gallery) as gallery:
            items = gallery.items.all_items()
        assert sorted(item.path for item in items) == sorted(expected), "missing or phantom items"
        assert {item.path: item.sha256 for item in items} == expected

    @invariant()
    def opens_and_agrees(self) -> None:
        """Whatever happened, the published gallery opens and ids and fingerprint agree.

        No path is held twice.
        """
        if not (self.gallery / "manifest.json").exists():
            return
        report = Gallery.verify(self.gallery, check_files=False)
        assert report.ok, report.problems
        with sqlite3.connect(f"file:{self.gallery / 'items.sqlite'}?mode=ro", uri=True) as db:
            generation = report.generation
            paths = [
                row[0]
                for row in db.execute(
                    "SELECT path FROM items WHERE added_gen <= ? "
                    "AND (removed_gen IS NULL OR removed_gen > ?)",
                    (generation, generation),
                )
            ]
            staged = [
                row[0]
                for row in db.execute(
                    "SELECT path FROM items WHERE added_gen IS NULL AND removed_gen IS NULL"
                )
            ]
        assert len(paths) == len(set(paths)), "a path is published twice"
        assert len(staged) == len(set(staged)), "a path is staged twice"


TALLY: Counter = Counter()

GalleryLifecycle.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_gallery_lifecycle = GalleryLifecycle.TestCase


def test_lifecycle_really_killed_and_finished() -> None:
    """The machine above is not vacuous: it killed updates and finished builds (run after it)."""
    if not TALLY:
        pytest.skip("run together with test_gallery_lifecycle")
    print(TALLY)
    assert TALLY["kills"] > 0 and TALLY["finished_builds"] > 0, TALLY


@pytest.mark.parametrize("delete_after", [False, True])
@pytest.mark.parametrize("kill_at", range(1, 15))
def test_kill_while_replacements_are_staged(kill_at: int, delete_after: bool) -> None:
    """The issue's case at every crash point.

    Rewrite files, kill the build, (delete one), build again.
    """
    machine = GalleryLifecycle()
    try:
        for n in range(4):
            machine.write(f"a/{n + 1}.png" if n < 3 else "b/1.png", b"old %d" % n)
        machine.build(kill=False, kill_at=1, commit_every=1)
        machine.write("a/1.png", b"new 1")
        machine.write("a/2.png", b"new 2")
        machine.delete("a/3.png")
        machine.write("b/2.png", b"brand new")
        machine.build(kill=True, kill_at=kill_at, commit_every=1)
        machine.opens_and_agrees()
        if delete_after:
            machine.delete("a/1.png")
        machine.build(kill=False, kill_at=1, commit_every=1)
        machine.opens_and_agrees()
    finally:
        machine.teardown()


@pytest.mark.parametrize("delete_before_repair", [False, True])
def test_any_build_repairs_a_path_held_twice(
    monkeypatch: pytest.MonkeyPatch, delete_before_repair: bool
) -> None:
    """A gallery damaged as siamese before this fix left it is repaired by the next build.

    The damage: a path published twice.
    """
    from siamese.index.store.item_writer import ItemWriter

    machine = GalleryLifecycle()
    try:
        for n in range(3):
            machine.write(f"a/{n + 1}.png", b"old %d" % n)
        machine.build(kill=False, kill_at=1, commit_every=1)
        machine.write("a/1.png", b"new 1")
        with monkeypatch.context() as old_siamese:  # publishing that ignores staged replacements
            old_siamese.setattr(ItemWriter, "superseded", lambda self: [])
            machine.build(kill=True, kill_at=1, commit_every=1)
            machine._run(
                None, lambda: build_gallery(machine.images, machine.embedder, machine.gallery)
            )
        with Gallery.open(machine.gallery) as damaged:
            paths = [item.path for item in damaged.items.all_items()]
        assert len(paths) == 4 and len(set(paths)) == 3  # the damage of issue 21
        if delete_before_repair:
            machine.delete("a/1.png")
        machine.build(kill=False, kill_at=1, commit_every=1)  # checks: exactly the files on disk
    finally:
        machine.teardown()
