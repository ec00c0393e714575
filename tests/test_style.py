"""Style is part of the contract: `ruff check` (line length included) and `ruff format` stay clean.

Run as part of the test suite so CI (the README's test command) enforces them; the ruff version
is pinned in the `test` extra, so a newer ruff's new rules cannot fail a checkout that passed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _ruff(*args: str) -> subprocess.CompletedProcess[str]:
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.fail("ruff is not installed: pip install -e '.[test]'")
    return subprocess.run(
        [ruff, *args], cwd=ROOT, capture_output=True, text=True, check=False, timeout=300
    )


def test_ruff_check_is_clean() -> None:
    done = _ruff("check", "--no-cache", "--output-format", "concise", ".")
    assert done.returncode == 0, done.stdout + done.stderr


def test_ruff_format_is_applied() -> None:
    done = _ruff("format", "--no-cache", "--check", ".")
    assert done.returncode == 0, done.stdout + done.stderr
