"""Galleries stored in Milvus: a backend of the one gallery API, chosen by location.

``siamese.index.Gallery`` sends a ``milvus://HOST:PORT/COLLECTION`` or
``milvus-lite:PATH.db[/COLLECTION]`` location here (see :mod:`siamese.index.location`); the
functions below take the same arguments and return the same reports as the folder ones. pymilvus
is imported only when a Milvus gallery is used (the ``milvus`` extra).

Modules: :mod:`.location` parsing lives one level up; :mod:`.connection` (one client per URI,
errors as one line), :mod:`.collection` (schema, record, index types), :mod:`.store` (rows and
search), :mod:`.record` (the model binding, each update's record), :mod:`.updates` (build,
add, remove: upserts keyed by item id), :mod:`.quality`
(recall), :mod:`.reader`, :mod:`.verify`, :mod:`.handle` (threshold, facts, watch).
"""

from siamese.index.milvus.handle import (
    MilvusGenerationWatch,
    audit,
    describe,
    facts,
    query_model,
    set_threshold,
    store_upload,
    stored_uploads,
)
from siamese.index.milvus.reader import MilvusGalleryReader
from siamese.index.milvus.updates import add_to_gallery, build_gallery, remove_from_gallery
from siamese.index.milvus.verify import verify_gallery

__all__ = [
    "MilvusGalleryReader",
    "MilvusGenerationWatch",
    "add_to_gallery",
    "audit",
    "build_gallery",
    "describe",
    "facts",
    "query_model",
    "remove_from_gallery",
    "set_threshold",
    "store_upload",
    "stored_uploads",
    "verify_gallery",
]
