"""Index stage: FAISS galleries with identity metadata. Never imports torch."""

from siamese.index.gallery import BuildReport, Gallery
from siamese.index.manifest import Manifest
from siamese.index.results import IdentityMatch, Item, Match, QueryResult

__all__ = ["BuildReport", "Gallery", "IdentityMatch", "Item", "Manifest", "Match", "QueryResult"]
