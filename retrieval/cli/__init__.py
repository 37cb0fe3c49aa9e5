"""The `twin` command line: a thin layer over Retriever. Results go to stdout, progress and
summaries to stderr; every error is one line and a non-zero exit.

One module a family of commands: ``index_commands`` (build, add, query, dedup, delete, info),
``groups_command`` (groups), ``model_commands`` (train, calibrate, eval, eval-retrieval),
``image_commands`` (train --encoder cnn, eval-oneshot), ``review_commands`` (feedback export,
calibrate --index), ``serve``."""

from __future__ import annotations

from . import (  # noqa: F401 - registers the commands
    groups_command,
    image_commands,
    index_commands,
    model_commands,
    review_commands,
    serve,
)
from .group import cli


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="twin")


__all__ = ["cli", "main"]
