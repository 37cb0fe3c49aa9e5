"""twin's retrieval side: encoders, corpus readers, the Retriever, the CLI and the HTTP service."""

from .errors import InputError, ModelError, TwinError
from .retriever import DEFAULT_TAU, Item, Match, QueryResult, Retriever

__all__ = ["DEFAULT_TAU", "InputError", "Item", "Match", "ModelError", "QueryResult", "Retriever", "TwinError"]
