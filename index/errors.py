"""Errors raised by the vector store. Each carries a message a user can act on."""


class StoreError(Exception):
    """Base class for every error the store raises."""


class BadVectorError(StoreError, ValueError):
    """A vector has the wrong dimension, is not finite, or is all zeros."""


class EncoderMismatchError(StoreError):
    """The index was built with another encoder than the one it is opened with."""


class IndexFolderError(StoreError):
    """The index folder is missing, damaged, or would be overwritten."""
