"""Training on several processes: the process group, differentiable collectives, the global batch.

torchrun (or `siamese train --nproc`, training/launch.py) starts one process per rank with
RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT set; :func:`setup`
reads them, joins the group (gloo on CPU, nccl on CUDA) and gives each rank its device and its
share of the cores.

Why the embeddings are gathered: a metric-learning loss draws its negatives from the batch. With
plain DDP each rank's loss would see only its own P×K slice, so negatives shrink with the number
of ranks. Every rank instead gathers every rank's embeddings and labels (:func:`gather_batch`) and
computes the loss on the whole global batch, exactly as one process would.

Why the gradients then come out right without rescaling the loss: every rank computes the same
loss L on the same gathered batch, so the job's objective is J = Σ_r L_r = world·L. The gather's
backward sums the gradient arriving at each rank's slice from every rank (the adjoint of a gather),
which gives rank r the gradient world·∂L/∂E_r for its own embeddings E_r; DDP then averages the
parameter gradients over the ranks: (1/world)·Σ_r world·∂L/∂E_r·∂E_r/∂θ = ∂L/∂θ, the single-process
gradient. Parameters used after the gather (the instance term's projector) get ∂L/∂θ on every rank
and the same average. tests/training/test_distributed.py checks this against one process in
float64.

The collectives here are small autograd Functions over torch.distributed's own all_gather and
all_reduce rather than torch.distributed.nn.functional, which this PyTorch (2.14) deprecates in
favour of a private module; they work on every backend and their adjoint is stated, not assumed.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch.autograd import Function

from siamese.core.errors import ConfigError

#: How long a collective may wait for a slow rank (rank 0 validating a large set) before failing.
COLLECTIVE_TIMEOUT = timedelta(minutes=30)


@dataclass(frozen=True)
class Ranks:
    """Where this process sits in the job; the defaults are a single process."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1

    @property
    def enabled(self) -> bool:
        """Whether there is more than one process."""
        return self.world > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 validates, writes the run directory and prints."""
        return self.rank == 0


def ranks_from_environment() -> Ranks:
    """The ranks torchrun's elastic agent announced in the environment; one process without it."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    except ValueError as exc:
        raise ConfigError(f"malformed torchrun environment ({exc})") from None
    return Ranks(rank, world, local_rank, local_world) if world > 1 else Ranks()


def core_count() -> int:
    """Cores this process may run on (its affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def setup(ranks: Ranks, device: torch.device, threads: int | None) -> tuple[torch.device, bool]:
    """Join the process group if this is a distributed job.

    Return the rank's device and whether it joined.

    Threads: ``threads`` when given; otherwise, with several ranks, each takes an equal share of the
    machine's cores (torchrun would leave every rank one thread, and PyTorch's own default would let
    N ranks each start one thread per core and fight over them).
    """
    if threads is not None:
        torch.set_num_threads(threads)
    elif ranks.enabled:
        torch.set_num_threads(max(1, core_count() // ranks.local_world))
    if not ranks.enabled:
        return device, False
    if device.type == "cuda":
        if torch.cuda.device_count() < ranks.local_world:
            raise ConfigError(
                f"{ranks.local_world} processes on this machine but only "
                f"{torch.cuda.device_count()} CUDA device(s): start at most one process per GPU"
            )
        device = torch.device("cuda", ranks.local_rank)
        torch.cuda.set_device(device)
    joined = False
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=COLLECTIVE_TIMEOUT)
        joined = True
    if dist.get_world_size() != ranks.world:
        raise ConfigError(
            f"the process group has {dist.get_world_size()} ranks, the environment says "
            f"{ranks.world}"
        )
    return device, joined


def run_record(ranks: Ranks) -> dict[str, Any]:
    """config.json's ``distributed`` section of a run on several processes (none for one)."""
    if not ranks.enabled:
        return {}
    return {"distributed": {"world_size": ranks.world, "backend": dist.get_backend()}}


def teardown(joined: bool, *, finished: bool = True) -> None:
    """Leave the process group this module joined (not one the caller set up).

    After a run that ``finished`` on every rank, the ranks first meet at a barrier, so none tears
    its connections down while a peer still uses them, and unreachable objects (a DDP wrapper in a
    reference cycle holds the group) are collected while the interpreter is whole: a gloo group
    outliving destroy_process_group into interpreter shutdown aborts the process ("terminate
    called without an active exception"). After a failure there is no barrier: the peers may be
    stuck in another collective.
    """
    if not (joined and dist.is_initialized()):
        return
    if finished:
        dist.barrier()
    gc.collect()
    dist.destroy_process_group()


class _AllGather(Function):
    """Concatenate every rank's equally shaped tensor along dim 0.

    Backward sums the gradients (the adjoint).
    """

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        ctx.rank, ctx.size = dist.get_rank(), tensor.shape[0]
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)  # every rank's loss contributed to every slice
        return grad[ctx.rank * ctx.size : (ctx.rank + 1) * ctx.size]


class _AllReduce(Function):
    """Sum of every rank's tensor; backward sums the gradients (all-reduce is its own adjoint)."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        total = tensor.contiguous().clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        total = grad.contiguous().clone()
        dist.all_reduce(total)
        return total


def all_gather(tensor: torch.Tensor) -> torch.Tensor:
    """Every rank's ``tensor`` concatenated in rank order, differentiable."""
    return _AllGather.apply(tensor)


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The sum of every rank's ``tensor``, differentiable."""
    return _AllReduce.apply(tensor)


def _interleave_blocks(gathered: torch.Tensor, world: int, blocks: int) -> torch.Tensor:
    """Rank-ordered [r0: b0 b1, r1: b0 b1] → block-ordered [b0: r0 r1, b1: r0 r1].

    Seed-style batches are laid out block-wise ([firsts, seconds] or [anchors, positives,
    negatives]); after the gather the global batch must keep that layout.
    """
    if blocks == 1:
        return gathered
    per_rank = gathered.chunk(world)
    return torch.cat([part.chunk(blocks)[b] for b in range(blocks) for part in per_rank])


def gather_batch(
    ranks: Ranks,
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    *,
    compared: torch.Tensor | None = None,
    instances: torch.Tensor | None = None,
    blocks: int = 1,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """The global batch: every rank's embeddings (differentiable), labels, and instance-term inputs.

    ``compared`` is what the instance term compares (the backbone's features, or the embeddings
    themselves: then it is gathered once); ``instances`` name the image each view shows and are
    made unique across ranks. ``blocks`` is the batch's layout (1 for P×K, 2 for pairs, 3 for
    triplets). A single process gets its inputs back unchanged.
    """
    if not ranks.enabled:
        return embeddings, labels, compared, instances
    same = compared is embeddings
    embeddings = _interleave_blocks(all_gather(embeddings), ranks.world, blocks)
    label_parts = [torch.empty_like(labels) for _ in range(ranks.world)]
    dist.all_gather(label_parts, labels.contiguous())
    labels = _interleave_blocks(torch.cat(label_parts), ranks.world, blocks)
    if compared is not None:
        compared = embeddings if same else all_gather(compared)
    if instances is not None:
        unique = instances + ranks.rank * len(instances)
        parts = [torch.empty_like(unique) for _ in range(ranks.world)]
        dist.all_gather(parts, unique.contiguous())
        instances = torch.cat(parts)
    return embeddings, labels, compared, instances


def broadcast_object(ranks: Ranks, value: Any) -> Any:
    """Rank 0's ``value`` on every rank.

    Pickled between this job's own processes, never read from a file.
    """
    if not ranks.enabled:
        return value
    box = [value if ranks.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(ranks: Ranks, value: Any) -> list[Any]:
    """Every rank's ``value``, in rank order, on every rank."""
    if not ranks.enabled:
        return [value]
    values: list[Any] = [None] * ranks.world
    dist.all_gather_object(values, value)
    return values
