"""The public gallery API: one class to build, change, check, watch and search a gallery.

Everything outside index/ (the CLI, the HTTP service, the benchmarks, the evaluation) goes
through :class:`Gallery`; the manifest, the item store and the uploads folder are this
package's business. Writing lives in the modules below (:mod:`~siamese.index.updates.operations`,
:mod:`~siamese.index.verify`, :mod:`~siamese.index.search.threshold`,
:mod:`~siamese.index.updates.uploads`);
``Gallery`` offers each of their operations under one name (the same functions, not wrappers),
and searching is inherited from :class:`~siamese.index.published.GalleryReader`. Imports go
one way: this module imports those, none of them imports this one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from siamese.index.published import GalleryReader, gallery_model_path
from siamese.index.search.threshold import set_threshold
from siamese.index.store.manifest import Manifest
from siamese.index.updates.operations import add_to_gallery, build_gallery, remove_from_gallery
from siamese.index.updates.uploads import store_upload, stored_uploads
from siamese.index.verify import verify_gallery
from siamese.index.watch import GenerationWatch


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
    open = staticmethod(GalleryReader.open)

    # ------------------------------------------------------------------ writing
    #: Create ``gallery_dir`` from a folder of images, or bring it up to date (see build_gallery).
    build = staticmethod(build_gallery)
    #: Embed files or folders and add them (see add_to_gallery).
    add = staticmethod(add_to_gallery)
    #: Remove items by identity or path (see remove_from_gallery).
    remove = staticmethod(remove_from_gallery)
    #: Store (or clear) the "unknown" distance threshold; returns the stored record or None.
    set_threshold = staticmethod(set_threshold)
    #: Keep an image given as bytes inside the gallery (``uploads/``); returns the path to add.
    store_upload = staticmethod(store_upload)

    # ----------------------------------------------------------------- checking
    #: Check every invariant of a gallery from scratch; problems are reported, not raised.
    verify = staticmethod(verify_gallery)
    #: The model to embed queries with: the one given, or the one the gallery recorded.
    query_model = staticmethod(gallery_model_path)
    #: Images stored by :meth:`store_upload` that are ``paths`` or lie in ``identity``'s folder.
    stored_uploads = staticmethod(stored_uploads)

    @staticmethod
    def facts(gallery_dir: str | os.PathLike[str]) -> dict[str, Any]:
        """What the published manifest records (generation, count, model, index type, threshold…).

        Cheap: the index and items are not opened, so nothing beyond the manifest is checked.

        Raises:
            GalleryError: not a gallery, or its manifest is damaged.
        """
        return Manifest.read(Path(gallery_dir)).to_dict()

    @classmethod
    def describe(cls, gallery_dir: str | os.PathLike[str]) -> dict[str, Any]:
        """Open the gallery (checking its files) and return :meth:`info`."""
        with GalleryReader.open(gallery_dir) as gallery:
            return gallery.info()

    @staticmethod
    def watch(gallery_dir: str | os.PathLike[str]) -> GenerationWatch:
        """A watch that tells when another process publishes a new generation or threshold."""
        return GenerationWatch(gallery_dir)
