"""What a gallery update did, and the JSON report of the files it refused."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from siamese.core.files import write_json_atomic
from siamese.index.store.manifest import Manifest, now_iso


@dataclass
class UpdateReport:
    """Outcome of `index build`, `index add` or `index remove`.

    Attributes:
        count, identities: what the gallery holds afterwards.
        added, removed: items published and withdrawn by this command.
        embedded: files embedded by this command; resumed: files an interrupted run had embedded.
        unchanged: files already indexed with the same content.
        failures: (path, reason) of refused files.
    """

    gallery_dir: Path
    generation: int
    count: int
    identities: int
    index_type: str
    added: int = 0
    removed: int = 0
    embedded: int = 0
    resumed: int = 0
    unchanged: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    search_params: dict[str, int] = field(default_factory=dict)
    recall: dict[str, Any] | None = None
    choice: dict[str, Any] | None = None
    seconds: float = 0.0
    report_path: Path | None = None

    @classmethod
    def published(
        cls, gallery: Any, manifest: Manifest, started: float, **done: Any
    ) -> UpdateReport:
        """The report of a command that published ``manifest``.

        What the gallery holds now and the index it searches with come from the record; ``done``
        is what the command counted (added, removed, embedded, …); the time runs from
        ``started`` (``time.perf_counter()``). ``gallery`` is a folder or a Milvus location.
        """
        return cls(
            gallery_dir=gallery,
            generation=manifest.generation,
            count=manifest.count,
            identities=manifest.identities,
            index_type=manifest.index_type,
            search_params=manifest.search_params,
            recall=manifest.recall,
            seconds=time.perf_counter() - started,
            **done,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "gallery": str(self.gallery_dir),
            "generation": self.generation,
            "count": self.count,
            "identities": self.identities,
            "index_type": self.index_type,
            "added": self.added,
            "removed": self.removed,
            "embedded": self.embedded,
            "resumed": self.resumed,
            "unchanged": self.unchanged,
            "failures": [{"path": p, "reason": r} for p, r in self.failures],
            "search_params": self.search_params,
            "recall": self.recall,
            "choice": self.choice,
            "seconds": round(self.seconds, 3),
            "images_per_second": round(self.embedded / self.seconds, 1)
            if self.seconds and self.embedded
            else None,
            "report": str(self.report_path) if self.report_path else None,
        }


def write_rejected_report(
    path: Path, command: str, source: str, failures: list[tuple[str, str]]
) -> None:
    """Write the refused files of an update as JSON (an empty list when none were refused)."""
    write_json_atomic(
        path,
        {
            "command": command,
            "source": source,
            "finished": now_iso(),
            "rejected_count": len(failures),
            "rejected": [{"path": p, "reason": r} for p, r in failures],
        },
    )
