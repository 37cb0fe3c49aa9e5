"""VectorStore: string ids -> L2-normalised float32 vectors, searched by inner product (cosine).

A folder holds three things:
- ``meta.sqlite``: the source of truth (see ``meta.py``); a write is acknowledged only after its
  SQLite commit.
- ``index-<seq>.faiss``: a snapshot of the FAISS index holding every write up to ``seq``.
- ``rerank-<token>.bin`` (kinds that re-rank): float16 copies of the vectors the last build put
  in FAISS, memory-mapped, so that a query reads only a shortlist from SQLite (``rerank.py``).
- ``manifest.json``: dimension, kind, encoder, tau, count and the names of the current snapshot
  and copy.

Saving writes a new snapshot file (temporary name, fsync, rename), then the manifest that names
it (the same way), then removes the older snapshot. A process killed at any moment leaves a
manifest that names a complete snapshot; opening replays the SQLite rows newer than it. A snapshot
that cannot be read is rebuilt from SQLite.

Opening checks the snapshot before trusting it: its SHA-256 must match the manifest's, and every
live SQLite row up to its seq must be in it; otherwise it is rebuilt from SQLite.

Processes: one writer process per folder, enforced by the folder's writer lock (``folder.py``),
taken by ``create`` and ``open`` and held until ``close``. Any number of readers
(``open(read_only=True)``) take no lock: they load the snapshot and replay SQLite inside one read
transaction, write nothing, and ``refresh`` to catch up with the writer's later commits.

Threads: one ``ReadWriteLock`` per store. Searches hold it shared (FAISS allows concurrent
searches, not a search during add/remove [faiss#367]); add, delete and rebuild hold it alone, so a
search sees a batch of writes entirely or not at all. Snapshots are written under the shared lock.
"""

from __future__ import annotations

import errno
import hashlib
import os
import sys
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
from tqdm import tqdm

from .errors import BadVectorError, DiskFullError, EncoderMismatchError, IndexFolderError, StoreError
from .folder import DEFAULT_META, WriterLock, remove_index, remove_strays
from .kinds import KIND_NAMES, IndexKind, SearchKnobs, kind_for, train_size
from .locks import ReadWriteLock
from .manifest import MANIFEST, Manifest, fsync_path
from .meta import MetaDB, Record
from .rerank import RerankCopy, open_copy, write_copy
from .tuning import DEFAULT_TARGET_RECALL, SAMPLE, ExactNeighbours, check_target, tune

META_FILE = DEFAULT_META


@dataclass
class Hit:
    """One search result: the item's id, its cosine similarity to the query, text and payload."""

    id: str
    score: float
    text: str | None
    payload: dict


class VectorStore:
    """Add, upsert, delete, get and search vectors by string id, persisted in one folder."""

    def __init__(self, folder: Path, manifest: Manifest, meta: MetaDB, writer: WriterLock | None = None) -> None:
        self.folder, self.manifest, self._meta, self._writer = Path(folder), manifest, meta, writer
        self._lock = ReadWriteLock()
        self._index: faiss.Index | None = None
        self._copy: RerankCopy | None = None  # float16 vectors of the last build, for the re-rank
        self._kind: IndexKind = kind_for(manifest.kind, 0, manifest.params)
        self._applied_seq = 0  # highest seq whose write FAISS holds
        self._stale = 0  # FAISS entries that match no live row (tombstones)
        self._trained_on = 0
        self._changed = False  # FAISS differs from the snapshot on disk
        self._save_lock = threading.Lock()  # one save or rebuild at a time

    # -- lifecycle ------------------------------------------------------------------------
    @classmethod
    def create(
        cls, folder: str | Path, dimension: int, kind: str = "auto", encoder: dict | None = None,
        tau: float | None = None, force: bool = False, holder: dict | None = None, wait_s: float = 0.0,
        target_recall: float = DEFAULT_TARGET_RECALL,
    ) -> VectorStore:
        """Make a new, empty index folder and hold its writer lock. An existing index is replaced
        only with ``force`` (its own files only: whatever else the folder holds stays).

        ``target_recall``: the recall@10 each build tunes the approximate kinds' search knob to
        reach (``tuning.py``)."""
        folder = Path(folder)
        if kind not in KIND_NAMES:
            raise ValueError(f"unknown index kind {kind!r}; choose one of {', '.join(KIND_NAMES)}")
        check_target(target_recall)
        if folder.exists() and not folder.is_dir():
            raise IndexFolderError(f"{folder}: exists and is not a folder")
        folder.mkdir(parents=True, exist_ok=True)
        lock = WriterLock(folder, holder, wait_s).acquire()
        try:
            if (folder / MANIFEST).exists() or (folder / META_FILE).exists():
                if not force:
                    raise IndexFolderError(f"{folder}: an index already exists (use --force to replace it)")
                remove_index(folder)
            manifest = Manifest(dimension=dimension, kind=kind, encoder=dict(encoder or {}), tau=tau,
                                target_recall=float(target_recall))
            store = cls(folder, manifest, MetaDB(folder / manifest.meta_file, dimension), lock)
            manifest.save(folder)
        except BaseException:
            lock.release()
            raise
        return store

    @classmethod
    def open(cls, folder: str | Path, encoder: dict | None = None, read_only: bool = False,
             holder: dict | None = None, wait_s: float = 0.0) -> VectorStore:
        """Open an index folder. ``encoder`` (name, dimension, fingerprint) must match the one it
        was built with: vectors from another model are meaningless against it.

        A writer (the default) takes the folder's writer lock, waiting up to ``wait_s`` seconds
        (``IndexBusyError`` names the holder). ``read_only`` takes no lock and writes nothing."""
        folder = Path(folder)
        if read_only:
            return cls._open_reader(folder, encoder)
        Manifest.load(folder)  # a clear error for a folder that is no index, before locking it
        lock = WriterLock(folder, holder, wait_s).acquire()
        try:
            manifest = Manifest.load(folder)
            _check_encoder(folder, manifest.encoder, encoder)
            remove_strays(folder, manifest)
            store = cls(folder, manifest, _open_meta(folder, manifest, False), lock)
            store._load_snapshot()
        except BaseException:
            lock.release()
            raise
        return store

    @classmethod
    def _open_reader(cls, folder: Path, encoder: dict | None, tries: int = 5) -> VectorStore:
        """A read-only store. The writer may replace the snapshot (or the whole index) while this
        loads: a file that vanished between reading the manifest and opening it means a newer
        manifest is there, so load again."""
        for attempt in range(tries):
            manifest = Manifest.load(folder)
            _check_encoder(folder, manifest.encoder, encoder)
            try:
                meta = _open_meta(folder, manifest, True)
            except IndexFolderError:
                if attempt + 1 < tries and Manifest.load(folder) != manifest:
                    continue
                raise
            store = cls(folder, manifest, meta)
            try:
                with meta.reading():
                    meta.refresh_count()
                    store._load_snapshot(retry_missing=attempt + 1 < tries)
                return store
            except _SnapshotGone:
                meta.close()
        raise IndexFolderError(f"{folder}: the index kept changing while it was being opened")

    def close(self) -> None:
        """Release the SQLite connection and the writer lock (unsaved FAISS changes are replayed
        on the next open)."""
        self._meta.close()
        if self._writer is not None:
            self._writer.release()

    def __enter__(self) -> VectorStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- properties -----------------------------------------------------------------------
    @property
    def dimension(self) -> int:
        """Vector dimension."""
        return self.manifest.dimension

    def __len__(self) -> int:
        return self._meta.count()

    @property
    def dirty(self) -> bool:
        """True when the FAISS index holds writes that no snapshot on disk has."""
        return self._changed or (self._index is None and len(self) > 0)

    @property
    def read_only(self) -> bool:
        """True for a reader: it holds no writer lock and writes nothing."""
        return self._writer is None

    @property
    def built_kind(self) -> str:
        """The kind of the FAISS index in use (``auto`` resolved)."""
        return self._kind.name

    # -- writes ---------------------------------------------------------------------------
    def add(
        self, ids: Sequence[str], vectors: np.ndarray, texts: Sequence[str | None] | None = None,
        payloads: Sequence[dict] | None = None,
    ) -> list[str]:
        """Insert or replace items. Within one batch a repeated id keeps its last occurrence.

        Vectors are checked (dimension, finite, not zero) and L2-normalised. Returns the ids
        written, in first-seen order. Durable once this returns.
        """
        self._check_writable()
        vectors = self._checked(vectors)
        n = len(vectors)
        texts = list(texts) if texts is not None else [None] * n
        payloads = list(payloads) if payloads is not None else [{}] * n
        if not len(ids) == n == len(texts) == len(payloads):
            raise ValueError(f"{len(ids)} ids, {n} vectors, {len(texts)} texts, {len(payloads)} payloads")
        last = {_checked_id(i): pos for pos, i in enumerate(ids)}
        keep = sorted(last.values())
        ids = [str(ids[p]) for p in keep]
        vectors = vectors[keep]
        with self._lock.write():
            seqs, old = self._meta.upsert(ids, [texts[p] for p in keep], [payloads[p] for p in keep], vectors)
            self._drop(old)
            self._changed = True
            if self._index is not None and self._index.is_trained:
                self._index.add_with_ids(vectors, seqs)
                self._applied_seq = int(seqs[-1]) if len(seqs) else self._applied_seq
            else:
                self._index = None  # built from SQLite at the next search or save
        return list(dict.fromkeys(ids))

    def delete(self, ids: Sequence[str]) -> list[str]:
        """Delete items by id; returns the ids that existed. Durable once this returns."""
        self._check_writable()
        with self._lock.write():
            found, old = self._meta.delete([str(i) for i in ids])
            self._drop(old)
            self._changed = True
            if self._index is not None:
                self._applied_seq = self._meta.last_seq()
        return found

    def existing(self, ids: Sequence[str]) -> list[str]:
        """Those of ``ids`` that are stored."""
        return self._meta.existing([str(i) for i in ids])

    def get(self, item_id: str) -> Record | None:
        """The stored item (id, text, payload, normalised vector), or None."""
        return self._meta.get(str(item_id))

    def records_of(self, ids: Sequence[str]) -> dict[str, Record]:
        """The stored items (with vectors) of those of ``ids`` that exist, by id."""
        return self._meta.by_ids([str(i) for i in ids])

    def scan(self, batch: int = 10_000) -> Iterator[Record]:
        """Every stored item (with its vector), in the order written."""
        for seqs, _ in self._meta.vectors_after(0, batch=batch):
            found = self._meta.records(seqs.tolist(), with_vectors=True)
            yield from (found[s] for s in seqs.tolist() if s in found)

    # -- search ---------------------------------------------------------------------------
    def search(
        self, vectors: np.ndarray, k: int = 10, threshold: float | None = None,
        nprobe: int | None = None, ef_search: int | None = None,
    ) -> list[list[Hit]]:
        """The ``k`` nearest items of each query, best first.

        With ``threshold``, only hits scoring >= threshold are kept (k still bounds them).
        ``nprobe`` (IVF kinds) and ``ef_search`` (HNSW) apply to this call only.
        """
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        queries = self._checked(vectors)
        self._ensure_index()
        one_thread_for_one_query(len(queries))
        with self._lock.read():
            if self._index is None or self._index.ntotal == 0:
                return [[] for _ in range(len(queries))]
            hits = self._search_locked(queries, k, SearchKnobs(nprobe, ef_search))
        if threshold is not None:
            hits = [[h for h in row if h.score >= threshold] for row in hits]
        return hits

    def _search_locked(self, queries: np.ndarray, k: int, knobs: SearchKnobs) -> list[list[Hit]]:
        """FAISS's candidates, re-ranked exactly. With a re-rank copy, only a shortlist chosen on
        its float16 vectors is read from SQLite (and scored on its exact vectors)."""
        index, kind, copy = self._index, self._kind, self._copy if self._kind.rerank else None
        live = self._meta.count()
        want = min(k, live)
        slack = k + 16 if self._stale else 0
        fetch, short = k * max(1, kind.rerank) + slack, k + k // 2 + slack  # a margin for float16's rounding
        while True:
            fetch = min(fetch, index.ntotal)
            found = kind.search(index, queries, fetch, knobs)
            picked = copy.shortlist(queries, found, short) if copy is not None else [r[r >= 0] for r in found]
            records = self._meta.records([s for row in picked for s in row.tolist()], with_vectors=True)
            rows = [[records[s] for s in row.tolist() if s in records] for row in picked]
            if fetch >= index.ntotal or all(len(r) >= want for r in rows):
                break
            fetch, short = fetch * 4, short * 4  # tombstones crowded out live hits: look further
        return [_ranked(q, row, k) for q, row in zip(queries, rows)]

    # -- persistence ----------------------------------------------------------------------
    def save(self) -> None:
        """Bring the FAISS index up to date and write a snapshot atomically.

        Rebuilds first where due: an ``auto`` index that crossed its size threshold, an IVF index
        that grew past 4x the data it was trained on, or tombstones above a quarter of the items.
        A rebuild happens aside, without the lock: searches and writes go on against the old index
        meanwhile, and the new one is swapped in after replaying the writes that came during it.
        """
        self._check_writable()
        with self._save_lock:
            if self._rebuild_due():
                self._rebuild_aside()
            with self._lock.read():
                self._write_snapshot()

    def refresh(self) -> int:
        """A reader catches up with the writer: rows committed since it loaded are added to its
        FAISS index (deleted ones were already filtered); an index replaced by a new build is
        loaded anew. Returns how many rows were added."""
        latest = Manifest.load(self.folder)
        if latest.meta_file != self.manifest.meta_file:
            return self._reload()
        self.manifest.tau = latest.tau  # the writer may have set a new tau
        added = 0
        with self._save_lock:
            if self._index is None:
                self._meta.refresh_count()
                return 0
            with self._lock.write():
                self._meta.refresh_count()
                for seqs, vectors in self._meta.vectors_after(self._applied_seq):
                    if self._index.is_trained:
                        self._index.add_with_ids(vectors, seqs)
                    added += len(seqs)
                    self._applied_seq = int(seqs[-1])
                self._stale = max(0, int(self._index.ntotal) - self._meta.count())
        return added

    def _reload(self) -> int:
        """Load the folder's new index in place of this reader's (a build replaced it)."""
        fresh = VectorStore._open_reader(self.folder, self.manifest.encoder)
        with self._save_lock, self._lock.write():
            old = self._meta
            self.manifest, self._meta, self._index, self._kind = fresh.manifest, fresh._meta, fresh._index, fresh._kind
            self._copy = fresh._copy
            self._applied_seq, self._stale, self._trained_on = fresh._applied_seq, fresh._stale, fresh._trained_on
        old.close()
        return len(self)

    def set_tau(self, tau: float | None) -> None:
        """Set the duplicate threshold that travels with the index (written to the manifest now;
        readers pick it up at their next refresh)."""
        self._check_writable()
        with self._save_lock:
            tau, before = check_tau(tau), self.manifest.tau
            self.manifest.tau = tau
            try:
                self.manifest.save(self.folder)
            except OSError as exc:
                self.manifest.tau = before
                raise _disk_full_or(exc, "writing the manifest") from None

    def rebuild(self, kind: str | None = None, target_recall: float | None = None) -> None:
        """Rebuild the FAISS index from SQLite, as ``kind`` (default: the manifest's kind), tuned
        for ``target_recall`` (default: the manifest's)."""
        self._check_writable()
        with self._save_lock:
            if kind is not None:
                kind_for(kind, 0)  # validates the name
                self.manifest.kind = kind
            if target_recall is not None:
                self.manifest.target_recall = check_target(target_recall)
            self._rebuild_aside()

    @property
    def search_defaults(self) -> dict:
        """The built kind's parameters: the tuned knob and the recall measured for it."""
        return self._kind.describe(self._index) if self._index is not None else {}

    def _ensure_index(self) -> None:
        if self._index is None and self._meta.count():
            with self._lock.write():
                if self._index is None:
                    self._rebuild_locked()

    def _rebuild_due(self) -> bool:
        live = self._meta.count()
        if self._index is None:
            return live > 0
        if kind_for(self.manifest.kind, live).name != self._kind.name:
            return True
        if self._kind.trains and live > 4 * max(self._trained_on, 10_000):
            return True
        return self._stale > max(1000, live // 4)

    def _rebuild_locked(self) -> None:
        """Rebuild in place (the caller holds the write lock): at open and for the first build."""
        self._swap_in(self._build())

    def _rebuild_aside(self) -> None:
        built = self._build()
        with self._lock.write():
            self._swap_in(built)

    def _build(self) -> Built:
        """A new index of the manifest's kind holding the rows up to the current last seq, and
        (a writer, a kind that re-ranks) a float16 copy of those rows for the re-rank.

        Needs no lock: SQLite is read in short calls, and writes that land meanwhile get higher
        seqs (replayed by ``_swap_in``) or leave tombstones (counted by it)."""
        live = self._meta.count()
        kind = kind_for(self.manifest.kind, live)
        if kind.trains and not live:
            return Built(None, kind, 0, 0)
        index = kind.make(self.dimension, live)
        if kind.trains:
            index.train(self._meta.sample_vectors(train_size(index)))
        last = self._meta.last_seq()
        probe = self._held_out(kind, live, last)
        copy = write_copy(self.folder, self.dimension) if kind.rerank and not self.read_only else None
        try:
            self._fill(index, kind, live, last, probe, copy)
        except BaseException:
            if copy is not None:
                copy.abandon()
            raise
        if probe is not None:
            tuning = tune(kind, index, probe, self.manifest.target_recall)
            if tuning is not None:
                kind.set_knob(tuning.value, tuning.record())
            index.add_with_ids(probe.queries, probe.seqs)
        return Built(index, kind, last, live, self._finished(copy))

    def _fill(self, index: faiss.Index, kind: IndexKind, live: int, last: int, probe: ExactNeighbours | None,
              copy) -> None:  # noqa: ANN001 - RerankWriter | None
        """Add the rows up to seq ``last`` to ``index`` (and ``copy``), the tuning sample aside."""
        with tqdm(total=live, desc=f"building {kind.name}", unit="vec", disable=None, file=sys.stderr) as bar:
            for seqs, vectors in self._meta.vectors_after(0, upto=last):
                bar.update(len(seqs))
                if copy is not None:
                    copy.add(seqs, vectors)
                if probe is not None:  # the sample goes in after tuning: true held-out queries
                    kept = ~np.isin(seqs, probe.seqs)
                    seqs, vectors = seqs[kept], vectors[kept]
                    probe.update(seqs, vectors)
                index.add_with_ids(vectors, seqs)

    def _finished(self, copy) -> RerankCopy | None:  # noqa: ANN001 - RerankWriter | None
        """The finished copy, or None (warned) when the disk refused it: SQLite re-ranks then."""
        if copy is None:
            return None
        try:
            return copy.finish()
        except OSError as exc:
            copy.abandon()
            print(f"warning: {self.folder}: cannot write a re-rank copy ({exc}); re-ranking from SQLite",
                  file=sys.stderr)
            return None

    def _held_out(self, kind: IndexKind, live: int, last: int) -> ExactNeighbours | None:
        """A sample of the rows up to seq ``last`` (a tenth, at most ``SAMPLE``) to tune ``kind``'s
        knob with, or None for a kind without one or an index too small to hold any out. (A row
        written after ``last`` is replayed by ``_swap_in``; it must not go in twice.)"""
        size = min(SAMPLE, live // 10)
        if not kind.knob or size < 1:
            return None
        seqs, vectors = self._meta.sample_rows(size, seed=1)
        return ExactNeighbours(seqs[seqs <= last], vectors[seqs <= last])

    def _swap_in(self, built: Built) -> None:
        """Make a built index current (the caller holds the write lock)."""
        index, kind, last, live = built.index, built.kind, built.last, built.live
        if index is not None:
            for seqs, vectors in self._meta.vectors_after(last):  # writes that came during the build
                index.add_with_ids(vectors, seqs)
        self._index, self._kind, self._trained_on, self._copy = index, kind, live, built.copy
        self._applied_seq = self._meta.last_seq()
        self._stale = int(index.ntotal) - self._meta.count() if index is not None else 0
        self._changed = True

    def _write_snapshot(self) -> None:
        name = f"index-{self._applied_seq}.faiss" if self._index is not None else ""
        snapshot = dict(self.manifest.snapshot) if name == self.manifest.snapshot.get("file") else {}
        if name and (self._changed or not snapshot or not (self.folder / name).exists()):
            snapshot = {"file": name, "seq": self._applied_seq, "trained_on": self._trained_on,
                        "ntotal": int(self._index.ntotal), "sha256": self._write_index_file(name)}
        built = self._index is not None
        if snapshot:
            snapshot["rerank"] = self._copy.name if self._copy is not None else None
        self.manifest.snapshot = snapshot if built else {}
        self.manifest.built_kind = self._kind.name if built else ""
        self.manifest.params = self._kind.describe(self._index) if built else {}
        self.manifest.count = self._meta.count()
        try:
            self.manifest.save(self.folder)
        except OSError as exc:
            raise _disk_full_or(exc, "the manifest") from None
        self._changed = False  # only now: a failed manifest write is retried by the next save
        current = {name, self._copy.name if self._copy is not None else ""}
        for old in [*self.folder.glob("index-*.faiss"), *self.folder.glob(".index-*.tmp"),
                    *self.folder.glob("rerank-*.bin")]:
            if old.name not in current:  # older snapshots and copies, temp files of a writer killed mid-save
                old.unlink(missing_ok=True)

    def _write_index_file(self, name: str) -> str:
        """Write the FAISS index to ``name`` atomically; return the file's SHA-256. A failed write
        (a full disk) leaves no temporary file behind."""
        tmp = self.folder / f".{name}.tmp"
        try:
            faiss.write_index(self._index, str(tmp))
            digest = _sha256(tmp)
            fsync_path(tmp)
            os.replace(tmp, self.folder / name)
            fsync_path(self.folder)
        except (OSError, RuntimeError) as exc:
            tmp.unlink(missing_ok=True)
            raise _disk_full_or(exc, f"snapshot {name}") from None
        return digest

    def _load_snapshot(self, retry_missing: bool = False) -> None:
        """Load the snapshot the manifest names, or rebuild from SQLite when it is missing,
        unreadable, damaged (checksum) or lacks rows it should hold."""
        snap = self.manifest.snapshot
        if not snap.get("file"):
            return  # nothing snapshotted yet: built lazily from SQLite
        path = self.folder / snap["file"]
        problem = None
        if not path.is_file():
            if retry_missing:
                raise _SnapshotGone
            problem = "missing snapshot"
        elif snap.get("sha256") and _sha256(path) != snap["sha256"]:
            problem = "damaged snapshot (checksum mismatch)"
        if problem is None:
            try:
                index = faiss.read_index(str(path))
            except RuntimeError:
                problem = "unreadable snapshot"
        kind = kind_for(self.manifest.built_kind or self.manifest.kind, 0, self.manifest.params)
        if problem is None:
            missing = self._missing_from(index, kind, int(snap.get("seq", 0)))
            if missing:
                problem = f"snapshot lacks {missing} items that {self.manifest.meta_file} holds"
        if problem is not None:
            print(f"warning: {path}: {problem}; rebuilding it from {self.manifest.meta_file}", file=sys.stderr)
            self._rebuild_locked()
            return
        copy = open_copy(self.folder, snap.get("rerank"), self.dimension) if kind.rerank else None
        built = Built(index, kind, int(snap.get("seq", 0)), int(snap.get("trained_on", 0)), copy)
        self._swap_in(built)  # replays SQLite
        self._changed = self._applied_seq != int(snap.get("seq", 0))

    def _missing_from(self, index: faiss.Index, kind: IndexKind, seq: int) -> int:
        """How many live rows with seq <= ``seq`` the index does not hold."""
        held = kind.ids(index)
        return int(len(np.setdiff1d(self._meta.seqs_upto(seq), held, assume_unique=True)))

    def verify(self) -> dict:
        """Compare FAISS with SQLite: rows, entries, live entries, tombstones, rows FAISS lacks.
        A healthy index has ``missing == 0`` and ``live_entries == rows``."""
        self._ensure_index()
        with self._lock.read():
            rows = self._meta.seqs_upto(1 << 62)
            held = self._kind.ids(self._index) if self._index is not None else np.empty(0, np.int64)
            live = np.intersect1d(rows, held)
        return {"rows": int(len(rows)), "entries": int(len(held)), "live_entries": int(len(live)),
                "tombstones": int(len(held) - len(live)), "missing": int(len(rows) - len(live))}

    # -- helpers --------------------------------------------------------------------------
    def _drop(self, seqs: np.ndarray) -> None:
        """Remove replaced or deleted versions from FAISS, or count them as tombstones."""
        if not len(seqs) or self._index is None:
            return
        if self._kind.removes:
            self._index.remove_ids(np.ascontiguousarray(seqs, dtype=np.int64))
        else:
            self._stale += len(seqs)

    def _checked(self, vectors: np.ndarray | Iterable) -> np.ndarray:
        return check_vectors(vectors, self.dimension)

    def _check_writable(self) -> None:
        if self._writer is None:
            raise StoreError(f"{self.folder}: opened read-only; open it as the writer to change it")


@dataclass
class Built:
    """What a build made: the index (None: nothing to build yet), its kind, the last seq it holds,
    the live rows it was made from, and its float16 re-rank copy (None: re-rank from SQLite)."""

    index: faiss.Index | None
    kind: IndexKind
    last: int
    live: int
    copy: RerankCopy | None = None


class _SnapshotGone(Exception):
    """The snapshot named by the manifest vanished while a reader opened it (a newer one exists)."""


def one_thread_for_one_query(n: int) -> None:
    """FAISS's OpenMP threads for a search of ``n`` queries, in the calling thread only (the
    OpenMP thread count is per thread): one for a single query, whose work is too small to share
    and whose idle team would spin on the cores the encoder needs next; every core for batches."""
    faiss.omp_set_num_threads(1 if n == 1 else CORES)


def _cores() -> int:
    """The cores this process may run on, or ``TWIN_THREADS`` where set (a distributed worker
    given one CPU of a shared machine must not start a thread per core)."""
    chosen = os.environ.get("TWIN_THREADS", "")
    if chosen.isdigit() and int(chosen) > 0:
        return int(chosen)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


#: Threads for FAISS batches and the ONNX encoder's pool (see ``_cores``).
CORES = _cores()


def _open_meta(folder: Path, manifest: Manifest, read_only: bool) -> MetaDB:
    path = folder / manifest.meta_file
    if not path.is_file():
        raise IndexFolderError(f"{path}: missing; the index folder is damaged")
    return MetaDB(path, manifest.dimension, read_only)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def _disk_full_or(exc: Exception, what: str) -> Exception:
    """A full disk as a DiskFullError naming ``what`` was being written; other errors unchanged."""
    if getattr(exc, "errno", None) == errno.ENOSPC or "No space left" in str(exc):
        return DiskFullError(errno.ENOSPC, f"disk full while writing {what}; every acknowledged write is "
                                           "safe in SQLite and the previous snapshot is kept (free some space)")
    return exc


def check_vectors(vectors: np.ndarray | Iterable, dimension: int) -> np.ndarray:
    """``vectors`` as a C-contiguous float32 (n, d) array of unit rows, or BadVectorError."""
    array = np.array(vectors, dtype=np.float32, copy=True)
    if array.ndim == 1:
        array = array.reshape(1, -1)
    if array.ndim != 2 or array.shape[1] != dimension:
        raise BadVectorError(f"vectors have shape {array.shape}; this index takes (n, {dimension})")
    bad = ~np.isfinite(array).all(axis=1)
    if bad.any():
        raise BadVectorError(f"vector {int(np.argmax(bad))} contains NaN or infinity")
    norms = np.linalg.norm(array, axis=1)
    if (norms == 0).any():
        raise BadVectorError(f"vector {int(np.argmax(norms == 0))} is all zeros")
    norms[np.abs(norms - 1.0) <= 1e-6] = 1.0  # unit already: stored bit for bit as the encoder gave it
    return np.ascontiguousarray(array / norms[:, None], dtype=np.float32)


def _ranked(query: np.ndarray, records: list[Record], k: int) -> list[Hit]:
    """Exact cosine of each candidate, best first, top k."""
    if not records:
        return []
    scores = np.stack([r.vector for r in records]) @ query
    order = np.argsort(-scores, kind="stable")[:k]
    return [
        Hit(records[i].id, float(np.clip(scores[i], -1.0, 1.0)), records[i].text, records[i].payload)
        for i in order
    ]


def check_tau(tau: float | None) -> float | None:
    """``tau`` as a float in [-1, 1] (cosine), or None; StoreError otherwise."""
    if tau is None:
        return None
    if isinstance(tau, bool) or not isinstance(tau, int | float) or not -1.0 <= float(tau) <= 1.0:
        raise StoreError(f"tau {tau!r} is not a cosine in [-1, 1]")
    return float(tau)


def _checked_id(item_id: object) -> str:
    text = str(item_id)
    if not text:
        raise ValueError("an item id is empty")
    return text


def _check_encoder(folder: Path, built: dict, given: dict | None) -> None:
    if not given:
        return
    was, now = built.get("backend") or "torch", given.get("backend")
    if now and now != was:  # the same weights run another way: vectors differ slightly, not in kind
        print(f"warning: {folder} was built with the {was} backend and is opened with {now}: their vectors "
              f"differ slightly (cosine ~0.99); rebuild with --backend {now} for exact agreement", file=sys.stderr)
    for key in ("dimension", "fingerprint"):
        if built.get(key) is not None and given.get(key) is not None and built[key] != given[key]:
            raise EncoderMismatchError(
                f"{folder}: built with encoder {built.get('name')!r} ({key} {built[key]}), "
                f"opened with {given.get('name')!r} ({key} {given[key]}); use the same model or rebuild"
            )
