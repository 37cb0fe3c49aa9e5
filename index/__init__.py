"""twin's vector store: FAISS for search, SQLite for ids, metadata and durability.

It knows nothing of text or models: vectors in, ids and scores out.
"""

from .errors import BadVectorError, EncoderMismatchError, IndexFolderError, StoreError
from .kinds import KIND_NAMES
from .meta import Record
from .sharded import ShardedStore, open_store
from .store import Hit, VectorStore, check_vectors

__all__ = [
    "KIND_NAMES", "BadVectorError", "EncoderMismatchError", "Hit", "IndexFolderError", "Record",
    "ShardedStore", "StoreError", "VectorStore", "check_vectors", "open_store",
]
