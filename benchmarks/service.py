"""Service load test: requests/s and latency of `siamese serve` under N concurrent clients.

Micro-batched vs one at a time.

Two servers run side by side on 127.0.0.1 (separate processes, same model and gallery): one with
micro-batching (``--max-batch 32 --max-wait-ms 5``), one with ``--max-batch 1`` (each request
embedded on its own). Rounds alternate between them, so both see the same machine load; each
round sends ``clients`` × ``requests`` queries (gallery images, PNG, one per request) from
concurrent HTTP clients in this process and checks every answer. Reported per mode: requests/s
(median of the rounds), p50/p95/p99 latency (all rounds pooled), errors and wrong answers (both
must be 0), and the mean batch the server formed; and the throughput ratio batched / one-at-a-time
per round. Two scenarios (towers trained briefly on generated identities: their speed matters
here, not their accuracy): ``default``, the default conv tower at 96 px over 1000 images plus
99 000 generated unit vectors (distractors without image files, so each search costs what a
100k-item exact gallery's does); ``small``, a small conv tower at 32 px over 1000 images, where
per-request costs dominate. ``-O model=PATH -O gallery=DIR`` serves your own instead.

Options (-O key=value): clients=32 requests=40 rounds=3 max_batch=32 max_wait_ms=5
scenarios=default,small model= gallery=. ``--plot`` draws requests/s per mode with p50/p95.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(
    0, str(Path(__file__).resolve().parent)
)  # the suite's private helpers (_*.py) beside it

from _harness import BenchSettings, latency_stats
from _service_load import Query, RoundResult, batching_stats, run_load

from siamese.core.errors import SiameseError
from siamese.index import Gallery, GalleryWriter

_HOST = "127.0.0.1"  # never anything else: the load test must not leave the machine


@dataclass(frozen=True)
class Scenario:
    """A model and gallery to serve.

    The conv tower at some size, generated identities, optional distractors.
    """

    name: str
    size: int
    identities: int
    per_identity: int
    distractors: int = 0
    widths: tuple[int, ...] | None = None  # None: the conv tower's default widths
    embedding_dim: int | None = None

    def about(self) -> str:
        tower = (
            "default conv tower"
            if self.widths is None
            else f"small conv tower (widths {self.widths}, {self.embedding_dim}-d)"
        )
        extra = f" + {self.distractors} generated distractor vectors" if self.distractors else ""
        return (
            f"{tower} at {self.size}×{self.size} grey; gallery of "
            f"{self.identities * self.per_identity} images{extra}"
        )


SCENARIOS = {
    # The product's default tower over a 100k-item exact gallery: inference and search both cost.
    "default": Scenario("default", 96, 200, 5, distractors=99_000),
    # A small tower over a small gallery (thumbnails, signatures): per-request overheads dominate.
    "small": Scenario("small", 32, 200, 5, widths=(8, 16), embedding_dim=16),
}
QUICK = Scenario("quick", 32, 20, 3, distractors=500, widths=(8, 16), embedding_dim=16)


def _prepare(scenario: Scenario, work_dir: Path) -> tuple[Path, Path]:
    """A briefly trained tower, its export, and a gallery; reused.

    The tower's speed matters here, not its accuracy.
    """
    from siamese.demos.synthetic import SyntheticSpec, generate_identities
    from siamese.engine import Embedder
    from siamese.export import export_onnx
    from siamese.training import TrainConfig, train

    root = work_dir / "service" / scenario.name
    stamp = root / "ready.json"
    data, gallery_dir, model_path = root / "identities", root / "gallery", root / "model.onnx"
    shape = (
        {"widths": scenario.widths, "head_dim": scenario.embedding_dim} if scenario.widths else {}
    )
    recipe = TrainConfig(
        data_dir=str(data),
        out_dir=str(root / "run"),
        tower="conv",
        image_size=scenario.size,
        epochs=1,
        steps_per_epoch=3,
        val_fraction=0.2,
        seed=0,
        **shape,
    )
    ready = {
        "scenario": asdict(scenario),
        "recipe": recipe.to_dict(),
    }  # a changed default recipe rebuilds
    if not stamp.is_file() or json.loads(stamp.read_text()) != ready:
        shutil.rmtree(root, ignore_errors=True)
        spec = SyntheticSpec(
            identities=scenario.identities,
            images_per_identity=scenario.per_identity,
            size=scenario.size,
            formats=("png",),
        )
        generate_identities(data, spec, seed=7)
        train(recipe, progress=False)
        export_onnx(root / "run", model_path)
        embedder = Embedder(model_path, device="cpu")
        Gallery.build(data, embedder, gallery_dir)
        _add_distractors(gallery_dir, scenario.distractors, embedder.dim)
        stamp.write_text(json.dumps(ready))
    return model_path, gallery_dir


def _add_distractors(gallery_dir: Path, count: int, dim: int) -> None:
    """Generated unit vectors (identities "distractor-N", no image files).

    With them a search costs what a large gallery's does.
    """
    if count <= 0:
        return
    rng = np.random.default_rng(11)
    vectors = rng.normal(size=(count, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    with GalleryWriter.open(gallery_dir) as writer:
        writer.stage_embeddings(
            vectors,
            [f"generated/{n}" for n in range(count)],
            [f"distractor-{n // 5}" for n in range(count)],
        )
        writer.publish()


def _queries(gallery_dir: Path, limit: int = 400) -> list[Query]:
    """Gallery images as queries, spread over identities, with the identity each must return."""
    with Gallery.open(gallery_dir) as gallery:
        items = gallery.all_items()
    images = [item for item in items if not item.path.startswith("generated/")]
    step = max(1, len(images) // limit)
    return [
        Query(Path(item.path).name, Path(item.path).read_bytes(), item.identity)
        for item in images[::step][:limit]
    ]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((_HOST, 0))
        return sock.getsockname()[1]


class _Server:
    """`siamese serve` in a subprocess on a free 127.0.0.1 port."""

    def __init__(
        self, model: Path, gallery: Path, max_batch: int, max_wait_ms: float, log: Path
    ) -> None:
        self.port = _free_port()
        self.url = f"http://{_HOST}:{self.port}"
        command = [
            sys.executable,
            "-m",
            "siamese.cli",
            "serve",
            "--gallery",
            str(gallery),
            "--model",
            str(model),
            "--host",
            _HOST,
            "--port",
            str(self.port),
            "--max-batch",
            str(max_batch),
            "--max-wait-ms",
            str(max_wait_ms),
            "--device",
            "cpu",
            "--log-level",
            "warning",
        ]
        self.log = log.open("w")
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT)

    def cpu_seconds(self) -> float:
        """CPU time the server process has used (user + system), from /proc."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"server exited with {self.process.returncode}; see {self.log.name}"
                )
            try:
                if httpx.get(f"{self.url}/v1/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"server not ready after {timeout:.0f} s; see {self.log.name}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def _summary(rounds: list[RoundResult], batches: list[dict[str, Any]]) -> dict[str, Any]:
    latencies = [s for r in rounds for s in r.latencies_s]
    images = sum(b["images"] for b in batches)
    calls = sum(b["batches"] for b in batches)
    cpu = {side: sum(b[side] for b in batches) for side in ("server_cpu_s", "client_cpu_s")}
    return {
        "requests_per_s": round(statistics.median(r.requests / r.wall_s for r in rounds), 1),
        "rounds_requests_per_s": [round(r.requests / r.wall_s, 1) for r in rounds],
        **{key: value for key, value in latency_stats(latencies).items() if key != "calls"},
        "requests": len(latencies),
        "errors": sum(r.errors for r in rounds),
        "wrong_answers": sum(r.wrong for r in rounds),
        "first_errors": [e for r in rounds for e in r.first_errors][:5],
        "mean_batch": round(images / calls, 2) if calls else 0.0,
        "inference_calls": calls,
        "server_cpu_ms_per_request": round(1000 * cpu["server_cpu_s"] / max(len(latencies), 1), 3),
        "client_cpu_ms_per_request": round(1000 * cpu["client_cpu_s"] / max(len(latencies), 1), 3),
    }


def _delta(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    return {key: after[key] - before[key] for key in ("batches", "images")}


@dataclass(frozen=True)
class _Load:
    clients: int
    per_client: int
    rounds: int
    max_batch: int
    max_wait_ms: float


def _measure(model: Path, gallery: Path, load: _Load, logs: Path) -> dict[str, Any]:
    """Both servers on one model and gallery, alternating rounds.

    Figures per mode and the throughput ratio.
    """
    queries = _queries(gallery)
    modes = {"batched": load.max_batch, "one_at_a_time": 1}
    servers = {
        name: _Server(model, gallery, size, load.max_wait_ms, logs / f"{name}.log")
        for name, size in modes.items()
    }
    results: dict[str, list[RoundResult]] = {name: [] for name in modes}
    batches: dict[str, list[dict[str, Any]]] = {name: [] for name in modes}
    load_before = os.getloadavg()
    try:
        for server in servers.values():
            server.wait_ready()
        for round_number in range(load.rounds):
            order = (
                list(modes) if round_number % 2 == 0 else list(reversed(modes))
            )  # alternate who goes first
            for name in order:
                url = servers[name].url
                before, server_cpu, client_cpu = (
                    batching_stats(url),
                    servers[name].cpu_seconds(),
                    time.process_time(),
                )
                results[name].append(
                    run_load(url, queries, clients=load.clients, per_client=load.per_client)
                )
                batches[name].append(
                    {
                        **_delta(batching_stats(url), before),
                        "server_cpu_s": servers[name].cpu_seconds() - server_cpu,
                        "client_cpu_s": time.process_time() - client_cpu,
                    }
                )
    finally:
        for server in servers.values():
            server.stop()
    ratios = [
        b.requests / b.wall_s / (s.requests / s.wall_s)
        for b, s in zip(results["batched"], results["one_at_a_time"])
    ]
    with Gallery.open(gallery) as opened:
        gallery_items = len(opened)
    return {
        "gallery_items": gallery_items,
        "model": str(model),
        "modes": {name: _summary(results[name], batches[name]) for name in modes},
        "throughput_ratio": {
            "median": round(statistics.median(ratios), 2),
            "per_round": [round(r, 2) for r in ratios],
        },
        "machine_load": {
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        },
    }


def _table(name: str, figures: dict[str, Any]) -> list[str]:
    lines = [
        f"{name} / {mode}: {f['requests_per_s']} req/s, p50 {f['p50_ms']:.1f} ms, "
        f"p95 {f['p95_ms']:.1f} ms, p99 {f['p99_ms']:.1f} ms, "
        f"errors {f['errors']}, wrong {f['wrong_answers']}, mean batch {f['mean_batch']}"
        for mode, f in figures["modes"].items()
    ]
    ratio = figures["throughput_ratio"]
    return [
        *lines,
        (
            f"{name}: micro-batched / one at a time = {ratio['median']:.2f}× "
            f"(per round: {', '.join(map(str, ratio['per_round']))})"
        ),
    ]


def _plot(scenarios: dict[str, Any], path: Path) -> Path:
    """Requests/s per scenario, micro-batched beside one at a time; p50/p95 latency on each bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(scenarios)
    figure, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 4.2), squeeze=False)
    for axis, name in zip(axes[0], names):
        modes = scenarios[name]["modes"]
        labels = {"batched": "micro-batched", "one_at_a_time": "one at a time"}
        bars = axis.bar(
            [labels[m] for m in modes],
            [f["requests_per_s"] for f in modes.values()],
            color=["#2a7", "#9ab"],
        )
        for bar, figures in zip(bars, modes.values()):
            axis.annotate(
                f"p50 {figures['p50_ms']:.0f} ms\np95 {figures['p95_ms']:.0f} ms",
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                va="bottom",
                fontsize=8,
            )
        axis.set_title(f"{name}: {scenarios[name]['throughput_ratio']['median']:.2f}×", fontsize=10)
        axis.set_ylabel("requests / s")
        axis.margins(y=0.2)
    figure.suptitle("siamese serve under 32 concurrent clients (127.0.0.1)", fontsize=11)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


#: The -O keys this suite reads; the harness refuses any other.
OPTIONS = (
    "clients",
    "requests",
    "rounds",
    "max_batch",
    "max_wait_ms",
    "model",
    "gallery",
    "scenarios",
)


def run(settings: BenchSettings) -> dict[str, Any]:
    """Measure each scenario (or the given model and gallery) in both modes; return the figures."""
    quick = settings.quick
    load = _Load(
        clients=settings.option("clients", 8 if quick else 32, int),
        per_client=settings.option("requests", 10 if quick else 40, int),
        rounds=settings.option("rounds", 1 if quick else 3, int),
        max_batch=settings.option("max_batch", 32, int),
        max_wait_ms=settings.option("max_wait_ms", 5.0, float),
    )
    logs = settings.work_dir / "service-logs"
    logs.mkdir(parents=True, exist_ok=True)
    given_model, given_gallery = settings.option("model", None), settings.option("gallery", None)
    targets: dict[str, tuple[Path, Path, str]] = {}
    if given_gallery:
        with Gallery.open(given_gallery) as opened:
            model = Path(given_model) if given_model else opened.model_path
        targets["given"] = (model, Path(given_gallery), f"{model} serving {given_gallery}")
    else:
        names = ["quick"] if quick else settings.option("scenarios", "default,small").split(",")
        unknown = [n for n in names if n not in SCENARIOS and n != "quick"]
        if unknown:
            raise SiameseError(
                f"unknown service scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}"
            )
        for name in names:
            scenario = QUICK if name == "quick" else SCENARIOS[name]
            targets[name] = (*_prepare(scenario, settings.work_dir), scenario.about())
    scenarios = {}
    for name, (model, gallery, about) in targets.items():
        scenarios[name] = {"about": about, **_measure(model, gallery, load, logs)}
    plot = (
        str(_plot(scenarios, settings.work_dir / "service-throughput.png"))
        if settings.plot
        else None
    )
    return {
        "plot": plot,
        "about": {
            "requests_per_s": (
                "queries answered per second of wall time with all clients sending (median over "
                "rounds)"
            ),
            "latency": (
                "per request, client side: send multipart upload → parsed JSON answer (all rounds "
                "pooled), ms"
            ),
            "errors": "non-200 answers or transport failures (must be 0)",
            "wrong_answers": (
                "answers whose first identity is not the query image's own (must be 0)"
            ),
            "mean_batch": "images per inference call the server formed during the rounds",
            "throughput_ratio": (
                "batched / one-at-a-time requests/s, per round (rounds alternate between the "
                "servers)"
            ),
            "cpu_ms_per_request": (
                "CPU time of the server process / of the load generator per request (includes "
                "warm-up requests)"
            ),
        },
        "settings": {**asdict(load), "host": _HOST},
        "scenarios": scenarios,
        "table": [line for name, figures in scenarios.items() for line in _table(name, figures)],
    }
