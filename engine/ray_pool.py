"""Embedding on Ray Data: an actor pool of onnxruntime sessions, parts committed exactly once.

:class:`RayEmbedder` has the members the gallery's update path drives (``fingerprint``, ``dim``,
``model_path``, ``iter_embed_paths``: ``siamese.index.updates.embeds.Embeds``), so a gallery
built with it
keeps every guarantee of the single-process build: staging, resumption, verify, model binding,
recall check, and the same rejected-file reasons. Only how the vectors are computed changes.

Each call of :meth:`RayEmbedder.iter_embed_paths` cuts its paths into parts
(:mod:`siamese.engine.ray_parts`). Parts already committed in the work folder are read back; the
others become one row each of a Ray Dataset mapped by a pool of :class:`PartActor` actors
(``map_batches`` with ``compute=ActorPoolStrategy(size=N)``), each actor holding one
:class:`~siamese.engine.Embedder` (the same decoding and the same refusal reasons as a local
build) whose intra-op and decode threads match the actor's CPUs. The driver commits each part
as it arrives, then yields the parts in the original order. A killed job therefore resumes: a
re-run finds the committed parts and embeds only the rest.

The pool never claims every CPU of the cluster (:func:`size_pool`): Ray Data's own work (feeding
rows to the actors, moving results to the driver) needs CPU too, and a pool holding all of it
can stall the job. Ray is an optional dependency, imported only here and only when used.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import math
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from siamese.core.errors import ConfigError, SiameseError, named
from siamese.core.extras import MissingExtraError
from siamese.engine.embedder import Embedder, EmbedResult
from siamese.engine.ray_parts import (
    DEFAULT_PART_SIZE,
    Part,
    PartStore,
    decode_part,
    encode_part,
    part_name,
    split,
)
from siamese.engine.runtime import RuntimeOptions, available_cores

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self needs Python 3.11

#: CPUs the pool leaves unclaimed for Ray Data's own tasks and the driver (see size_pool).
RESERVED_CPUS = 0.5
#: Parts per actor in one job: enough that actor start-up is a small share of the job.
PARTS_PER_ACTOR = 8


class RayUnavailableError(MissingExtraError):
    """``--engine ray`` was asked for but Ray (ray[data]) is not installed (the ``ray`` extra)."""


def import_ray() -> ModuleType:
    """The ``ray`` module with Ray Data, or a one-line error saying how to install it."""
    try:
        ray = importlib.import_module("ray")
        importlib.import_module("ray.data")
    except ImportError:
        raise RayUnavailableError("ray", "ray", f"the Ray engine ({named('engine')} ray)") from None
    return ray


@dataclass(frozen=True)
class PoolSize:
    """How many actors, and what each claims from the cluster."""

    actors: int
    cpus_per_actor: float
    gpus_per_actor: float
    threads: int  # onnxruntime intra-op threads and decode threads of each actor
    note: str | None = None  # why the request was reduced, if it was


def size_pool(
    cluster_cpus: float,
    cluster_gpus: float = 0.0,
    *,
    actors: int | None = None,
    cpus_per_actor: float | None = None,
    gpus_per_actor: float = 0.0,
) -> PoolSize:
    """Size the actor pool so that actors × cpus_per_actor ≤ cluster CPUs − RESERVED_CPUS.

    The rule: at least RESERVED_CPUS (half a CPU) of the cluster stays unclaimed, whatever is
    asked, because Ray Data schedules its own work (feeding the rows, collecting results) on
    the same CPUs and a pool that holds them all can hang the job. Within that budget:

    - nothing given: one actor per whole CPU of the budget, the budget shared evenly between
      them (2 CPUs: 1 actor of 1.5 CPUs running 2 threads; 16 CPUs: 15 actors of 1.03);
    - ``actors`` only: that many (at most one per whole CPU of the budget), sharing the budget;
    - ``cpus_per_actor`` (at most the budget): as many actors as fit, or ``actors`` if fewer;
    - ``gpus_per_actor``: also no more actors than the cluster's GPUs can hold.

    Each actor runs round(cpus_per_actor) onnxruntime and decode threads (at least 1).

    Raises:
        ConfigError: the cluster has no CPU to spare, or fewer GPUs than one actor needs.
    """
    budget = cluster_cpus - RESERVED_CPUS
    if budget <= 0:
        raise ConfigError(
            f"the Ray cluster has {cluster_cpus:g} CPUs; the pool needs more than "
            f"{RESERVED_CPUS:g} (kept free for Ray Data's own tasks)"
        )
    if actors is not None and actors < 1:
        raise ConfigError(f"Ray actors ({named('actors')}) must be at least 1, got {actors}")
    if cpus_per_actor is not None and cpus_per_actor <= 0:
        raise ConfigError(
            f"CPUs per actor ({named('cpus_per_actor')}) must be positive, got {cpus_per_actor:g}"
        )
    if gpus_per_actor < 0:
        raise ConfigError(
            f"GPUs per actor ({named('gpus_per_actor')}) must be 0 or more, got {gpus_per_actor:g}"
        )
    notes = []
    fits = max(1, math.floor(budget + 1e-9))
    if cpus_per_actor is None:
        count = min(actors, fits) if actors is not None else fits
        cpus = budget / count
    else:
        cpus = min(cpus_per_actor, budget)
        if cpus < cpus_per_actor:
            notes.append(f"{cpus_per_actor:g} CPUs per actor reduced to {cpus:g}")
        fits = max(1, math.floor(budget / cpus + 1e-9))
        count = min(actors, fits) if actors is not None else fits
    if gpus_per_actor > 0:
        if cluster_gpus + 1e-9 < gpus_per_actor:
            raise ConfigError(
                f"each actor asks for {gpus_per_actor:g} GPUs; the Ray cluster has {cluster_gpus:g}"
            )
        count = min(count, math.floor(cluster_gpus / gpus_per_actor + 1e-9))
    if actors is not None and count < actors:
        notes.append(
            f"{actors} actors reduced to {count} so the pool leaves {RESERVED_CPUS:g} of the "
            f"cluster's {cluster_cpus:g} CPUs free"
            + (f" and fits its {cluster_gpus:g} GPUs" if gpus_per_actor > 0 else "")
        )
    threads = max(1, math.floor(cpus + 0.5))
    cpus = math.floor(cpus * 1e4) / 1e4  # rounded down: the pool stays within its budget
    return PoolSize(count, cpus, gpus_per_actor, threads, "; ".join(notes) or None)


def connect(address: str | None) -> tuple[ModuleType, bool]:
    """Start a local Ray cluster sized to this machine (no address) or join one; quiet Ray's logs.

    ``address`` is "auto" (a cluster started on this machine with `ray start`) or
    "ray://host:port" (Ray Client). Returns the ray module and whether this call started Ray
    (so the caller shuts down only what it started).
    """
    ray = import_ray()
    from ray.data import DataContext

    context = DataContext.get_current()
    context.enable_progress_bars = False
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if ray.is_initialized():
        return ray, False
    options: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "logging_level": logging.ERROR,
    }
    if address is None:
        options["num_cpus"] = available_cores()
    else:
        options["address"] = address
    try:
        with _quiet_core_logs():
            ray.init(**options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"reach the cluster at {address}" if address else "start a local cluster"
        raise SiameseError(f"ray: cannot {where}: {_first_line(exc)}") from None
    return ray, True


@contextlib.contextmanager
def _quiet_core_logs() -> Iterator[None]:
    """Keep Ray's C++ core logs off this process's stderr, unless the user set their level.

    They print an advisory on each job (actor restarts are on; Ray Data keeps the actors'
    constructor arguments in the object store). The level is read once, when ``ray.init``
    starts the core worker, which also announces the level it read: that one line goes to
    /dev/null. Errors still arrive as exceptions; the full logs stay in Ray's session folder.
    """
    if "RAY_BACKEND_LOG_LEVEL" in os.environ:
        yield
        return
    os.environ["RAY_BACKEND_LOG_LEVEL"] = "fatal"
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[-1] if text else type(exc).__name__


class PartActor:
    """A Ray Data actor: one onnxruntime session, embeds a part per call, sends its file bytes.

    Constructed in a worker process by Ray Data; the model is opened once per actor.
    """

    def __init__(
        self,
        model_path: str,
        fingerprint: str,
        threads: int,
        device: str,
        batch_size: int,
    ) -> None:
        runtime = RuntimeOptions(intra_op_threads=threads)
        self.embedder = Embedder(
            model_path,
            device=device,
            batch_size=batch_size,
            decode_threads=threads,
            runtime=runtime,
        )
        if self.embedder.fingerprint != fingerprint:
            raise SiameseError(
                f"{model_path}: the model file on {socket.gethostname()} differs from the "
                "driver's (another file at the same path)"
            )
        self.fingerprint = fingerprint
        self.actor = f"{socket.gethostname()}:{os.getpid()}"
        self.ready_at = time.time()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        names, payloads, busy, counts = [], [], [], []
        for name, listed in zip(batch["part"], batch["paths"]):
            paths = json.loads(str(listed))
            started = time.perf_counter()
            result = self.embedder.embed_paths(paths)
            payloads.append(
                encode_part(
                    self.fingerprint, paths, result.paths, result.embeddings, result.failures
                )
            )
            busy.append(time.perf_counter() - started)
            names.append(str(name))
            counts.append(len(result.paths))
        size = len(names)
        return {
            "part": np.array(names),
            "payload": np.array(payloads, dtype=object),
            "actor": np.array([self.actor] * size),
            "ready_at": np.full(size, self.ready_at),
            "busy_s": np.array(busy),
            "images": np.array(counts),
        }


@dataclass
class RayStats:
    """What the Ray engine did, for the final report (accumulated over every call)."""

    pool: PoolSize
    connect_s: float = 0.0  # starting or joining the cluster
    pool_start_s: float = 0.0  # job submitted → first actor ready, summed over jobs
    run_s: float = 0.0  # first actor ready → last part back, summed over jobs
    images: int = 0  # embedded by the actors (not resumed)
    parts_embedded: int = 0
    parts_resumed: int = 0
    images_resumed: int = 0
    per_actor: dict[str, list[float]] = field(default_factory=dict)  # actor → [images, busy_s]

    def to_dict(self) -> dict[str, Any]:
        actors = {
            actor: {
                "images": int(images),
                "busy_s": round(busy, 3),
                "images_per_s": round(images / busy, 1) if busy else None,
            }
            for actor, (images, busy) in sorted(self.per_actor.items())
        }
        return {
            "actors": self.pool.actors,
            "cpus_per_actor": self.pool.cpus_per_actor,
            "gpus_per_actor": self.pool.gpus_per_actor,
            "threads_per_actor": self.pool.threads,
            "pool_note": self.pool.note,
            "connect_s": round(self.connect_s, 3),
            "pool_start_s": round(self.pool_start_s, 3),
            "run_s": round(self.run_s, 3),
            "images_embedded": self.images,
            "images_per_s": round(self.images / self.run_s, 1) if self.run_s else None,
            "parts_embedded": self.parts_embedded,
            "parts_resumed": self.parts_resumed,
            "images_resumed": self.images_resumed,
            "per_actor": actors,
        }


class RayEmbedder:
    """Embeds files on a Ray cluster: stands in for :class:`Embedder` in a gallery build.

    Args:
        model_path: model.onnx; every worker must see the same file at this path.
        work_dir: where finished parts are committed (the caller removes it after publishing).
        address: None (start a local cluster on this machine), "auto" or "ray://host:port".
        actors, cpus_per_actor, gpus_per_actor: the pool (see :func:`size_pool`).
        device: the actors' execution provider; "auto" means the CPU unless actors get GPUs.
        batch_size: images per inference call inside an actor.
        part_size: files per part.

    Raises:
        RayUnavailableError: Ray is not installed.
        ModelError: the model is missing or not a siamese model (checked here, before any actor).
        ConfigError: the cluster cannot hold the pool.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        work_dir: str | os.PathLike[str],
        *,
        address: str | None = None,
        actors: int | None = None,
        cpus_per_actor: float | None = None,
        gpus_per_actor: float = 0.0,
        device: str = "auto",
        batch_size: int = 32,
        part_size: int = DEFAULT_PART_SIZE,
    ) -> None:
        import_ray()  # the install hint comes before anything else is opened
        # The driver opens the model too: the model checks and its identity, before any actor.
        local = Embedder(
            model_path,
            device="cpu",
            batch_size=1,
            decode_threads=1,
            runtime=RuntimeOptions(intra_op_threads=1, warmup=False),
        )
        self.model_path = local.model_path.resolve()
        self.fingerprint = local.fingerprint
        self.dim = local.dim
        del local
        if part_size < 1:
            raise ConfigError(f"part size must be at least 1, got {part_size}")
        self.parts = PartStore(work_dir)
        self.part_size = part_size
        self.batch_size = batch_size
        started = time.perf_counter()
        self._ray, self._owns_cluster = connect(address)
        try:
            resources = self._ray.cluster_resources()
            pool = size_pool(
                float(resources.get("CPU", 0.0)),
                float(resources.get("GPU", 0.0)),
                actors=actors,
                cpus_per_actor=cpus_per_actor,
                gpus_per_actor=gpus_per_actor,
            )
        except BaseException:
            self.close()  # a cluster started here goes with the refusal
            raise
        self.device = "cpu" if device == "auto" and gpus_per_actor == 0 else device
        self.stats = RayStats(pool, connect_s=time.perf_counter() - started)

    @property
    def pool(self) -> PoolSize:
        return self.stats.pool

    @property
    def suggested_chunk(self) -> int:
        """Files per call that keep every actor busy for several parts (amortises start-up)."""
        return self.pool.actors * self.part_size * PARTS_PER_ACTOR

    def settings(self) -> dict[str, Any]:
        """The engine's effective settings (for reports and benchmarks)."""
        return {
            "engine": "ray",
            "device": self.device,
            "batch_size": self.batch_size,
            "part_size": self.part_size,
            "actors": self.pool.actors,
            "cpus_per_actor": self.pool.cpus_per_actor,
            "gpus_per_actor": self.pool.gpus_per_actor,
            "threads_per_actor": self.pool.threads,
        }

    def run_tasks(
        self, function: Callable[..., Any], argument_lists: Sequence[Sequence[Any]]
    ) -> list[Any]:
        """``function(*arguments)`` for each argument list as tasks on this embedder's cluster.

        The executor a Ray build hands to the on-disk index merge, so its parts run on the
        cluster too (``siamese.index.ondisk.build.PartRunner``).
        """
        task = self._ray.remote(function)
        return list(self._ray.get([task.remote(*arguments) for arguments in argument_lists]))

    def close(self) -> None:
        """Shut down the local cluster if this embedder started it."""
        if self._owns_cluster and self._ray.is_initialized():
            self._ray.shutdown()
        self._owns_cluster = False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- embedding
    def iter_embed_paths(self, paths: Sequence[str | os.PathLike[str]]) -> Iterator[EmbedResult]:
        """Embed files part by part, in order; unreadable files go to each part's failures."""
        listed = [os.fspath(p) for p in paths]
        groups = split(listed, self.part_size)
        names = [part_name(self.fingerprint, group) for group in groups]
        ready: dict[int, Part] = {}
        todo = []
        for index, (name, group) in enumerate(zip(names, groups)):
            part = self.parts.load(name, self.fingerprint, group)
            if part is None:
                todo.append(index)
            else:
                ready[index] = part
                self.stats.parts_resumed += 1
                self.stats.images_resumed += len(part.embedded)
        stream = self._run(todo, names, groups) if todo else iter(())
        try:
            for index in range(len(groups)):
                while index not in ready:
                    arrived, part = next(stream)
                    ready[arrived] = part
                part = ready.pop(index)
                yield EmbedResult(part.embeddings, part.embedded, part.failures)
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()  # stops the Ray job if the caller stopped early

    def _dataset(self, rows: list[dict[str, str]]) -> Any:
        from ray.data import ActorPoolStrategy, from_items

        pool = self.pool
        return from_items(rows, override_num_blocks=len(rows)).map_batches(
            PartActor,
            compute=ActorPoolStrategy(size=pool.actors),
            num_cpus=pool.cpus_per_actor,
            num_gpus=pool.gpus_per_actor or None,
            batch_size=1,
            batch_format="numpy",
            fn_constructor_kwargs={
                "model_path": str(self.model_path),
                "fingerprint": self.fingerprint,
                "threads": pool.threads,
                "device": self.device,
                "batch_size": self.batch_size,
            },
        )

    def _run(
        self, todo: list[int], names: list[str], groups: list[list[str]]
    ) -> Iterator[tuple[int, Part]]:
        """Run one Ray Data job over the parts ``todo``; commit and yield each as it arrives."""
        position = {names[i]: i for i in todo}
        rows = [{"part": names[i], "paths": json.dumps(groups[i])} for i in todo]
        submitted = time.time()
        first_ready: float | None = None
        try:
            for batch in self._dataset(rows).iter_batches(batch_size=None, batch_format="numpy"):
                for row in range(len(batch["part"])):
                    name = str(batch["part"][row])
                    index = position[name]
                    data = bytes(batch["payload"][row])
                    part = decode_part(name, data, self.fingerprint, groups[index])
                    self.parts.commit(name, data)
                    ready_at = float(batch["ready_at"][row])
                    first_ready = ready_at if first_ready is None else min(first_ready, ready_at)
                    actor = self.stats.per_actor.setdefault(str(batch["actor"][row]), [0, 0.0])
                    actor[0] += int(batch["images"][row])
                    actor[1] += float(batch["busy_s"][row])
                    self.stats.parts_embedded += 1
                    self.stats.images += len(part.embedded)
                    yield index, part
        except SiameseError:
            raise
        except Exception as exc:  # a Ray or actor failure: one line, the committed parts stay
            raise SiameseError(
                f"ray: the embedding job failed ({_first_line(exc)}); committed parts are kept, "
                "run the same command again to resume"
            ) from exc
        finally:
            ended = time.time()
            start = first_ready if first_ready is not None else ended
            self.stats.pool_start_s += max(0.0, start - submitted)
            self.stats.run_s += max(0.0, ended - start)
