"""A sharded index: one folder holding several normal index folders (shards) and one manifest.

Made by a distributed build (``twin build --ray``) when a corpus is too large for one index. Each
shard is an ordinary index (its own SQLite file, FAISS snapshot, manifest and writer lock); the
top manifest names them in ``shards`` and carries the dimension, encoder and tau they share.

An item lives in the shard its id hashes to (``shard_of``), so an upsert or a delete of an id
always reaches the one shard that may hold it. A search asks every shard for its ``k`` best in
parallel (FAISS releases the GIL) and merges them into the global ``k`` best, like
``faiss.IndexShards``. A batch of writes is atomic within each shard, not across shards: a search
may see the part of a batch that one shard has committed before another has.
"""

from __future__ import annotations

import heapq
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np

from .errors import IndexFolderError, StoreError
from .folder import WriterLock, remove_strays
from .locks import ReadWriteLock
from .manifest import Manifest
from .meta import Record
from .store import Hit, VectorStore, check_tau, check_vectors


def shard_of(item_id: str, shards: int) -> int:
    """The shard an id belongs to: CRC-32 of its UTF-8 bytes modulo the shard count (stable
    across processes and machines, unlike Python's ``hash``)."""
    return zlib.crc32(item_id.encode("utf-8")) % shards


def is_sharded(folder: str | Path) -> bool:
    """True when ``folder``'s manifest names shards."""
    return bool(Manifest.load(Path(folder)).shards)


def open_store(folder: str | Path, encoder: dict | None = None, read_only: bool = False,
               holder: dict | None = None, wait_s: float = 0.0) -> VectorStore | ShardedStore:
    """Open an index folder, sharded or not (arguments as ``VectorStore.open``)."""
    opener = ShardedStore.open if is_sharded(folder) else VectorStore.open
    return opener(folder, encoder=encoder, read_only=read_only, holder=holder, wait_s=wait_s)


class ShardedStore:
    """The shards of a sharded index behind ``VectorStore``'s interface (see the module docstring)."""

    def __init__(self, folder: Path, manifest: Manifest, shards: list[VectorStore],
                 writer: WriterLock | None = None) -> None:
        self.folder, self.manifest, self.shards, self._writer = Path(folder), manifest, shards, writer
        self._pool = ThreadPoolExecutor(max(1, len(shards)), thread_name_prefix="twin-shard")
        self._swap = ReadWriteLock()  # searches and writes hold it shared; a reader's swap to new shards alone

    @classmethod
    def open(cls, folder: str | Path, encoder: dict | None = None, read_only: bool = False,
             holder: dict | None = None, wait_s: float = 0.0) -> ShardedStore:
        """Open every shard (a writer holds the top folder's writer lock, then each shard's)."""
        folder = Path(folder)
        writer = None if read_only else WriterLock(folder, holder, wait_s).acquire()
        opened: list[VectorStore] = []
        try:
            manifest = Manifest.load(folder)
            if not manifest.shards:
                raise IndexFolderError(f"{folder}: not a sharded index")
            if writer is not None:
                remove_strays(folder, manifest)
            for name in manifest.shards:
                if not (folder / name).is_dir():
                    raise IndexFolderError(f"{folder / name}: missing; the sharded index is damaged")
                opened.append(VectorStore.open(folder / name, encoder=encoder, read_only=read_only,
                                               holder=holder, wait_s=wait_s))
        except BaseException:
            for store in opened:
                store.close()
            if writer is not None:
                writer.release()
            raise
        return cls(folder, manifest, opened, writer)

    def close(self) -> None:
        """Close every shard and release the writer lock."""
        for store in self.shards:
            store.close()
        self._pool.shutdown(wait=False)
        if self._writer is not None:
            self._writer.release()

    def __enter__(self) -> ShardedStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- properties -----------------------------------------------------------------------
    @property
    def dimension(self) -> int:
        """Vector dimension."""
        return self.manifest.dimension

    def __len__(self) -> int:
        return sum(len(s) for s in self.shards)

    @property
    def dirty(self) -> bool:
        """True when a shard holds writes no snapshot on disk has."""
        return any(s.dirty for s in self.shards)

    @property
    def read_only(self) -> bool:
        """True for a reader."""
        return self._writer is None

    @property
    def built_kind(self) -> str:
        """The kind of the shards' FAISS indexes (``auto`` resolved), and how many shards."""
        kinds = sorted({s.built_kind for s in self.shards})
        return f"{'/'.join(kinds)} x {len(self.shards)} shards"

    @property
    def search_defaults(self) -> dict:
        """The first shard's tuned search parameters (each shard tunes its own)."""
        return self.shards[0].search_defaults

    # -- writes ---------------------------------------------------------------------------
    def add(self, ids: Sequence[str], vectors: np.ndarray, texts: Sequence[str | None] | None = None,
            payloads: Sequence[dict | None] | None = None) -> list[str]:
        """Upsert items, each into the shard its id hashes to; returns the ids written."""
        vectors = check_vectors(vectors, self.dimension)
        ids = list(ids)
        if len(vectors) != len(ids):
            raise StoreError(f"{len(ids)} ids for {len(vectors)} vectors")
        texts = list(texts) if texts is not None else [None] * len(ids)
        payloads = list(payloads) if payloads is not None else [None] * len(ids)
        written: list[str] = []
        for shard, rows in self._route(ids).items():
            written += self.shards[shard].add([ids[r] for r in rows], vectors[rows], [texts[r] for r in rows],
                                              [payloads[r] for r in rows])
        return written

    def delete(self, ids: Sequence[str]) -> list[str]:
        """Delete by id; returns the ids that existed."""
        return self._gather(ids, lambda store, part: store.delete(part))

    def existing(self, ids: Sequence[str]) -> list[str]:
        """Those of ``ids`` that are stored."""
        return self._gather(ids, lambda store, part: store.existing(part))

    def get(self, item_id: str) -> Record | None:
        """The stored record of ``item_id``, or None."""
        return self.shards[shard_of(item_id, len(self.shards))].get(item_id)

    def records_of(self, ids: Sequence[str]) -> dict[str, Record]:
        """The stored records of ``ids`` (with vectors), by id."""
        found: dict[str, Record] = {}
        for shard, rows in self._route(list(ids)).items():
            found.update(self.shards[shard].records_of([ids[r] for r in rows]))
        return found

    def scan(self, batch: int = 10_000) -> Iterator[Record]:
        """Every stored item (with its vector), shard after shard."""
        for store in self.shards:
            yield from store.scan(batch)

    # -- search ---------------------------------------------------------------------------
    def search(self, vectors: np.ndarray, k: int = 10, threshold: float | None = None,
               nprobe: int | None = None, ef_search: int | None = None) -> list[list[Hit]]:
        """The ``k`` nearest items of each query over all shards, best first (as ``VectorStore.search``)."""
        queries = check_vectors(vectors, self.dimension)
        with self._swap.read():
            per_shard = list(self._pool.map(
                lambda store: store.search(queries, k, threshold, nprobe=nprobe, ef_search=ef_search), self.shards))
        return [heapq.nlargest(k, (hit for rows in per_shard for hit in rows[q]), key=lambda h: h.score)
                for q in range(len(queries))]

    # -- persistence ----------------------------------------------------------------------
    def save(self) -> None:
        """Snapshot every shard that changed."""
        for store in self.shards:
            if store.dirty:
                store.save()

    def refresh(self) -> int:
        """A reader catches up with the writer in every shard; a reader of an index that a new
        build replaced opens the new shards. Returns the rows added (or, after a new build, held)."""
        current = Manifest.load(self.folder)
        if current.shards == self.manifest.shards:
            self.manifest.tau = current.tau  # the writer may have set a new tau
            return sum(store.refresh() for store in self.shards)
        if not current.shards:
            raise IndexFolderError(f"{self.folder}: rebuilt as an index without shards; open it again")
        fresh = ShardedStore.open(self.folder, encoder=self.manifest.encoder, read_only=True)
        with self._swap.write():
            old, self.manifest, self.shards = self.shards, fresh.manifest, fresh.shards
        fresh._pool.shutdown(wait=False)
        for store in old:
            store.close()
        return len(self)

    def set_tau(self, tau: float | None) -> None:
        """Set the index's tau in the top manifest (see ``VectorStore.set_tau``)."""
        if self._writer is None:
            raise StoreError(f"{self.folder}: opened read-only; open it as the writer to change it")
        changed = replace(self.manifest, tau=check_tau(tau))
        changed.save(self.folder)  # the manifest in memory changes only once the file has
        self.manifest = changed

    def rebuild(self, kind: str | None = None, target_recall: float | None = None) -> None:
        """Rebuild every shard's FAISS index (see ``VectorStore.rebuild``)."""
        for store in self.shards:
            store.rebuild(kind, target_recall)

    def verify(self) -> dict:
        """``VectorStore.verify`` summed over the shards."""
        totals: dict[str, int] = {}
        for store in self.shards:
            for key, value in store.verify().items():
                totals[key] = totals.get(key, 0) + value
        return totals

    # -- helpers --------------------------------------------------------------------------
    def _route(self, ids: Sequence[str]) -> dict[int, list[int]]:
        """Row numbers of ``ids`` by shard."""
        routed: dict[int, list[int]] = {}
        for row, item_id in enumerate(ids):
            routed.setdefault(shard_of(item_id, len(self.shards)), []).append(row)
        return routed

    def _gather(self, ids: Sequence[str], call: Callable[[VectorStore, list[str]], list[str]]) -> list[str]:
        ids = list(ids)
        found = set()
        for shard, rows in self._route(ids).items():
            found.update(call(self.shards[shard], [ids[r] for r in rows]))
        return [i for i in dict.fromkeys(ids) if i in found]
