"""What one running service shares: the embedder, the live gallery, the batcher, the write lock.

Reads go decode pool → micro-batcher, whose one call per batch embeds every image and searches
them all on the leased generation in a single FAISS call. Writes (add, remove) are
serialised by one asyncio lock, run on a worker thread through the gallery's own crash-safe
update path (which also takes the on-disk writer lock, so a concurrent `siamese index add` gets
"gallery is locked" rather than a torn gallery), then open the new generation and swap it in.
A background task picks up generations (and thresholds) published by other processes.

A gallery built with a pseudo-siamese pair's gallery tower is served with three roles apart:
``embedder`` embeds image queries (the pair's image query tower, or the gallery's own model),
``gallery_embedder`` embeds added images (always the gallery's model), and ``text_embedder``
embeds text queries when the pair's query tower reads text (None otherwise).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path, PurePath
from typing import Any

from siamese.core.errors import DataError, GalleryError
from siamese.core.files import sha256_bytes
from siamese.engine import Embedder, TextEmbedder
from siamese.engine.runtime import available_cores
from siamese.galleries import open_served_gallery
from siamese.index import Gallery, GalleryReader, QueryResult, short_fingerprint
from siamese.index.search.filters import Where
from siamese.service.batcher import MicroBatcher, Rows, cancel_and_wait
from siamese.service.config import ServiceConfig
from siamese.service.errors import ApiError
from siamese.service.live_gallery import LiveGallery
from siamese.service.metrics import ServiceMetrics
from siamese.service.uploads import Upload, image_format, preprocess_all

log = logging.getLogger("siamese.service")


class ServiceState:
    """The loaded model and gallery plus the machinery around them; create with :meth:`open`."""

    def __init__(
        self,
        config: ServiceConfig,
        embedder: Embedder,
        gallery: GalleryReader,
        *,
        gallery_embedder: Embedder | None = None,
        text_embedder: TextEmbedder | None = None,
    ) -> None:
        self.config = config
        self.embedder = embedder
        self.gallery_embedder = gallery_embedder or embedder
        self.text_embedder = text_embedder
        self.gallery_dir = Path(config.gallery_dir)
        self.live = LiveGallery(gallery)
        self.batcher: MicroBatcher[tuple[int, list[QueryResult]]] = MicroBatcher(
            self._embed_and_search, max_batch=config.max_batch, max_wait_s=config.max_wait_ms / 1000
        )
        self.decode_pool = ThreadPoolExecutor(
            config.decode_threads or available_cores(), thread_name_prefix="siamese-upload"
        )
        self.ready = False
        self._write_lock: asyncio.Lock | None = None
        self._refresher: asyncio.Task[None] | None = None
        self._watch = Gallery.watch(self.gallery_dir)
        self.metrics = ServiceMetrics()
        self.metrics.watch(
            queued=lambda: self.batcher.queued,
            decoding=lambda: self.batcher.announced,
            items=lambda: len(self.live.current),
            generation=lambda: self.live.current.generation,
        )
        for role, facts in self.towers().items():
            self.metrics.set_model(role, facts["fingerprint"], facts["name"])

    def towers(self) -> dict[str, dict[str, str]]:
        """The towers serving, by role: short fingerprint and file name of each.

        What answers, /v1/gallery and /metrics name, so a client can tell which model produced
        an answer (and an operator which one a dashboard is about) without seeing server paths.
        """

        def facts(tower: Embedder | TextEmbedder) -> dict[str, str]:
            return {
                "fingerprint": short_fingerprint(tower.fingerprint),
                "name": PurePath(tower.model_path).name,
            }

        towers = {"image_query": facts(self.embedder), "gallery": facts(self.gallery_embedder)}
        if self.text_embedder is not None:
            towers["text_query"] = facts(self.text_embedder)
        return towers

    def answer_model(self, *, text: bool = False) -> dict[str, str]:
        """The ``model`` of a query answer: the tower that embedded the query (and its pair)."""
        tower = self.text_embedder if text and self.text_embedder is not None else self.embedder
        model = {
            "fingerprint": short_fingerprint(tower.fingerprint),
            "name": PurePath(tower.model_path).name,
        }
        pair = self.gallery_embedder.pair
        if pair is not None:
            model["pair"] = short_fingerprint(pair.fingerprint)
        return model

    @classmethod
    def open(cls, config: ServiceConfig) -> ServiceState:
        """Load the model and open the gallery; refuse a model the gallery was not built with.

        Raises:
            GalleryError, ModelMismatchError, ModelError, DeviceUnavailableError: as the CLI
                reports them.
        """
        served = open_served_gallery(
            config.gallery_dir,
            config.model_path,
            device=config.device,
            batch_size=max(config.max_batch, 1),
            adds=True,
        )
        assert served.images is not None  # loaded with the gallery tower (adds=True)
        return cls(
            config,
            served.images,
            served.gallery,
            gallery_embedder=served.adds,
            text_embedder=served.text,
        )

    # ---------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        """Start the batcher and the refresher inside the server's event loop."""
        self._write_lock = asyncio.Lock()
        self.batcher.start()
        self._refresher = asyncio.get_running_loop().create_task(
            self._refresh_loop(), name="siamese-refresh"
        )
        self.ready = True

    async def stop(self) -> None:
        """Stop taking work, finish the batcher, release threads, close the gallery and model."""
        self.ready = False
        if self._refresher is not None:
            await cancel_and_wait(self._refresher)
        await self.batcher.stop()
        self.decode_pool.shutdown(wait=True, cancel_futures=True)
        self.live.close()
        self.embedder.close()
        if self.gallery_embedder is not self.embedder:
            self.gallery_embedder.close()

    def is_ready(self) -> bool:
        """Model loaded, gallery open, batcher running."""
        return self.ready and self.batcher.running

    # ------------------------------------------------------------------ reading
    async def query(
        self, uploads: list[Upload], k: int, where: Where | None = None
    ) -> tuple[int, list[QueryResult]]:
        """Embed uploads (batched with other requests) and search; return (generation, results).

        A filtered query (``where``) is embedded and searched on its own: the batch's one search
        serves unfiltered requests only.
        """
        if not self.is_ready():
            raise ApiError(503, "not_ready", "the service is starting or stopping")
        with self.batcher.incoming(), self.metrics.stage("decode"):
            rows = await preprocess_all(uploads, self.embedder.spec, self.config, self.decode_pool)
        if where is None:
            return await self.batcher.submit(rows, k)
        with self.metrics.stage("embed"):
            embeddings = await asyncio.to_thread(self.embedder.embed_batch, rows)
        return await self._search(embeddings, k, where)

    async def _search(
        self, embeddings: Any, k: int, where: Where | None
    ) -> tuple[int, list[QueryResult]]:
        """Search the live generation on a worker thread; (generation, results)."""
        with self.live.read() as gallery, self.metrics.stage("search"):
            results = await asyncio.to_thread(gallery.search, embeddings, k, threads=1, where=where)
            return gallery.generation, results

    async def query_texts(
        self, texts: list[str], k: int, where: Where | None = None
    ) -> tuple[int, list[QueryResult]]:
        """Embed text queries with the pair's text tower and search; (generation, results).

        Raises:
            ApiError: 422 when the gallery's pair has no text tower, or a text is empty/too long.
        """
        if not self.is_ready():
            raise ApiError(503, "not_ready", "the service is starting or stopping")
        embedder = self.text_embedder
        if embedder is None:
            raise ApiError(
                422,
                "text_not_supported",
                "this gallery's model embeds images only; send a file (text queries need a "
                "gallery built with a text → image pair)",
            )
        try:
            with self.metrics.stage("embed"):
                embeddings = await asyncio.to_thread(embedder.embed_texts, texts)
        except DataError as exc:
            raise ApiError(422, "invalid_text", str(exc)) from None
        return await self._search(embeddings, k, where)

    def _embed_and_search(
        self, rows: Rows, requests: Sequence[tuple[int, int]]
    ) -> list[tuple[int, list[QueryResult]]]:
        """The batch function, on the batcher's thread: one inference call and one search.

        The search runs at the largest k asked for; its answers are split per request.
        """
        self.metrics.batch_size.observe(len(rows))
        with self.metrics.stage("embed"):
            embeddings = self.embedder.embed_batch(rows)
        with self.live.read() as gallery, self.metrics.stage("search"):
            # One FAISS thread: a batch of queries shares each pass over the gallery (8 queries over
            # 100k vectors cost little more than one), and OpenMP threads fighting the server's
            # other threads cost far more.
            results = gallery.search(embeddings, max(k for _, k in requests), threads=1)
            generation = gallery.generation
        answers, offset = [], 0
        for count, k in requests:
            # Trimming the largest k's answer gives the same nearest items as searching at k, and
            # the same identities (more, where k·10 neighbours held fewer than k distinct ones).
            answers.append(
                (
                    generation,
                    [
                        replace(r, matches=r.matches[:k], identities=r.identities[:k])
                        for r in results[offset : offset + count]
                    ],
                )
            )
            offset += count
        return answers

    def info(self, identities_limit: int | None = None) -> dict[str, Any]:
        """What the gallery holds, the model, and how the service batches.

        Identities are listed up to the first ``identities_limit`` by name.
        """
        with self.live.read() as gallery:
            facts = gallery.info()  # what the generation holds, identity counts, writer state
            threshold = gallery.threshold
        counts = list(facts["identity_counts"].items())
        config = self.config
        return {
            "gallery": str(self.gallery_dir),
            "generation": facts["generation"],
            "count": facts["count"],
            "identity_count": len(counts),
            "identities": [
                {"identity": name, "count": count} for name, count in counts[:identities_limit]
            ],
            "identities_truncated": identities_limit is not None and len(counts) > identities_limit,
            "index_type": facts["index_type"],
            "metric": facts["metric"],
            "dimension": facts["dimension"],
            "threshold": threshold,
            "threshold_calibration": facts.get("threshold"),
            "model": {
                "path": str(self.embedder.model_path),
                **self.towers()["image_query"],
                "device": self.embedder.device,
                "text_query": self.text_embedder is not None,
                "towers": self.towers(),
                **(
                    {"pair": short_fingerprint(self.gallery_embedder.pair.fingerprint)}
                    if self.gallery_embedder.pair is not None
                    else {}
                ),
            },
            "writer_active": facts["writer_active"],
            "batching": {
                "max_batch": config.max_batch,
                "max_wait_ms": config.max_wait_ms,
                **self.batcher.stats.to_dict(),
            },
            "limits": {
                "max_upload_bytes": config.max_upload_bytes,
                "max_pixels": config.max_pixels,
                "max_files": config.max_files,
                "max_k": config.max_k,
                "max_connections": config.max_connections,
                "max_client_connections": config.max_client_connections,
                "body_timeout_s": config.body_timeout_s,
                "write_requires_key": config.api_key is not None,
                "read_requires_key": config.protect == "reads",
            },
        }

    # ------------------------------------------------------------------ writing
    async def add(self, uploads: list[Upload], identity: str) -> dict[str, Any]:
        """Check, store and add uploads as ``identity``; publish and swap in the new generation."""
        await preprocess_all(
            uploads, self.gallery_embedder.spec, self.config, self.decode_pool
        )  # refuse bad files before storing any
        async with self._lock():
            duplicates = self._duplicates(uploads, identity)
            paths = [
                await asyncio.to_thread(
                    Gallery.store_upload,
                    self.gallery_dir,
                    identity,
                    upload.data,
                    image_format(upload),
                )
                for upload in uploads
            ]
            report = await asyncio.to_thread(
                Gallery.add, self.gallery_dir, paths, self.gallery_embedder, identity=identity
            )
            gallery = await self._reopen()
            items = gallery.items_at(paths)
        return {
            **self._summary(report),
            "items": [{"id": i.id, "identity": i.identity, "path": i.path} for i in items],
            "duplicates": duplicates,
        }

    def _duplicates(self, uploads: list[Upload], identity: str) -> list[dict[str, Any]]:
        """Uploads whose exact content the gallery already holds under another identity.

        The same picture filed under two identities is almost always a mistake; the add goes
        ahead (the caller asked for it) and the answer says so, for the page to warn.
        """
        hashes = {sha256_bytes(upload.data): upload.name for upload in uploads}
        with self.live.read() as gallery:
            found = gallery.items_with_content(list(hashes))
        return [
            {"name": hashes[item.sha256], "id": item.id, "identity": item.identity}
            for item in found
            if item.identity != identity
        ]

    async def remove(
        self, *, identity: str | None = None, item_id: int | None = None
    ) -> dict[str, Any]:
        """Remove one item or every item of an identity; 404 if there is none."""
        async with self._lock():
            current = self.live.current
            if item_id is not None:
                item = current.item(item_id)
                if item is None:
                    raise ApiError(
                        404,
                        "item_not_found",
                        f"no item {item_id} in the gallery (generation {current.generation})",
                    )
                uploaded = Gallery.stored_uploads(self.gallery_dir, paths=[item.path])
                report = await asyncio.to_thread(
                    Gallery.remove, self.gallery_dir, paths=[item.path]
                )
            else:
                assert identity is not None
                if not current.count(identity):
                    raise ApiError(
                        404, "identity_not_found", f"no identity {identity!r} in the gallery"
                    )
                uploaded = Gallery.stored_uploads(self.gallery_dir, identity=identity)
                report = await asyncio.to_thread(
                    Gallery.remove, self.gallery_dir, identities=[identity]
                )
            gallery = await self._reopen()
            deleted = await asyncio.to_thread(gallery.forget_uploads, uploaded)
        return {**self._summary(report), "deleted_uploads": deleted}

    def _lock(self) -> asyncio.Lock:
        if self._write_lock is None:
            raise ApiError(503, "not_ready", "the service is starting or stopping")
        return self._write_lock

    @staticmethod
    def _summary(report: Any) -> dict[str, Any]:
        return {
            "generation": report.generation,
            "count": report.count,
            "identities": report.identities,
            "added": report.added,
            "removed": report.removed,
            "failures": [{"name": p, "reason": r} for p, r in report.failures],
        }

    async def _reopen(self) -> GalleryReader:
        """Open the newest published generation and make it current."""
        gallery = await asyncio.to_thread(
            Gallery.open,
            self.gallery_dir,
            model_fingerprint=self.gallery_embedder.fingerprint,
            model_name=str(self.gallery_embedder.model_path),
        )
        self.live.swap(gallery)
        self._watch.mark_seen()
        return gallery

    # --------------------------------------------------- other processes' writes
    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.refresh_s)
            if not self._watch.touched() or self._write_lock is None or self._write_lock.locked():
                continue
            async with self._write_lock:
                try:
                    if await asyncio.to_thread(self._watch.differs, self.live.current):
                        gallery = await self._reopen()  # a new generation, or a new threshold
                        log.info(
                            "gallery generation %d (changed by another process) is now served",
                            gallery.generation,
                        )
                except GalleryError as exc:  # keep serving the generation we have
                    log.warning("could not open the gallery's new generation: %s", exc)
