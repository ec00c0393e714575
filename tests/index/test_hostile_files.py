"""Odd files in a gallery folder: pipes, devices, sockets, link loops, dangling links, odd names.

`index build` and `index add` run as subprocesses with a timeout, so a file that would block
(a named pipe opened for reading waits for a writer forever) fails the test instead of hanging
CI. Each odd file must be refused with its reason, listed in rejected.json, and never cause a
traceback; the regular images beside them (including a 250-byte name and one that looks like
terminal markup) are indexed.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from siamese.index import Gallery

TIMEOUT_S = 120

#: File name (bytes, relative to the identity folder) -> expected words of its refusal.
HOSTILE = {
    b"pipe.png": "not a regular file (a named pipe)",
    b"null.png": "not a regular file (a character device)",
    b"socket.png": "not a regular file (a socket)",
    b"self.png": "symbolic link loop",
    b"dangling.png": "dangling symbolic link",
    b"\xff\xfe latin-1 \xe9.png": "not valid UTF-8",
    b"up": "symbolic link loop (leads back",
}
#: Regular images with names that are unusual but storable: indexed like any other.
ODD_BUT_FINE = [("x" * 250 + ".png").encode(), b"[bold]markup [red].png"]


def make_hostile(folder: Path) -> None:
    """Fill ``folder`` (one identity) with two plain images.

    The odd-but-fine ones and every hostile entry.
    """
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for n, name in enumerate([b"plain1.png", b"plain2.png", *ODD_BUT_FINE]):
        pixels = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(os.fsdecode(os.fsencode(folder) + b"/" + name), format="PNG")
        assert n < 4
    base = os.fsencode(folder) + b"/"
    os.mkfifo(base + b"pipe.png")
    os.symlink(b"/dev/null", base + b"null.png")
    os.symlink(b"self.png", base + b"self.png")
    os.symlink(b"missing-target.png", base + b"dangling.png")
    os.symlink(b"..", base + b"up")  # a folder link back to the gallery root: a loop for the walk
    Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(
        os.fsdecode(base + b"\xff\xfe latin-1 \xe9.png"), format="PNG"
    )
    here = os.getcwd()
    os.chdir(folder)  # AF_UNIX names are limited to ~108 bytes: bind by a short relative name
    try:
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind("socket.png")
        server.close()  # the socket file stays, nobody listens
    finally:
        os.chdir(here)


def run_cli(*args: str | bytes) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(
            [sys.executable, "-m", "siamese.cli", *args],
            check=False,
            capture_output=True,
            timeout=TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"`siamese {' '.join(map(os.fsdecode, args[:2]))}` hung on odd files")


def refusals(report_path: Path) -> dict[bytes, str]:
    """Refused names (bytes, last path component) -> reason, from a rejected.json."""
    rejected = json.loads(report_path.read_text(encoding="utf-8"))["rejected"]
    return {os.fsencode(entry["path"]).rsplit(b"/", 1)[-1]: entry["reason"] for entry in rejected}


def check_refused(result: subprocess.CompletedProcess[bytes], report_path: Path) -> None:
    stderr = result.stderr.decode("utf-8", "backslashreplace")
    assert "Traceback" not in stderr, stderr
    assert result.returncode == 3, stderr  # finished, some files refused
    refused = refusals(report_path)
    for name, reason in HOSTILE.items():
        assert name in refused, (name, refused)
        assert reason in refused[name], (name, refused[name])
    assert not set(refused) & set(ODD_BUT_FINE) | {b"plain1.png", b"plain2.png"} & set(refused)


def held_names(gallery: Path) -> set[bytes]:
    with Gallery.open(gallery) as opened:
        return {os.fsencode(item.path).rsplit(b"/", 1)[-1] for item in opened.items.all_items()}


def test_build_refuses_odd_files_without_hanging(tmp_path: Path, model_path: Path) -> None:
    images = tmp_path / "images"
    make_hostile(images / "person")
    gallery = tmp_path / "gallery"
    result = run_cli(
        "index", "build", str(images), "--model", str(model_path), "--out", str(gallery)
    )
    check_refused(result, gallery / "rejected.json")
    assert held_names(gallery) == {b"plain1.png", b"plain2.png", *ODD_BUT_FINE}
    verify = run_cli("index", "verify", str(gallery))
    assert verify.returncode == 0, verify.stderr.decode()
    indexed = images / "person" / "plain1.png"
    indexed.unlink()
    os.mkfifo(indexed)  # an indexed file replaced by a pipe: verify reports it, never blocks on it
    verify = run_cli("index", "verify", str(gallery))
    assert verify.returncode == 1 and b"missing or changed" in verify.stderr + verify.stdout


def test_add_refuses_odd_files_named_or_in_folders(tmp_path: Path, model_path: Path) -> None:
    seed = tmp_path / "seed"
    seed.mkdir()
    Image.fromarray(np.full((24, 24, 3), 90, np.uint8)).save(seed / "first.png")
    gallery = tmp_path / "gallery"
    built = run_cli("index", "build", str(seed), "--model", str(model_path), "--out", str(gallery))
    assert built.returncode == 0, built.stderr.decode()
    images = tmp_path / "more"
    make_hostile(images / "person")
    named = [os.fsencode(images / "person") + b"/" + name for name in HOSTILE]
    result = run_cli("index", "add", str(gallery), *named)  # each odd file named on the line
    check_refused(result, gallery / "rejected.json")
    result = run_cli("index", "add", str(gallery), str(images))  # and found in a folder
    check_refused(result, gallery / "rejected.json")
    assert held_names(gallery) == {b"first.png", b"plain1.png", b"plain2.png", *ODD_BUT_FINE}
