"""What a training run settles before its first step: device, input spec, tower options,
learning-rate schedule, mixed precision, library versions, and whether its folder may be used.

Shared by single-tower and pair runs (training/trainer.py), so both resolve them alike.
"""

from __future__ import annotations

import contextlib
import math
import platform
from pathlib import Path
from typing import Any

import numpy as np
import torch

from siamese import __version__
from siamese.contracts.spec import InputSpec
from siamese.core.errors import ConfigError, SiameseError, named
from siamese.core.files import read_json
from siamese.training.checkpoint import CHECKPOINT_FILE, load_checkpoint
from siamese.training.config import TrainConfig
from siamese.training.data import typical_image_size
from siamese.training.distributed import Ranks, broadcast_object
from siamese.training.run_dir import CONFIG_FILE
from siamese.training.towers import tower_entry

#: Config fields that may change when resuming a run (everything else must match).
RESUMABLE_CHANGES = {"out_dir", "epochs", "resume", "device", "workers", "threads", "patience"}
RESUMABLE_CHANGES |= {"amp", "recipe"}


def resolve_device(name: str) -> torch.device:
    """Map "auto" to CUDA when present; refuse "cuda" on a machine without it."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"the CUDA device was asked for ({named('device')} cuda), but PyTorch sees no CUDA "
            "device on this machine"
        )
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def default_input_size(config: TrainConfig) -> int:
    """The tower's default size; for the conv tower the images' own size when smaller.

    Upscaling 28-px images to 64 px would cost 5× the compute and add no information.
    """
    default = int(tower_entry(config.tower or "conv").default_input()["size"])
    if config.tower != "conv":
        return default
    native = typical_image_size(config.data_dir)
    return default if native <= 0 else int(min(default, max(32, -(-native // 8) * 8)))


def input_spec_for(config: TrainConfig) -> InputSpec:
    """The input spec a resolved config implies: its size or the tower's default.

    The backbone's own normalisation when it starts from pretrained weights (ImageNet
    statistics, or timm's configuration), none otherwise.
    """
    defaults = tower_entry(config.tower or "conv").default_input()
    size = config.image_size or default_input_size(config)
    channels = config.channels or 1
    mean = std = None
    if config.starting_weights and defaults["mean"] is not None:
        mean, std = defaults["mean"], defaults["std"]
        if channels == 1:
            mean, std = (float(np.mean(mean)),), (float(np.mean(std)),)
    spec = InputSpec.create(
        size, channels, mean=mean, std=std, resize=config.resize or defaults["resize"]
    )
    if config.starting_weights:
        spec = InputSpec.from_dict({**spec.to_dict(), "interpolation": defaults["interpolation"]})
    return spec


def tower_options(config: TrainConfig) -> dict[str, Any]:
    """The tower arguments a config sets explicitly (the rest keep the tower's defaults)."""
    options: dict[str, Any] = {}
    if config.head_dim is not None:
        options["head_dim"] = config.head_dim
    if config.tower != "classic":
        options["normalize"] = config.normalize
        options["embed_from"] = config.embed_from
        options["batch_norm"] = config.head_batch_norm
        if config.tower == "conv":
            options["grid"] = config.grid
            # always recorded, so a changed default cannot change old runs
            options["widths"] = list(config.widths or ())
    return options


def library_versions() -> dict[str, str]:
    """Versions that produced a run, recorded in its config.json."""
    import PIL
    import torchvision

    versions = {
        "siamese": __version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "pillow": PIL.__version__,
        "python": platform.python_version(),
    }
    with contextlib.suppress(ImportError):
        import timm

        versions["timm"] = timm.__version__
    return versions


def lr_schedule(config: TrainConfig, steps_per_epoch: int) -> Any:
    """Linear warm-up, then cosine decay to 1% of the learning rate (or constant); or one cycle."""
    assert config.epochs is not None
    total = config.epochs * steps_per_epoch
    warmup = int(config.warmup_epochs * steps_per_epoch)
    if config.schedule == "one-cycle":
        return _one_cycle(total)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if config.schedule == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total - warmup)
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def backbone_schedule(config: TrainConfig, steps_per_epoch: int) -> Any:
    """The backbone's factor: zero while it is frozen, then the run's schedule, warmed up again.

    A pretrained backbone's features are what the head first learns to use; letting the
    randomly initialised head's large early gradients into the backbone would spoil them.
    """
    base = lr_schedule(config, steps_per_epoch)
    frozen = int((config.freeze_epochs or 0.0) * steps_per_epoch)
    rewarm = max(1, steps_per_epoch)

    def factor(step: int) -> float:
        if step < frozen:
            return 0.0
        return base(step) * min(1.0, (step - frozen + 1) / rewarm) if frozen else base(step)

    return factor


def _one_cycle(total: int, rise: float = 0.3) -> Any:
    """One cycle (Smith, 2018): from 1/25 of the learning rate up to it over the first 30% of the
    steps, then cosine down to 1/10,000 of it; its own warm-up, so ``warmup_epochs`` is unused.
    An option, not yet measured by the accuracy suite."""
    peak = max(1, int(rise * total))

    def factor(step: int) -> float:
        if step < peak:
            return 0.04 + 0.96 * step / peak
        progress = min(1.0, (step - peak) / max(1, total - peak))
        return 1e-4 + (1 - 1e-4) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def autocast_for(device: torch.device, enabled: bool) -> Any:
    """bfloat16 (or float16) autocast on CUDA; nothing on CPU, where it would not pay."""
    if device.type != "cuda" or not enabled:
        return contextlib.nullcontext
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return lambda: torch.autocast("cuda", dtype=dtype)


def prepare_run_dir(config: TrainConfig, ranks: Ranks) -> dict[str, Any] | None:
    """Rank 0 checks the run directory (and reads the checkpoint to resume).

    Every rank gets the outcome: agreeing first means a refused run stops every rank with rank
    0's message instead of leaving the others waiting for it.
    """
    outcome: tuple[dict[str, Any] | None, SiameseError | None] = (None, None)
    if ranks.is_main:
        try:
            outcome = (check_run_dir(config, ranks), None)
        except SiameseError as exc:
            outcome = (None, exc)
    state, error = broadcast_object(ranks, outcome)
    if error is not None:
        if not ranks.is_main:
            error.reported_by_rank0 = True  # the CLI prints it once, from rank 0
        raise error
    return state


def check_run_dir(config: TrainConfig, ranks: Ranks) -> dict[str, Any] | None:
    """Refuse an existing run without ``resume``, or a resume that cannot continue.

    Return the checkpoint to resume.
    """
    run_dir = Path(config.out_dir)
    if (run_dir / CHECKPOINT_FILE).exists() and not config.resume:
        raise ConfigError(
            f"{run_dir}: already holds a training run; resume it ({named('resume')}) or choose "
            f"another run folder ({named('out_dir')})"
        )
    if not config.resume:
        return None
    _check_resumable(run_dir, config)
    state = load_checkpoint(run_dir)
    written_by = int(state.get("world_size", 1))
    if written_by != ranks.world:
        raise ConfigError(
            f"{run_dir / CHECKPOINT_FILE}: written by {written_by} training process(es); resume it "
            f"with {written_by} ({named('nproc')} {written_by}, or torchrun's --nproc-per-node × "
            f"--nnodes), "
            f"not {ranks.world}"
        )
    return state


def _check_resumable(run_dir: Path, config: TrainConfig) -> None:
    saved = TrainConfig.from_dict(read_json(run_dir / CONFIG_FILE)["train"]).to_dict()
    changed = sorted(
        k for k, v in config.to_dict().items() if k not in RESUMABLE_CHANGES and saved.get(k) != v
    )
    if changed:
        raise ConfigError(
            f"{run_dir}: cannot resume with different settings "
            f"({', '.join(map(named, changed))}); use the original ones or a new run folder "
            f"({named('out_dir')})"
        )
