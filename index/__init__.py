"""Index stage: FAISS galleries with identity metadata, updated incrementally and crash-safely.

The public API, used alike by the CLI, the HTTP service, the evaluation and the benchmarks:

- :class:`Gallery`: ``Gallery.build(image_dir, embedder, gallery_dir, ...)``,
  ``Gallery.add(gallery_dir, paths, embedder, identity=None)``,
  ``Gallery.remove(gallery_dir, identities=..., paths=...)`` (each returns an
  :class:`UpdateReport`), ``Gallery.verify(gallery_dir)`` (a :class:`VerifyReport`),
  ``Gallery.set_threshold(gallery_dir, distance)``, ``Gallery.facts(gallery_dir)`` and
  ``Gallery.describe(gallery_dir)``, ``Gallery.audit(gallery_dir)`` (an :class:`AuditReport`:
  duplicates, likely mislabels, overlapping and loose identities),
  ``Gallery.query_model(gallery_dir, model)``,
  ``Gallery.watch(gallery_dir)`` (a :class:`GenerationWatch`), ``Gallery.store_upload(...)`` /
  ``Gallery.stored_uploads(...)``; and ``Gallery.open(gallery_dir, ...)`` for searching one
  published generation: a :class:`GalleryReader` (``search``, ``nearest``, ``item``,
  ``items_of``, ``info``…).
- :class:`GalleryWriter` with :class:`RecallPolicy`: embeddings computed elsewhere go in here.
- :class:`Embeds`: what an update needs from an embedder (``siamese.engine.Embedder`` fits it;
  this package never imports the engine).
- Results (:class:`QueryResult`, :class:`Match`, :class:`IdentityMatch`, :class:`Item`) and
  helpers for sizing indexes and naming things (:func:`bytes_per_vector`, :func:`ivf_lists`,
  :func:`short_fingerprint`, :func:`unusable_characters`).

Never imports torch.
"""

from siamese.index.audit import AuditReport, Finding
from siamese.index.gallery import Gallery
from siamese.index.published import GalleryReader, short_fingerprint
from siamese.index.search.index_choice import bytes_per_vector, ivf_lists
from siamese.index.search.results import IdentityMatch, Item, Match, QueryResult
from siamese.index.updates.embeds import Embeds, VectorBatch
from siamese.index.updates.reports import UpdateReport
from siamese.index.updates.uploads import unusable_characters
from siamese.index.updates.writer import GalleryWriter, RecallPolicy
from siamese.index.verify import VerifyReport
from siamese.index.watch import GenerationWatch

__all__ = [
    "AuditReport",
    "Embeds",
    "Finding",
    "Gallery",
    "GalleryReader",
    "GalleryWriter",
    "GenerationWatch",
    "IdentityMatch",
    "Item",
    "Match",
    "QueryResult",
    "RecallPolicy",
    "UpdateReport",
    "VectorBatch",
    "VerifyReport",
    "bytes_per_vector",
    "ivf_lists",
    "short_fingerprint",
    "unusable_characters",
]
