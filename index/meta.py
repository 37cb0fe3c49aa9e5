"""SQLite side of the store: ids, text, payload, vectors and sequence numbers.

SQLite (WAL mode, ``synchronous=FULL``) is the source of truth. One row an item: ``seq`` (the
int64 id FAISS knows it by), the user's string ``id`` (unique), its text, a JSON payload and the
float32 vector. Every write of an item gives it a new ``seq`` from a counter that never goes back,
so a FAISS entry left from an older version of the item (or a deleted one) matches no row: it is
a tombstone, filtered at search time and dropped at the next rebuild. A FAISS snapshot records the
highest ``seq`` it holds; rows past it are replayed on open.

Thread safety: one connection, every call under one lock. Calls are short (a transaction of one
batch, or a primary-key look-up). A read-only MetaDB (a reader process beside the writer) opens
the file with ``mode=ro`` and never writes.

Failures: a full disk is a ``DiskFullError`` (the transaction is rolled back: nothing of the write
is kept); a file that is not a SQLite database is an ``IndexFolderError`` saying how to rebuild.
"""

from __future__ import annotations

import contextlib
import errno
import json
import shutil
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import DiskFullError, IndexFolderError

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    seq     INTEGER PRIMARY KEY,
    id      TEXT NOT NULL UNIQUE,
    text    TEXT,
    payload TEXT NOT NULL DEFAULT '{}',
    vector  BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO counters VALUES ('next_seq', 1);
"""

#: SQLite's limit on host parameters in one statement is 32766; stay well below it.
CHUNK = 10_000


@dataclass
class Record:
    """One stored item as the store returns it."""

    id: str
    text: str | None
    payload: dict = field(default_factory=dict)
    vector: np.ndarray | None = None
    seq: int = 0


class MetaDB:
    """The SQLite file beside the FAISS index."""

    def __init__(self, path: Path, dim: int, read_only: bool = False) -> None:
        self.path, self.dim, self.read_only = Path(path), dim, read_only
        self._lock = threading.Lock()
        with self._failures("opening"):
            if read_only:
                uri = f"file:{self.path.resolve().as_posix()}?mode=ro"
                self._db = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
            else:
                self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")
                self._db.executescript(SCHEMA)
            self._db.execute("PRAGMA busy_timeout=10000")
            self.refresh_count()

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()

    def refresh_count(self) -> None:
        """Count the live rows again (a reader does after another process wrote)."""
        with self._lock, self._failures("reading"):
            self._count = self._db.execute("SELECT COUNT(*) FROM items").fetchone()[0]

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """Every read inside sees one snapshot of the file (one read transaction): a reader
        loading the index while the writer commits sees each batch entirely or not at all."""
        with self._lock:
            self._db.execute("BEGIN")
            self._db.execute("SELECT value FROM counters WHERE name='next_seq'").fetchone()  # starts it
        try:
            yield
        finally:
            with self._lock:
                self._db.execute("COMMIT")

    @contextlib.contextmanager
    def _failures(self, doing: str) -> Iterator[None]:
        """SQLite errors as errors a user can act on."""
        try:
            yield
        except sqlite3.OperationalError as exc:
            if _disk_full(exc, self.path):
                raise DiskFullError(errno.ENOSPC, f"disk full while {doing} {self.path}; this write was not "
                                    "kept and the index is as it was before it (free some space and retry)") from None
            raise
        except sqlite3.DatabaseError as exc:
            if getattr(exc, "sqlite_errorcode", None) in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
                raise IndexFolderError(f"{self.path}: the index is damaged ({exc}); rebuild it with "
                                       "`twin build --force` from its corpus") from None
            raise

    # -- writes -----------------------------------------------------------------------------
    def upsert(
        self, ids: Sequence[str], texts: Sequence[str | None], payloads: Sequence[dict],
        vectors: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Write items in one transaction; return (new seqs, seqs of the versions replaced)."""
        with self._lock, self._failures("writing"), self._transaction():
            old = self._seqs_of(ids)
            self._delete_ids(ids)
            first = self._take_seqs(len(ids))
            seqs = np.arange(first, first + len(ids), dtype=np.int64)
            self._db.executemany(
                "INSERT INTO items (seq, id, text, payload, vector) VALUES (?, ?, ?, ?, ?)",
                (
                    (int(s), i, t, json.dumps(p, ensure_ascii=False), v.tobytes())
                    for s, i, t, p, v in zip(seqs, ids, texts, payloads, vectors)
                ),
            )
        self._count += len(ids) - len(old)
        return seqs, old

    def delete(self, ids: Sequence[str]) -> tuple[list[str], np.ndarray]:
        """Delete items in one transaction; return (ids that existed, their seqs)."""
        with self._lock, self._failures("writing"), self._transaction():
            found = self._rows_by_id(ids, "id, seq")
            self._delete_ids([r[0] for r in found])
            # Burn a seq so that a snapshot taken after this delete is newer than the deleted rows.
            self._take_seqs(1)
        self._count -= len(found)
        return [r[0] for r in found], np.array([r[1] for r in found], dtype=np.int64)

    # -- reads ------------------------------------------------------------------------------
    def records(self, seqs: Sequence[int], with_vectors: bool = False) -> dict[int, Record]:
        """Records of the given seqs that still exist (a missing seq is a tombstone)."""
        cols = "seq, id, text, payload" + (", vector" if with_vectors else "")
        out: dict[int, Record] = {}
        with self._lock:
            for part in _chunks(list(dict.fromkeys(int(s) for s in seqs))):
                marks = ",".join("?" * len(part))
                for row in self._db.execute(f"SELECT {cols} FROM items WHERE seq IN ({marks})", part):
                    out[row[0]] = self._record(row, with_vectors)
        return out

    def by_ids(self, ids: Sequence[str]) -> dict[str, Record]:
        """The records (with vectors) of those of ``ids`` that are stored, by id."""
        with self._lock:
            rows = self._rows_by_id(ids, "seq, id, text, payload, vector")
        return {row[1]: self._record(row, True) for row in rows}

    def existing(self, ids: Sequence[str]) -> list[str]:
        """Those of ``ids`` that have a row."""
        with self._lock:
            return [r[0] for r in self._rows_by_id(ids, "id")]

    def get(self, item_id: str) -> Record | None:
        """The record stored under ``item_id``, with its vector, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT seq, id, text, payload, vector FROM items WHERE id = ?", (item_id,)
            ).fetchone()
        return self._record(row, True) if row else None

    def seqs_upto(self, seq: int) -> np.ndarray:
        """The seqs of the live rows with seq <= ``seq``, sorted."""
        with self._lock:
            rows = self._db.execute("SELECT seq FROM items WHERE seq <= ? ORDER BY seq", (seq,)).fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def count(self) -> int:
        """Number of live items (kept in memory: COUNT(*) scans the table)."""
        return self._count

    def last_seq(self) -> int:
        """The highest seq handed out so far (0 when none)."""
        with self._lock:
            return self._db.execute("SELECT value FROM counters WHERE name='next_seq'").fetchone()[0] - 1

    def vectors_after(
        self, seq: int, upto: int | None = None, batch: int = 50_000
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(seqs, vectors) of live rows with seq > ``seq`` (and <= ``upto``), in seq order, in batches."""
        upto = (1 << 62) if upto is None else upto
        while True:
            with self._lock:
                rows = self._db.execute(
                    "SELECT seq, vector FROM items WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
                    (seq, upto, batch),
                ).fetchall()
            if not rows:
                return
            yield self._unpack(rows)
            seq = rows[-1][0]

    def sample_vectors(self, size: int, seed: int = 0) -> np.ndarray:
        """About ``size`` vectors drawn at random (all of them when there are fewer)."""
        return self.sample_rows(size, seed)[1]

    def sample_rows(self, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(seqs, vectors) of about ``size`` live rows drawn at random (all when there are fewer)."""
        with self._lock:
            low, high = self._db.execute("SELECT MIN(seq), MAX(seq) FROM items").fetchone()
        if low is None:
            return np.empty(0, np.int64), np.empty((0, self.dim), dtype=np.float32)
        if self.count() <= size:
            parts = list(self.vectors_after(0))
            return np.concatenate([s for s, _ in parts]), np.concatenate([v for _, v in parts])
        rng = np.random.default_rng(seed)
        picks = np.unique(rng.integers(low, high + 1, size=2 * size))  # seqs have gaps: over-draw
        found = self.records(picks.tolist(), with_vectors=True)
        order = rng.permutation(len(found))[:size]
        seqs = np.fromiter(found.keys(), np.int64, len(found))[order]
        return seqs, np.stack([found[s].vector for s in seqs.tolist()])

    # -- helpers ----------------------------------------------------------------------------
    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)

    def _take_seqs(self, n: int) -> int:
        first = self._db.execute("SELECT value FROM counters WHERE name='next_seq'").fetchone()[0]
        self._db.execute("UPDATE counters SET value = ? WHERE name='next_seq'", (first + n,))
        return first

    def _rows_by_id(self, ids: Sequence[str], cols: str) -> list[tuple]:
        rows: list[tuple] = []
        for part in _chunks(list(ids)):
            marks = ",".join("?" * len(part))
            rows += self._db.execute(f"SELECT {cols} FROM items WHERE id IN ({marks})", part).fetchall()
        return rows

    def _seqs_of(self, ids: Sequence[str]) -> np.ndarray:
        return np.array([r[0] for r in self._rows_by_id(ids, "seq")], dtype=np.int64)

    def _delete_ids(self, ids: Sequence[str]) -> None:
        for part in _chunks(list(ids)):
            self._db.execute(f"DELETE FROM items WHERE id IN ({','.join('?' * len(part))})", part)

    def _record(self, row: tuple, with_vector: bool) -> Record:
        vector = np.frombuffer(row[4], dtype=np.float32) if with_vector else None
        return Record(id=row[1], text=row[2], payload=json.loads(row[3]), vector=vector, seq=row[0])

    def _unpack(self, rows: list[tuple]) -> tuple[np.ndarray, np.ndarray]:
        seqs = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32)
        return seqs, vectors.reshape(len(rows), self.dim)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on error. SQLite may have rolled back by itself
    (a full disk does): the original error is what the caller sees, never the failed ROLLBACK."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: type | None, *_: object) -> None:
        if kind is None:
            try:
                self.db.execute("COMMIT")
            except sqlite3.Error:
                self._rollback()
                raise
        else:
            self._rollback()

    def _rollback(self) -> None:
        if self.db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self.db.execute("ROLLBACK")


def _disk_full(exc: sqlite3.Error, path: Path) -> bool:
    """SQLITE_FULL, or an I/O error on a disk with no room left (SQLite reports a failed write to
    its WAL or shared-memory file as an I/O error, not as SQLITE_FULL)."""
    code = getattr(exc, "sqlite_errorcode", 0) or 0
    if code == sqlite3.SQLITE_FULL or "disk is full" in str(exc):
        return True
    if code & 0xFF == sqlite3.SQLITE_IOERR or "disk I/O error" in str(exc):
        try:
            return shutil.disk_usage(path.parent).free < (1 << 20)
        except OSError:
            return False
    return False


def _chunks(items: list, size: int = CHUNK) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
