"""A person's verdicts on pairs ("duplicate" / "not duplicate"), kept durably in the index folder.

One SQLite file, ``feedback.sqlite``, beside the index's own files: a rebuild (``twin build
--force``) replaces the index and keeps the verdicts, which name items by id and carry both texts.
Each pair has one row, its latest verdict: a second click on the same pair replaces the first.
A verdict is acknowledged after its commit (WAL, ``synchronous=FULL``), so a crash never loses an
acknowledged one; several processes may write (SQLite serialises them, waiting up to 10 s).

A pair is either a query and a stored item (``a_id`` empty, ``a_text`` the query) or two stored
items (``a_id`` and ``b_id``; the pair is the same either way round). ``score`` is the cosine the
index's encoder gives the pair, and ``encoder`` that encoder's fingerprint: a tau learned from
verdicts uses only those scored by the encoder the index has now.
"""

from __future__ import annotations

import errno
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from index.errors import DiskFullError

from ..errors import TwinError
from ..text import normalize

FEEDBACK_FILE = "feedback.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS verdicts (
    pair      TEXT PRIMARY KEY,
    query     TEXT,
    a_id      TEXT,
    a_text    TEXT NOT NULL,
    b_id      TEXT NOT NULL,
    b_text    TEXT NOT NULL,
    score     REAL NOT NULL,
    duplicate INTEGER NOT NULL,
    encoder   TEXT NOT NULL,
    at        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS verdicts_at ON verdicts (at);
CREATE INDEX IF NOT EXISTS verdicts_query ON verdicts (query);
CREATE INDEX IF NOT EXISTS verdicts_a ON verdicts (a_id);
CREATE INDEX IF NOT EXISTS verdicts_b ON verdicts (b_id);
"""


@dataclass(frozen=True)
class Verdict:
    """A person's call on one pair, the cosine the index's encoder gave it, and when."""

    a_id: str | None
    a_text: str
    b_id: str
    b_text: str
    score: float
    duplicate: bool
    encoder: str
    at: str = ""

    @property
    def pair(self) -> str:
        """The key of the pair: the two ids in order, or the normalised query and the item's id."""
        if self.a_id is not None:
            return "ids\t" + "\t".join(sorted((self.a_id, self.b_id)))
        return f"query\t{self.b_id}\t{normalize(self.a_text)}"

    def to_dict(self) -> dict:
        """The JSON shape of ``/feedback``."""
        return asdict(self)


class FeedbackStore:
    """The verdicts of one index folder. A read-only store reads what is there (nothing when the
    file does not exist yet) and writes nothing."""

    def __init__(self, folder: str | Path, read_only: bool = False) -> None:
        self.path = Path(folder) / FEEDBACK_FILE
        self.read_only = read_only
        self._lock = threading.Lock()  # one connection, shared by the service's threads
        self._db: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection | None:
        if self._db is None:
            if self.read_only:
                if not self.path.is_file():
                    return None
                self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False,
                                           timeout=10)
            else:
                self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=10)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")
                self._db.executescript(_SCHEMA)
        return self._db

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._drop_connection()

    def _drop_connection(self) -> None:
        """Close the connection (the next use opens it again: a half-made file is set up anew)."""
        if self._db is not None:
            self._db.close()
            self._db = None

    def record(self, verdict: Verdict) -> Verdict:
        """Store ``verdict`` (replacing an earlier one on the same pair), durably; returns it with its time."""
        if self.read_only:
            raise TwinError(f"{self.path}: opened read-only; verdicts are written by the index's writer")
        verdict = Verdict(**{**verdict.to_dict(), "at": datetime.now(UTC).isoformat(timespec="milliseconds")})
        with self._lock:
            try:
                db = self._connect()
                with db:
                    db.execute("INSERT OR REPLACE INTO verdicts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", _row(verdict))
            except sqlite3.OperationalError as exc:
                if "full" in str(exc).lower():
                    self._drop_connection()
                    raise DiskFullError(errno.ENOSPC, f"disk full while writing {self.path}; the verdict "
                                                      "was not stored (free some space)") from None
                raise
        return verdict

    def find(self, query: str | None = None, item_id: str | None = None, limit: int = 100) -> list[Verdict]:
        """The latest verdicts, newest first: on pairs of the query text ``query``, on pairs holding
        the item ``item_id``, or all."""
        where, args = "", []
        if query is not None:
            where, args = "WHERE query = ?", [normalize(query)]
        elif item_id is not None:
            where, args = "WHERE a_id = ? OR b_id = ?", [item_id, item_id]
        return list(self._select(f"{where} ORDER BY at DESC LIMIT ?", [*args, int(limit)]))

    def all(self) -> Iterator[Verdict]:
        """Every verdict, oldest first."""
        return self._select("ORDER BY at", [])

    def counts(self) -> dict[str, int]:
        """How many pairs were called duplicates and how many not."""
        with self._lock:
            db = self._connect()
            rows = db.execute("SELECT duplicate, COUNT(*) FROM verdicts GROUP BY duplicate").fetchall() if db else []
        found = dict(rows)
        return {"duplicate": int(found.get(1, 0)), "not_duplicate": int(found.get(0, 0))}

    def _select(self, tail: str, args: list) -> Iterator[Verdict]:
        with self._lock:
            db = self._connect()
            rows = db.execute("SELECT a_id, a_text, b_id, b_text, score, duplicate, encoder, at FROM verdicts "
                              + tail, args).fetchall() if db else []
        for a_id, a_text, b_id, b_text, score, duplicate, encoder, at in rows:
            yield Verdict(a_id, a_text, b_id, b_text, float(score), bool(duplicate), encoder, at)

    def __enter__(self) -> FeedbackStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()



def _row(verdict: Verdict) -> tuple:
    """The table row of a verdict (``query``: the normalised query text of a query's pair)."""
    query = None if verdict.a_id is not None else normalize(verdict.a_text)
    return (verdict.pair, query, verdict.a_id, verdict.a_text, verdict.b_id, verdict.b_text, float(verdict.score),
            int(verdict.duplicate), verdict.encoder, verdict.at)
