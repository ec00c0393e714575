"""Data of a pseudo-siamese pair: a query side and a gallery side labelled by shared identities.

The gallery side is an ImageFolder. The query side is another ImageFolder whose identity folders
have the same names (``--query-data``), or captions (``--captions``, siamese/data/captions.py)
naming
the gallery's identities. An identity may be on one side only: it cannot teach the towers to meet,
so it is left out of training, and a gallery-only identity joins validation as a distractor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from siamese.contracts.spec import InputSpec
from siamese.core.errors import DataError
from siamese.data.captions import read_captions
from siamese.training.data import ImageDataset, load_image_folder, split_identities


@dataclass
class TextDataset:
    """Captions with integer labels indexing ``identities`` (the text side's ImageDataset)."""

    texts: list[str]
    labels: NDArray[np.int64]
    identities: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, identities: list[str]) -> TextDataset:
        """The captions of the given identities, relabelled 0..len(identities)-1 in that order."""
        wanted = {name: new for new, name in enumerate(identities)}
        new_labels = [wanted.get(self.identities[label], -1) for label in self.labels]
        keep = [i for i, label in enumerate(new_labels) if label >= 0]
        return TextDataset(
            [self.texts[i] for i in keep],
            np.array([new_labels[i] for i in keep], dtype=np.int64),
            list(identities),
        )


QuerySide = ImageDataset | TextDataset


@dataclass
class PairData:
    """Both sides, split by identity: training pairs and held-out validation."""

    train_query: QuerySide
    train_gallery: ImageDataset
    val_query: QuerySide | None
    val_gallery: ImageDataset | None
    train_identities: list[str]
    val_identities: list[str]
    gallery_only: list[str]
    skipped: list[tuple[str, str]]
    images: int


def load_captions(path: str) -> TextDataset:
    """A captions file as a TextDataset (identities sorted by name)."""
    captions = read_captions(path)
    identities = sorted({c.identity for c in captions})
    index = {name: i for i, name in enumerate(identities)}
    return TextDataset(
        [c.text for c in captions],
        np.array([index[c.identity] for c in captions], dtype=np.int64),
        identities,
    )


def load_pair_data(
    gallery_dir: str,
    gallery_spec: InputSpec,
    *,
    query_dir: str | None,
    query_spec: InputSpec | None,
    captions: str | None,
    val_fraction: float,
    seed: int,
    progress: bool = False,
) -> PairData:
    """Load both sides and split the identities they share into training and validation.

    Raises:
        DataError: fewer than two identities on both sides, or a training identity with one item.
    """
    gallery = load_image_folder(gallery_dir, gallery_spec, progress=progress)
    query: QuerySide
    if captions is not None:
        query = load_captions(captions)
        source = captions
    else:
        assert query_dir is not None and query_spec is not None
        query = load_image_folder(query_dir, query_spec, progress=progress)
        source = query_dir
    shared = sorted(set(gallery.identities) & set(query.identities))
    if len(shared) < 2:
        raise DataError(
            f"{source}: names {len(shared)} of the identities in {gallery_dir}; a pair needs at "
            "least two identities on both sides (same folder names, or captions naming them)"
        )
    gallery_only = sorted(set(gallery.identities) - set(shared))
    train_ids, val_ids = split_identities(shared, val_fraction, seed)
    held_out = val_ids + gallery_only if val_ids else []
    skipped = list(gallery.skipped) + list(getattr(query, "skipped", []))
    images = len(gallery) + (len(query) if isinstance(query, ImageDataset) else 0)
    return PairData(
        train_query=query.subset(train_ids),
        train_gallery=gallery.subset(train_ids),
        val_query=query.subset(held_out) if held_out else None,
        val_gallery=gallery.subset(held_out) if held_out else None,
        train_identities=train_ids,
        val_identities=val_ids,
        gallery_only=gallery_only,
        skipped=skipped,
        images=images,
    )


class PairSampler:
    """P training identities per step, K items of each on each side (repeats when fewer).

    Deterministic from ``seed``; the two sides draw their K independently, so a query is never
    tied to one gallery image. With several processes every rank draws the same global batch of
    ``world``·P identities (one shared stream) and keeps its own P: gathered in rank order, the
    ranks' shares are exactly the batch one process would draw with ``world``·P.
    """

    def __init__(
        self,
        query_labels: NDArray[np.int64],
        gallery_labels: NDArray[np.int64],
        p: int,
        k: int,
        seed: int,
        *,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        self.rng = np.random.default_rng(seed)
        self.k, self.rank, self.world = k, rank, world
        self.query_items = _items_per_label(query_labels)
        self.gallery_items = _items_per_label(gallery_labels)
        self.labels = np.array(sorted(set(self.query_items) & set(self.gallery_items)))
        # every rank embeds the same number of items, or the gather could not stack them
        self.p = min(p * world, len(self.labels)) // world
        if self.p == 0:
            raise ValueError(
                f"{len(self.labels)} training identities with items on both sides cannot give "
                f"each of {world} processes one"
            )

    def batch(self) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """Indices into the query side and the gallery side; labels follow from the data."""
        chosen = self.rng.choice(self.labels, size=self.p * self.world, replace=False)
        query = self._draw(self.query_items, chosen)
        gallery = self._draw(self.gallery_items, chosen)
        mine = slice(self.rank * self.p * self.k, (self.rank + 1) * self.p * self.k)
        return query[mine], gallery[mine]

    def _draw(self, items: dict[int, NDArray[np.int64]], chosen: NDArray) -> NDArray[np.int64]:
        picks = [
            self.rng.choice(items[int(label)], size=self.k, replace=len(items[int(label)]) < self.k)
            for label in chosen
        ]
        return np.concatenate(picks).astype(np.int64)


def _items_per_label(labels: NDArray[np.int64]) -> dict[int, NDArray[np.int64]]:
    order = np.argsort(labels, kind="stable")
    values, starts = np.unique(labels[order], return_index=True)
    return {int(v): part for v, part in zip(values, np.split(order, starts[1:]))}
