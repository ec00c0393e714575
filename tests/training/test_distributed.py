"""Distributed training: two gloo processes equal one process on the whole batch; the samplers
share one global batch; early stopping reaches every rank; `siamese train --nproc 2` end to end.

Every multi-process test runs under a timeout, so a hang fails instead of blocking CI.
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
from hypothesis import given, settings
from hypothesis import strategies as st

from siamese.training.samplers import PKSampler, RandomTupleSampler

WORKER = Path(__file__).with_name("ddp_worker.py")
TIMEOUT = 240  # seconds for any multi-process job on a busy 2-core machine

#: float64 tolerances of the distributed step against one process (sums split across ranks
#: round differently; measured differences are about 1e-16 for the loss, 1e-15 for gradients).
LOSS_TOLERANCE = 1e-12
GRADIENT_TOLERANCE = 1e-10  # relative to the largest gradient entry
#: After three Adam steps (lr 0.01): Adam divides by the gradient's root mean square, so a gradient
#: that is zero in exact arithmetic (the head's linear bias, which batch-norm cancels) turns its
#: rounding noise (~1e-17) into steps of up to lr × noise / eps; measured up to 4e-9.
PARAMETER_TOLERANCE = 1e-7


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run_ranks(args: list[str], world: int = 2) -> None:
    """Start ``world`` ranks of ddp_worker.py as torchrun would, and wait for all.

    It fails on timeout.
    """
    port = _free_port()
    processes = []
    for rank in range(world):
        env = {
            **os.environ,
            "RANK": str(rank),
            "WORLD_SIZE": str(world),
            "LOCAL_RANK": str(rank),
            "LOCAL_WORLD_SIZE": str(world),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
        out = [a.replace("{rank}", str(rank)) for a in args]
        processes.append(
            subprocess.Popen(
                [sys.executable, str(WORKER), *out],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    try:
        outputs = [p.communicate(timeout=TIMEOUT)[0] for p in processes]
    except subprocess.TimeoutExpired:
        for p in processes:
            p.kill()
        pytest.fail(f"distributed job did not finish within {TIMEOUT} s (hang)")
    for rank, (p, output) in enumerate(zip(processes, outputs)):
        assert p.returncode == 0, f"rank {rank} failed:\n{output[-3000:]}"


def test_two_processes_compute_the_single_process_loss_and_gradients(tmp_path: Path) -> None:
    _run_ranks(["equivalence", str(tmp_path / "rank{rank}.json")])
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert set(reports[0]) == {
        "multi-similarity",
        "triplet-batch-hard",
        "contrastive-hard-pairs",
        "contrastive-random-pairs",
        "triplet-random",
        "multi-similarity-instance",
    }
    for case, figures in reports[0].items():
        assert figures["first_loss"] > 0, case  # a real loss, not an empty batch
        assert figures["grad_scale"] > 1e-6, case
        assert figures["local_loss_gap"] > 1e-3, f"{case}: a half-batch loss would pass too"
        assert figures["loss"] <= LOSS_TOLERANCE, (case, figures)
        assert figures["grad"] <= GRADIENT_TOLERANCE * figures["grad_scale"], (case, figures)
        assert figures["param"] <= PARAMETER_TOLERANCE, (case, figures)
        assert figures["digest"] == reports[1][case]["digest"], f"{case}: ranks' parameters differ"


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 9), min_size=2, max_size=14),
    p=st.integers(2, 6),
    k=st.integers(2, 5),
    world=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
def test_ranks_take_disjoint_identities_that_make_up_the_global_batch(
    sizes: list[int], p: int, k: int, world: int, seed: int
) -> None:
    labels = np.repeat(np.arange(len(sizes)), sizes).astype(np.int64)
    usable = sum(n >= 2 for n in sizes)
    if usable < max(2, world):
        with pytest.raises(ValueError):
            PKSampler(labels, p, k, 3, seed, rank=0, world=world)
        return
    ranks = [PKSampler(labels, p, k, 3, seed, rank=r, world=world) for r in range(world)]
    # one process drawing (world × P) identities × K images (P and K as the ranks settled them)
    whole = PKSampler(labels, world * ranks[0].p, ranks[0].k, 3, seed)
    for step, batches in enumerate(zip(*ranks, whole)):
        *mine, everything = batches
        identities = [set(labels[b].tolist()) for b in mine]
        assert all(len(ids) == ranks[0].p for ids in identities)
        for a in range(world):
            for b in range(a + 1, world):
                assert identities[a].isdisjoint(identities[b]), step
        assert [i for b in mine for i in b] == everything, (
            "the ranks' slices are the one-process batch"
        )
        assert len({len(b) for b in mine}) == 1, "equal slices, as the gather needs"


def test_random_tuples_split_by_rank_keep_the_block_layout() -> None:
    labels = np.repeat(np.arange(6), 4).astype(np.int64)
    ranks = [RandomTupleSampler(labels, "pairs", 5, 4, 3, rank=r, world=2) for r in range(2)]
    whole = RandomTupleSampler(labels, "pairs", 10, 4, 3)
    for mine0, mine1, everything in zip(*ranks, whole):
        firsts = everything[:10]
        seconds = everything[10:]
        assert mine0 == firsts[:5] + seconds[:5]
        assert mine1 == firsts[5:] + seconds[5:]


def test_resume_is_deterministic_for_the_shared_sampler() -> None:
    labels = np.repeat(np.arange(8), 3).astype(np.int64)
    straight = PKSampler(labels, 2, 2, 4, 5, rank=1, world=2)
    first = list(straight) + list(straight)
    paused = PKSampler(labels, 2, 2, 4, 5, rank=1, world=2)
    head = list(paused)
    resumed = PKSampler(labels, 2, 2, 4, 99, rank=1, world=2)
    resumed.rng.bit_generator.state = paused.rng.bit_generator.state  # what the checkpoint keeps
    assert head + list(resumed) == first


def test_early_stop_reaches_every_rank(tiny_dataset: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    _run_ranks(["early-stop", str(tiny_dataset), str(run_dir), str(tmp_path / "rank{rank}.json")])
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    # validation never improves after epoch 1, so patience 2 stops after epoch 3 of 20
    assert results == [{"epochs": 3, "stopped_early": True}] * 2
    history = json.loads((run_dir / "history.json").read_text())
    assert [row["epoch"] for row in history["epochs"]] == [1, 2, 3]


def test_a_failed_rank_is_one_clear_line(tmp_path: Path) -> None:
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

    from siamese.training.launch import TrainingFailed, describe_failure

    killed = ProcessFailure(local_rank=1, pid=4242, exitcode=-9, error_file="/nonexistent")
    (tmp_path / "history.json").write_text(json.dumps({"epochs": [{"epoch": 1}, {"epoch": 2}]}))
    failed = TrainingFailed(describe_failure(ChildFailedError("siamese", {1: killed}), tmp_path))
    line = str(failed)  # as a library user reads it; the CLI writes --resume for the setting
    assert failed.settings == ("resume",)
    assert line.startswith("training process rank 1 failed (killed by signal SIGKILL)")
    assert f"Epoch 2 is checkpointed in {tmp_path}: resume the run (resume)" in line
    assert "\n" not in line
    fresh = describe_failure(ChildFailedError("siamese", {1: killed}), tmp_path / "none")
    assert "no checkpoint to resume" in fresh


@pytest.mark.slow  # two launches of two processes: ~25 s idle, over a minute on a busy 2-core box
def test_siamese_train_nproc_2_writes_a_run_that_exports_and_embeds(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    """`siamese train --nproc 2` through torchrun's elastic agent.

    Then export and embed as usual.
    """
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "siamese", "train", str(tiny_dataset), "--out", str(run_dir)]
    options = ["--nproc", "2", "--size", "24", "--widths", "4,8", "--embedding-dim", "8"]
    options += ["--epochs", "2", "--steps-per-epoch", "2", "--p", "2", "--k", "2", "--json"]
    done = subprocess.run(
        command + options, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert [row["epoch"] for row in summary["history"]] == [1, 2]
    assert all(
        row["images"] == 2 * 2 * (2 * 2) for row in summary["history"]
    )  # steps × world × P×K
    config = json.loads((run_dir / "config.json").read_text())
    assert config["distributed"] == {"world_size": 2, "backend": "gloo"}

    again = subprocess.run(
        command + options, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert again.returncode == 1
    refusal = f"error: {run_dir}: already holds a training run; resume it (--resume)"
    assert again.stderr.strip().splitlines() == [f"{refusal} or choose another run folder (--out)"]
    more = [o if o != "2" or options[i - 1] != "--epochs" else "3" for i, o in enumerate(options)]
    resumed = subprocess.run(
        [*command, *more, "--resume"], capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert [row["epoch"] for row in json.loads(resumed.stdout)["history"]] == [1, 2, 3]

    from siamese.data.image_folder import list_image_paths
    from siamese.engine import Embedder
    from siamese.export import export_onnx

    model = export_onnx(run_dir, tmp_path / "model.onnx").path
    embedded = Embedder(model).embed_paths(list_image_paths([tiny_dataset]))
    assert embedded.embeddings.shape == (48, 16) and not embedded.failures
    assert np.allclose(np.linalg.norm(embedded.embeddings, axis=1), 1.0, atol=1e-4)


@pytest.mark.slow  # one launch of two processes and one in-process run: ~20 s on 2 idle cores
def test_a_pair_on_two_processes_learns_as_one_process_on_the_global_batch(
    pair_dataset, pair_config, tmp_path: Path
) -> None:
    """Sketch → photo on two ranks of P identities equals one process of 2P: same loss, weights."""
    from safetensors.numpy import load_file

    from siamese.training import train
    from siamese.training.launch import launch

    settings = {
        "query_data": str(pair_dataset.sketches),
        "query_image_size": 24,
        "query_channels": 1,
        "augment": "none",
        "epochs": 1,
        "steps_per_epoch": 2,
    }
    ranked = launch(
        pair_config(pair_dataset, tmp_path / "ranked", identities_per_batch=3, **settings), 2
    )
    alone = train(pair_config(pair_dataset, tmp_path / "alone", identities_per_batch=6, **settings))
    config = json.loads((tmp_path / "ranked" / "config.json").read_text())
    assert config["distributed"] == {"world_size": 2, "backend": "gloo"}
    (ranked_row,), (alone_row,) = ranked.history, alone.history
    assert ranked_row["images"] == alone_row["images"] == 2 * 6 * 2 * 2  # steps × 2P × K × sides
    assert ranked_row["loss"] == pytest.approx(alone_row["loss"], rel=1e-5)
    # The head's linear bias feeds a batch norm, which cancels it: its true gradient is zero, and
    # Adam turns the rounding noise left in its place into steps of ±lr, on one side as the other
    # (and the running mean follows, which is why validation on a dozen held-out items may rank a
    # near tie differently and is not compared). Every other weight must agree.
    noise_only = {"head.linear.bias", "head.bn.running_mean"}
    for name in ("query.last.safetensors", "gallery.last.safetensors"):
        ranked_weights = load_file(tmp_path / "ranked" / name)
        alone_weights = load_file(tmp_path / "alone" / name)
        assert ranked_weights.keys() == alone_weights.keys()
        for key in alone_weights.keys() - noise_only:
            # Adam divides by the gradient's own scale, so float32 rounding of a small gradient
            # (sums split differently over two processes) moves a weight by more than rounding:
            # a few elements may drift by up to a tenth of a step; a wrong gradient moves most.
            gap = np.abs(ranked_weights[key] - alone_weights[key])
            assert gap.max() < 1e-4, (key, float(gap.max()))
            assert (gap > 2e-5).mean() < 0.02, (key, float((gap > 2e-5).mean()))
