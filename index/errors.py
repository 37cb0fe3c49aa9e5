"""Errors raised by the vector store. Each carries a message a user can act on."""


class StoreError(Exception):
    """Base class for every error the store raises."""


class BadVectorError(StoreError, ValueError):
    """A vector has the wrong dimension, is not finite, or is all zeros."""


class EncoderMismatchError(StoreError):
    """The index was built with another encoder than the one it is opened with."""


class IndexFolderError(StoreError):
    """The index folder is missing, damaged, or would be overwritten."""


class IndexBusyError(StoreError):
    """Another process holds the index folder's writer lock."""

    def __init__(self, folder: object, holder: dict) -> None:
        self.folder, self.holder = folder, holder
        who = f"pid {holder.get('pid', '?')}"
        if holder.get("command"):
            who += f" ({holder['command']}"  + (f", since {holder['since']}" if holder.get("since") else "") + ")"
        message = f"{folder}: another process is writing this index: {who}; one writer at a time"
        if holder.get("url"):
            message += (f". It is served at {holder['url']}: send writes there "
                        "(POST /items, DELETE /items/ID), or stop the server first")
        else:
            message += " (wait for it to finish, or pass --wait SECONDS)"
        super().__init__(message)


class DiskFullError(StoreError, OSError):
    """The disk filled up during a write; the write was not kept and the index is as before."""
