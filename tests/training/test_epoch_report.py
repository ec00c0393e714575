"""Training watched through a log or CI: one flushed line per epoch when output is not a terminal;
images decoded once per run, not once per epoch; FLOPs per training image counted."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from siamese.core.progress import epoch_line

ROW = {"epoch": 3, "loss": 0.41234, "lr": 1e-3, "images": 640, "train_seconds": 2.0}


def test_epoch_line_on_a_pipe_not_on_a_terminal() -> None:
    stream = io.StringIO()
    epoch_line({**ROW, "val_map_at_r": 0.5, "seconds": 2.5}, 30, stream=stream)
    assert stream.getvalue() == (
        "epoch 3/30  loss 0.4123  val_map_at_r 0.5000  2.5 s  320 images/s\n"
    )

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    epoch_line({**ROW, "seconds": 2.5}, 30, stream=terminal)
    epoch_line({**ROW, "seconds": 2.5}, 30, enabled=False, stream=stream)
    assert terminal.getvalue() == "" and stream.getvalue().count("\n") == 1


def test_siamese_train_prints_each_epoch_to_a_pipe(tiny_dataset: Path, tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "siamese.cli",
        "train",
        str(tiny_dataset),
        "--out",
        str(tmp_path / "run"),
        "--epochs",
        "2",
        "--steps-per-epoch",
        "2",
        "--size",
        "24",
        "--widths",
        "4,8",
        "--embedding-dim",
        "8",
        "--p",
        "3",
        "--k",
        "2",
        "--val-fraction",
        "0.25",
    ]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "TERM": "dumb"},
    )
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("epoch ")]
    pattern = (
        r"epoch {}/2  loss \d+\.\d{{4}}  val_map_at_r \d\.\d{{4}}  val_recall_at_1 \d\.\d{{4}}"
        r"  \d+\.\d s  \d+ images/s"
    )
    assert len(lines) == 2, done.stderr
    for number, line in enumerate(lines, start=1):
        assert re.fullmatch(pattern.format(number), line), line


def test_images_are_decoded_once_per_run_not_per_epoch(
    tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The training set is decoded and resized once into a uint8 array that every epoch reuses."""
    from siamese.data.image_folder import scan_image_folder
    from siamese.training import TrainConfig, data, train

    calls: list[Path] = []
    real = data.load_pixels

    def counting(path, spec):
        calls.append(Path(path))
        return real(path, spec)

    monkeypatch.setattr(data, "load_pixels", counting)
    config = TrainConfig(
        data_dir=str(tiny_dataset),
        out_dir=str(tmp_path / "run"),
        image_size=24,
        widths=(4, 8),
        head_dim=8,
        epochs=3,
        steps_per_epoch=2,
        identities_per_batch=3,
        images_per_identity=2,
    )
    result = train(config)
    assert len(result.history) == 3
    assert sorted(calls) == sorted(item.path for item in scan_image_folder(tiny_dataset))
    assert all(row["images"] == 2 * 6 and row["train_seconds"] > 0 for row in result.history)


def test_flops_per_training_image_match_the_convolution_arithmetic() -> None:
    """One 3×3 conv (1 → 4 channels) at 8×8 then a linear head.

    2·MACs, backward about twice forward.
    """
    import torch
    from torch import nn

    from siamese.contracts.spec import InputSpec
    from siamese.training.flops import training_flops

    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3, padding=1)
            self.linear = nn.Linear(4 * 8 * 8, 5)

        def training_embedding(self, x: torch.Tensor) -> torch.Tensor:
            return self.linear(self.conv(x).flatten(1))

    tower = Tiny()
    before = {k: v.clone() for k, v in tower.state_dict().items()}
    flops = training_flops(tower, InputSpec.create(8, 1))
    conv, linear = 2 * 8 * 8 * 4 * 9, 2 * 256 * 5
    assert flops["forward"] == conv + linear
    # backward: weight gradients of both layers, and the linear layer's input gradient
    # (not the image's)
    assert flops["backward"] == conv + 2 * linear
    assert all(torch.equal(before[k], v) for k, v in tower.state_dict().items())


def test_keeping_freed_memory_spares_page_faults_and_changes_nothing(tmp_path: Path) -> None:
    """In a fresh process: the same allocations fault far less once glibc keeps freed memory."""
    script = (
        "import resource, sys, torch\n"
        "from siamese.training.memory import keep_freed_memory\n"
        "def faults():\n"
        "    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "    for _ in range(20):\n"
        "        x = torch.ones(64 * 16 * 96 * 96); x.mul_(2); del x\n"
        "    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before\n"
        "plain = faults()\n"
        "kept = keep_freed_memory()\n"
        "print(plain, faults(), kept)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    plain, after, kept = done.stdout.split()
    if kept != "True":
        pytest.skip("not glibc: malloc has nothing to tune")
    assert int(plain) > 20 * 9000  # each 37.7 MB buffer faulted in afresh: ~9,200 pages
    assert int(after) < int(plain) / 5


def test_one_cycle_schedule_rises_then_falls(tiny_dataset: Path, tmp_path: Path) -> None:
    from siamese.core.errors import ConfigError
    from siamese.training import TrainConfig, train
    from siamese.training.setup import lr_schedule as _schedule

    config = TrainConfig(data_dir="x", out_dir="y", epochs=10, schedule="one-cycle")
    factor = _schedule(config, steps_per_epoch=10)  # 100 steps, peak at step 30
    assert factor(0) == pytest.approx(0.04)
    assert factor(15) == pytest.approx(0.04 + 0.96 * 0.5)
    assert factor(30) == pytest.approx(1.0)
    assert factor(65) == pytest.approx(1e-4 + (1 - 1e-4) * 0.5, rel=1e-6)
    assert factor(99) < 0.001 and factor(500) == pytest.approx(1e-4)
    values = [factor(s) for s in range(100)]
    assert values.index(max(values)) == 30
    with pytest.raises(ConfigError, match="one-cycle"):
        TrainConfig(data_dir="x", out_dir="y", schedule="triangle")
    result = train(
        TrainConfig(
            data_dir=str(tiny_dataset),
            out_dir=str(tmp_path / "run"),
            image_size=24,
            widths=(4, 8),
            head_dim=8,
            epochs=2,
            steps_per_epoch=3,
            identities_per_batch=3,
            images_per_identity=2,
            schedule="one-cycle",
            lr=3e-3,
        )
    )
    lrs = [row["lr"] for row in result.history]
    assert lrs[0] > lrs[1] > 0  # past the peak (step 1 of 6) by the end of epoch 1, falling after
