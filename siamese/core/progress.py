"""Progress reporting for long work: a rich bar on stderr when enabled, silence otherwise."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from typing import Any, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class Ticker:
    """Advances one progress task; a no-op when progress display is off."""

    def __init__(self, progress: Progress | None = None, task: int | None = None) -> None:
        self._progress = progress
        self._task = task

    def advance(self, steps: int = 1) -> None:
        """Mark ``steps`` more units done."""
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, steps)

    def describe(self, text: str) -> None:
        """Replace the text shown beside the bar (e.g. the running loss)."""
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, description=text)

    def reset(self, total: int, text: str) -> None:
        """Restart the bar for a new phase (e.g. the next epoch)."""
        if self._progress is not None and self._task is not None:
            self._progress.reset(self._task, total=total, description=text)


@contextlib.contextmanager
def progress_bar(description: str, total: int | None, enabled: bool = True) -> Iterator[Ticker]:
    """Show a progress bar on stderr for the duration of the block when ``enabled``.

    Bars are drawn only on a terminal: logs and captured output stay free of bar residue.
    """
    console = Console(stderr=True)
    if not enabled or not console.is_terminal:
        yield Ticker()
        return
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as progress:
        yield Ticker(progress, progress.add_task(description, total=total))


def epoch_line(
    row: dict[str, Any], epochs: int, enabled: bool = True, stream: TextIO | None = None
) -> None:
    """One flushed line per epoch (epoch, loss, validation figures, time) unless on a terminal.

    A terminal ``stream`` shows the live bar instead; a log file or a CI run would otherwise see
    nothing until the run ends, and long trainings are watched through them.
    """
    stream = stream if stream is not None else sys.stderr
    if not enabled or getattr(stream, "isatty", lambda: False)():
        return
    parts = [f"epoch {row['epoch']}/{epochs}", f"loss {row['loss']:.4f}"]
    parts += [f"{key} {row[key]:.4f}" for key in ("val_map_at_r", "val_recall_at_1") if key in row]
    parts.append(f"{row['seconds']:.1f} s")
    if row.get("train_seconds") and row.get("images"):
        parts.append(f"{row['images'] / row['train_seconds']:.0f} images/s")
    print("  ".join(parts), file=stream, flush=True)


class Laps:
    """Seconds per named stage of a demo, for its report: call it with a stage's name as it ends."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._clock = time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = round(now - self._clock, 2)
        self._clock = now
