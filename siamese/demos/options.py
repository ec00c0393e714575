"""DemoOptions: what a user chooses of a demo; `siamese demo`'s options come from it.

Either demo's other sizes stay its own config's defaults (siamese/demos/pipeline.py DemoConfig,
siamese/demos/pair.py PairDemoConfig): they are chosen to finish in minutes on two cores. A light
module, so ``siamese demo --help`` loads neither demo.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

from siamese.core.config_fields import setting

#: Training epochs of each demo when not chosen (a test keeps them equal to the configs').
DEMO_EPOCHS, PAIR_DEMO_EPOCHS = 15, 5


@dataclass(frozen=True)
class DemoOptions:
    """Options of ``siamese demo``: which demo, where its files go, how long it trains."""

    #: ``siamese demo --help`` groups the options in this panel.
    PANELS: ClassVar[dict[str, tuple[str, ...]]] = {"Demo": ("pair", "epochs", "seed")}

    out_dir: Path | None = setting(
        None,
        "Where to keep the demo's files (default: a temporary folder).",
        names=("--out", "-o"),
    )
    pair: bool = setting(
        False,
        "Pseudo-siamese pairs instead: sketch → photo and text → photo, each with its own towers.",
        names=("--pair",),
    )
    epochs: int | None = setting(
        None,
        f"Training epochs (default: {DEMO_EPOCHS}, or {PAIR_DEMO_EPOCHS} with the pair demo).",
        min=1,
    )
    seed: int = setting(0, "Random seed.")

    def demo_config(self) -> Any:
        """The chosen demo's config (DemoConfig or PairDemoConfig) with these options set."""
        out_dir = None if self.out_dir is None else str(self.out_dir)
        if self.pair:
            from siamese.demos.pair import PairDemoConfig

            config: Any = PairDemoConfig(out_dir=out_dir, seed=self.seed)
        else:
            from siamese.demos.pipeline import DemoConfig

            config = DemoConfig(out_dir=out_dir, seed=self.seed)
        return config if self.epochs is None else replace(config, epochs=self.epochs)
