"""Index stage: FAISS galleries with identity metadata, updated incrementally and crash-safely. Never imports torch."""

from siamese.index.gallery import Gallery
from siamese.index.manifest import Manifest
from siamese.index.reports import UpdateReport
from siamese.index.results import IdentityMatch, Item, Match, QueryResult
from siamese.index.verify import VerifyReport
from siamese.index.writer import GalleryWriter

__all__ = [
    "Gallery",
    "GalleryWriter",
    "IdentityMatch",
    "Item",
    "Manifest",
    "Match",
    "QueryResult",
    "UpdateReport",
    "VerifyReport",
]
