"""Service load test: requests/s and latency of `siamese serve` under N concurrent clients, micro-batched vs one at a time.

Two servers run side by side on 127.0.0.1 (separate processes, same model and gallery): one with
micro-batching (``--max-batch 32 --max-wait-ms 5``), one with ``--max-batch 1`` (each request
embedded on its own). Rounds alternate between them, so both see the same machine load; each
round sends ``clients`` × ``requests`` queries (gallery images, PNG, one per request) from
concurrent HTTP clients in this process and checks every answer. Reported per mode: requests/s
(median of the rounds), p50/p95/p99 latency (all rounds pooled), errors and wrong answers (both
must be 0), and the mean batch the server formed; and the throughput ratio batched / one-at-a-time
per round. The model is the default conv tower trained briefly on generated identities (its
speed, not its accuracy, matters here), or ``-O model=PATH -O gallery=DIR``.

Options (-O key=value): clients=16 requests=40 rounds=3 max_batch=32 max_wait_ms=5 identities=200
per_identity=5 size=96 model= gallery=
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the suite's private helpers (_*.py) beside it

from _service_load import Query, RoundResult, batching_stats, run_load  # noqa: E402

from siamese.benchmarking import BenchSettings, latency_stats  # noqa: E402
from siamese.index import Gallery  # noqa: E402

_HOST = "127.0.0.1"  # never anything else: the load test must not leave the machine


def _prepare(settings: BenchSettings) -> tuple[Path, Path]:
    """The model and gallery to serve: given, or a briefly trained default tower and a generated gallery."""
    model, gallery = settings.option("model", None), settings.option("gallery", None)
    if model and gallery:
        return Path(model), Path(gallery)
    if gallery:
        with Gallery.open(gallery) as opened:
            return opened.model_path, Path(gallery)
    from siamese.engine import Embedder
    from siamese.export import export_onnx
    from siamese.synthetic import SyntheticSpec, generate_identities
    from siamese.training import TrainConfig, train

    quick = settings.quick
    root = settings.work_dir / "service"
    identities = settings.option("identities", 20 if quick else 200, int)
    per_identity = settings.option("per_identity", 3 if quick else 5, int)
    size = settings.option("size", 48 if quick else 96, int)
    stamp = root / f"ready-{identities}x{per_identity}-{size}"
    data, gallery_dir, model_path = root / "identities", root / "gallery", root / "model.onnx"
    if not stamp.exists():
        shutil.rmtree(root, ignore_errors=True)
        spec = SyntheticSpec(identities=identities, images_per_identity=per_identity, size=size, formats=("png",))
        generate_identities(data, spec, seed=7)
        train(TrainConfig(data_dir=str(data), out_dir=str(root / "run"), tower="conv", image_size=size, epochs=1,
                          steps_per_epoch=3, val_fraction=0.2, seed=0), progress=False)
        export_onnx(root / "run", model_path)
        Gallery.build(data, Embedder(model_path, device="cpu"), gallery_dir)
        stamp.touch()
    return model_path, gallery_dir


def _queries(gallery_dir: Path, limit: int = 400) -> list[Query]:
    """Gallery images as queries, spread over identities, with the identity each must return."""
    with Gallery.open(gallery_dir) as gallery:
        items = gallery.items.all_items()
    step = max(1, len(items) // limit)
    return [Query(Path(item.path).name, Path(item.path).read_bytes(), item.identity) for item in items[::step][:limit]]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((_HOST, 0))
        return sock.getsockname()[1]


class _Server:
    """`siamese serve` in a subprocess on a free 127.0.0.1 port."""

    def __init__(self, model: Path, gallery: Path, max_batch: int, max_wait_ms: float, log: Path) -> None:
        self.port = _free_port()
        self.url = f"http://{_HOST}:{self.port}"
        command = [sys.executable, "-m", "siamese.cli", "serve", "--gallery", str(gallery), "--model", str(model), "--host", _HOST,
                   "--port", str(self.port), "--max-batch", str(max_batch), "--max-wait-ms", str(max_wait_ms), "--device", "cpu",
                   "--log-level", "warning"]
        self.log = log.open("w")
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}; see {self.log.name}")
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
    }


def _delta(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    return {key: after[key] - before[key] for key in ("batches", "images")}


def run(settings: BenchSettings) -> dict[str, Any]:
    """Measure both modes in alternating rounds and return the figures."""
    quick = settings.quick
    clients = settings.option("clients", 8 if quick else 16, int)
    per_client = settings.option("requests", 10 if quick else 40, int)
    rounds = settings.option("rounds", 1 if quick else 3, int)
    max_batch = settings.option("max_batch", 32, int)
    max_wait_ms = settings.option("max_wait_ms", 5.0, float)
    model, gallery = _prepare(settings)
    queries = _queries(gallery)
    logs = settings.work_dir / "service-logs"
    logs.mkdir(parents=True, exist_ok=True)
    modes = {"batched": max_batch, "one_at_a_time": 1}
    servers = {name: _Server(model, gallery, size, max_wait_ms, logs / f"{name}.log") for name, size in modes.items()}
    results: dict[str, list[RoundResult]] = {name: [] for name in modes}
    batches: dict[str, list[dict[str, Any]]] = {name: [] for name in modes}
    load_before = os.getloadavg()
    try:
        for server in servers.values():
            server.wait_ready()
        for round_number in range(rounds):
            order = list(modes) if round_number % 2 == 0 else list(reversed(modes))  # alternate who goes first
            for name in order:
                url = servers[name].url
                before = batching_stats(url)
                results[name].append(run_load(url, queries, clients=clients, per_client=per_client))
                batches[name].append(_delta(batching_stats(url), before))
    finally:
        for server in servers.values():
            server.stop()
    figures = {name: _summary(results[name], batches[name]) for name in modes}
    ratios = [b.requests / b.wall_s / (s.requests / s.wall_s) for b, s in zip(results["batched"], results["one_at_a_time"])]
    with Gallery.open(gallery) as opened:
        gallery_items = len(opened)
    return {
        "about": {
            "requests_per_s": "queries answered per second of wall time with all clients sending (median over rounds)",
            "latency": "per request, client side: send multipart upload → parsed JSON answer (all rounds pooled), ms",
            "errors": "non-200 answers or transport failures (must be 0)",
            "wrong_answers": "answers whose first identity is not the query image's own (must be 0)",
            "mean_batch": "images per inference call the server formed during the rounds",
            "throughput_ratio": "batched / one-at-a-time requests/s, per round (rounds alternate between the servers)",
        },
        "settings": {"clients": clients, "requests_per_client": per_client, "rounds": rounds, "max_batch": max_batch,
                     "max_wait_ms": max_wait_ms, "gallery_items": gallery_items, "model": str(model), "host": _HOST},
        "modes": figures,
        "throughput_ratio": {"median": round(statistics.median(ratios), 2), "per_round": [round(r, 2) for r in ratios]},
        "machine_load": {"loadavg_before": [round(x, 2) for x in load_before], "loadavg_after": [round(x, 2) for x in os.getloadavg()]},
        "table": [
            f"{name}: {f['requests_per_s']} req/s, p50 {f['p50_ms']:.1f} ms, p95 {f['p95_ms']:.1f} ms, p99 {f['p99_ms']:.1f} ms, "
            f"errors {f['errors']}, wrong {f['wrong_answers']}, mean batch {f['mean_batch']}"
            for name, f in figures.items()
        ] + [f"micro-batching raises throughput {statistics.median(ratios):.2f}× (per round: {', '.join(f'{r:.2f}' for r in ratios)})"],
    }
