"""Named points where a gallery writer has just made something durable, for crash tests.

A real kill can land between any two of the writer's durable steps (a staged chunk committed,
an index file written, items marked, the manifest replaced). Tests install a hook that raises
at the N-th point reached to simulate a kill there, deterministically and in-process; in normal
use no hook is installed and :func:`reached` costs one comparison.
"""

from __future__ import annotations

from collections.abc import Callable

_hook: Callable[[str], None] | None = None


def reached(point: str) -> None:
    """Called by the writer right after a durable step named ``point``."""
    if _hook is not None:
        _hook(point)


def install(hook: Callable[[str], None] | None) -> Callable[[str], None] | None:
    """Install ``hook`` (None removes it); return the previous one so a test can restore it."""
    global _hook
    previous, _hook = _hook, hook
    return previous
