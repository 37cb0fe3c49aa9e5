"""The `twin` click group: every expected failure becomes one line on stderr and exit status 1."""

from __future__ import annotations

import os
import sqlite3
import sys

import click

from index import StoreError

from ..errors import TwinError


class TwinGroup(click.Group):
    """Turns every expected failure into one line on stderr and exit status 1; a closed output
    pipe (``twin query ... | head``) ends the command quietly."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            _quiet_stdout()
            raise click.exceptions.Exit(0) from None
        except (TwinError, StoreError, ValueError) as exc:
            raise click.ClickException(str(exc)) from None
        except sqlite3.OperationalError as exc:
            raise click.ClickException(f"the index's SQLite file could not be used: {exc}") from None
        except sqlite3.DatabaseError as exc:
            raise click.ClickException(f"the index is damaged or unreadable ({exc}); rebuild it with "
                                       "`twin build --force` from its corpus") from None
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            raise click.ClickException(f"{where}{exc.strerror or exc}") from None
        except (click.ClickException, click.exceptions.Exit, click.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:  # a bug: still one line, the traceback only on request
            if os.environ.get("TWIN_DEBUG"):
                raise
            raise click.ClickException(
                f"internal error: {type(exc).__name__}: {exc} (set TWIN_DEBUG=1 for a traceback)"
            ) from None


def _quiet_stdout() -> None:
    """Point stdout at /dev/null so that Python's final flush of a closed pipe says nothing."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


@click.group(cls=TwinGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="twin-retrieval")
def cli() -> None:
    """twin: one-shot near-duplicate retrieval with a siamese encoder and FAISS."""
