"""Errors that reach the user as one line: what went wrong and where."""

from __future__ import annotations

from pathlib import Path


class TwinError(Exception):
    """An error a user can act on; the CLI prints it as one line, HTTP as a 4xx detail."""


class InputError(TwinError):
    """Bad input in a file, located by line and, where it applies, column."""

    def __init__(self, path: str | Path, line: int | None, message: str, column: int | None = None):
        self.path, self.line, self.column, self.message = str(path), line, column, message
        where = self.path + (f":{line}" if line else "") + (f":{column}" if line and column else "")
        super().__init__(f"{where}: {message}")

    def __reduce__(self) -> tuple:  # raised in a Ray worker, shown by the driver: it must pickle
        return type(self), (self.path, self.line, self.message, self.column)


class ModelError(TwinError):
    """A model folder that cannot be used."""
