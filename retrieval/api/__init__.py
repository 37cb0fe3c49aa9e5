"""The HTTP service (FastAPI): nearest-match lookups, upserts and deletes over one Retriever."""

from .app import Settings, create_app

__all__ = ["Settings", "create_app"]
