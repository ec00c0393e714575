"""Service stage: the HTTP search service and its web page (FastAPI + uvicorn). Never imports torch."""

from siamese.service.app import create_app
from siamese.service.config import ServiceConfig
from siamese.service.state import ServiceState

__all__ = ["ServiceConfig", "ServiceState", "create_app"]
