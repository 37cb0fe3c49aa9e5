"""The `twin` command line: a thin layer over Retriever. Results go to stdout, progress and
summaries to stderr; every error is one line and a non-zero exit.

One module a family of commands: ``index_commands`` (build, add, query, dedup, delete, info),
``groups_command`` (groups), ``model_commands`` (train, calibrate, eval, eval-retrieval),
``image_commands`` (train --encoder cnn, eval-oneshot), ``serve``."""

from __future__ import annotations

from . import groups_command, image_commands, index_commands, model_commands, serve  # noqa: F401 - registers
from .group import cli


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="twin")


__all__ = ["cli", "main"]
