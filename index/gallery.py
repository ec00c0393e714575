"""The public gallery API: one class to build, change, check, watch and search a gallery.

Everything outside index/ (the CLI, the HTTP service, the benchmarks, the evaluation) goes
through :class:`Gallery`; the manifest, the item store and the uploads folder are this
package's business. Writing lives in the modules below (:mod:`~siamese.index.updates.operations`,
:mod:`~siamese.index.verify`, :mod:`~siamese.index.search.threshold`,
:mod:`~siamese.index.updates.uploads`);
``Gallery`` offers each of their operations under one name (the same functions, behind one
switch on the location: a ``milvus…:`` location goes to the Milvus backend,
:mod:`siamese.index.milvus`, with the same arguments and results), and searching is
:class:`~siamese.index.published.GalleryReader`'s (or the Milvus reader's). Imports go one way:
this module imports those, none of them imports this one.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from siamese.index import milvus as milvus_backend
from siamese.index.audit import audit
from siamese.index.location import is_milvus
from siamese.index.published import GalleryReader, gallery_model_path
from siamese.index.search.threshold import set_threshold
from siamese.index.store.manifest import Manifest
from siamese.index.updates.operations import add_to_gallery, build_gallery, remove_from_gallery
from siamese.index.updates.uploads import store_upload, stored_uploads
from siamese.index.verify import verify_gallery
from siamese.index.watch import GenerationWatch

_F = TypeVar("_F", bound=Callable[..., Any])


def _by_location(folder: _F, milvus: str, position: int = 0, name: str = "gallery_dir") -> _F:
    """``folder``, or for a ``milvus…:`` location the Milvus backend's ``milvus`` function.

    The location is argument ``position`` (or keyword ``name``); both backends take the same
    arguments (pymilvus itself is imported only when a Milvus gallery is used).
    """

    @functools.wraps(folder)
    def located(*args: Any, **kwargs: Any) -> Any:
        where = args[position] if len(args) > position else kwargs.get(name)
        if is_milvus(where):
            return functools.reduce(getattr, milvus.split("."), milvus_backend)(*args, **kwargs)
        return folder(*args, **kwargs)

    return located  # type: ignore[return-value]


class Gallery:
    """A gallery on disk, by its folder: build, change and check it; :meth:`open` reads it.

    Writing (each takes the gallery's writer lock, so concurrent writers are refused, never torn):
    :meth:`build`, :meth:`add`, :meth:`remove`, :meth:`set_threshold`, :meth:`store_upload`.
    Checking and reading without searching: :meth:`verify`, :meth:`facts`, :meth:`describe`,
    :meth:`query_model`, :meth:`stored_uploads`, :meth:`watch`. :meth:`open` returns a separate
    :class:`GalleryReader` of one published generation (``search``, ``nearest``, ``item``,
    ``items_of``, ``info``, ``forget_uploads``…), so a handle and a reader are never confused.
    """

    #: Open the published generation for searching: a :class:`GalleryReader` (see its ``open``).
    open = staticmethod(_by_location(GalleryReader.open, "MilvusGalleryReader.open"))

    # ------------------------------------------------------------------ writing
    #: Create ``gallery_dir`` from a folder of images, or bring it up to date (see build_gallery).
    build = staticmethod(_by_location(build_gallery, "build_gallery", 2))
    #: Embed files or folders and add them (see add_to_gallery).
    add = staticmethod(_by_location(add_to_gallery, "add_to_gallery"))
    #: Remove items by identity or path (see remove_from_gallery).
    remove = staticmethod(_by_location(remove_from_gallery, "remove_from_gallery"))
    #: Store (or clear) the "unknown" distance threshold; returns the stored record or None.
    set_threshold = staticmethod(_by_location(set_threshold, "set_threshold"))
    #: Keep an image given as bytes inside the gallery (``uploads/``); returns the path to add.
    store_upload = staticmethod(_by_location(store_upload, "store_upload"))

    # ----------------------------------------------------------------- checking
    #: Check every invariant of a gallery from scratch; problems are reported, not raised.
    verify = staticmethod(_by_location(verify_gallery, "verify_gallery"))
    #: The model to embed queries with: the one given, or the one the gallery recorded.
    query_model = staticmethod(_by_location(gallery_model_path, "query_model"))
    #: Images stored by :meth:`store_upload` that are ``paths`` or lie in ``identity``'s folder.
    stored_uploads = staticmethod(_by_location(stored_uploads, "stored_uploads"))
    #: Duplicates, likely mislabels, overlapping and loose identities of a folder gallery (an
    #: :class:`~siamese.index.audit.AuditReport`; see siamese.index.audit).
    audit = staticmethod(_by_location(audit, "audit", name="gallery"))

    @staticmethod
    def facts(gallery_dir: str | os.PathLike[str]) -> dict[str, Any]:
        """What the published manifest records (generation, count, model, index type, threshold…).

        Cheap: the index and items are not opened, so nothing beyond the manifest is checked.

        Raises:
            GalleryError: not a gallery, or its manifest is damaged.
        """
        if is_milvus(gallery_dir):
            return milvus_backend.facts(gallery_dir)
        return Manifest.read(Path(gallery_dir)).to_dict()

    @classmethod
    def describe(cls, gallery_dir: str | os.PathLike[str]) -> dict[str, Any]:
        """Open the gallery (checking its files) and return :meth:`info`."""
        with cls.open(gallery_dir) as gallery:
            return gallery.info()

    @staticmethod
    def watch(gallery_dir: str | os.PathLike[str]) -> GenerationWatch:
        """A watch that tells when another process publishes a new generation or threshold."""
        if is_milvus(gallery_dir):
            return milvus_backend.MilvusGenerationWatch(gallery_dir)  # type: ignore[return-value]
        return GenerationWatch(gallery_dir)
