"""Every pair of vectors above a threshold, found by a batched k-nearest-neighbour self-join.

Never an n x n matrix: each vector is searched against a FAISS inner-product index of all of
them, ``k`` neighbours at a time, in batches. A vector whose ``k`` nearest all pass the threshold
may have more: it is searched again with a range search, which returns every neighbour above the
threshold, so no pair is lost to ``k``. Small sets use an exact (flat) index; larger ones an IVF
index with 8-bit codes, whose approximate scores only choose candidates: every pair's score is
then recomputed exactly from the float32 vectors, so the approximation can miss a pair (the
recall measured in ``scripts/bench_groups.py``) but never invents one or shifts its score.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import faiss
import numpy as np

from ..progress import Progress

#: Below this many vectors the self-join is exact (a flat index).
EXACT_BELOW = 50_000
#: Approximate scores are trusted to within this much: candidates scoring above ``threshold -
#: SLACK`` are rescored exactly. 8-bit codes of unit vectors err by well under 0.01 in cosine.
SLACK = 0.03
#: Queries searched per FAISS call.
BATCH = 8192
#: Pairs rescored at a time (two gathers of this many vectors: 25 MB each at 384 dimensions).
RESCORE_BATCH = 1 << 14


@dataclass
class Pairs:
    """Pairs ``(a[i], b[i])`` with ``a < b`` (row numbers of the vectors), each once, sorted,
    and their exact cosine ``score``."""

    a: np.ndarray
    b: np.ndarray
    score: np.ndarray

    def __len__(self) -> int:
        return len(self.a)

    @classmethod
    def empty(cls) -> Pairs:
        """No pairs."""
        return cls(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32))


def self_join(vectors: np.ndarray, threshold: float, k: int = 16, nprobe: int | None = None,
              progress: bool = True, searcher: Searcher | None = None) -> Pairs:
    """Every pair of rows of ``vectors`` (unit rows, float32) whose cosine is ``> threshold``.
    ``searcher`` searches every row's ``k`` nearest in batches (default: here, one batch after
    another; ``distributed.join.search_on_ray``: in parallel Ray tasks)."""
    n = len(vectors)
    if n < 2:
        return Pairs.empty()
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    index, floor = join_index(vectors, threshold, nprobe, progress)
    parts = (searcher or search_batches)(index, vectors, min(k + 1, n), floor, progress)  # k + the row itself
    return finish_join(index, vectors, parts, floor, threshold, progress)


def search_batches(index: faiss.Index, vectors: np.ndarray, k: int, floor: float,
                   progress: bool = True) -> list[Candidates]:
    """Every row's ``k`` nearest above ``floor``, a batch of ``BATCH`` rows at a time."""
    n, parts = len(vectors), []
    with Progress(n, "joining", "item", enabled=progress) as bar:
        for start in range(0, n, BATCH):
            parts.append(search_rows(index, vectors, start, min(start + BATCH, n), k, floor))
            bar.update(min(BATCH, n - start))
    return parts


@dataclass
class Candidates:
    """What one batch of the self-join found: candidate pairs (query row, neighbour row), and the
    rows whose ``k`` nearest all passed the floor (to be searched past ``k``)."""

    queries: np.ndarray
    neighbours: np.ndarray
    crowded: np.ndarray


#: How a self-join searches: (index, vectors, k, floor, progress) -> one Candidates per batch, in row order.
Searcher = Callable[[faiss.Index, np.ndarray, int, float, bool], list[Candidates]]


def search_rows(index: faiss.Index, vectors: np.ndarray, start: int, stop: int, k: int,
                floor: float) -> Candidates:
    """Rows ``start:stop`` of ``vectors`` searched for their ``k`` nearest above ``floor``."""
    rows = np.arange(start, stop)
    scores, neighbours = index.search(vectors[rows], k)
    keep = (scores > floor) & (neighbours >= 0)
    return Candidates(np.repeat(rows, keep.sum(axis=1)), neighbours[keep], rows[keep.sum(axis=1) >= k])


def finish_join(index: faiss.Index, vectors: np.ndarray, parts: list[Candidates], floor: float,
                threshold: float, progress: bool = True) -> Pairs:
    """The batches' candidates, with range searches for the crowded rows, rescored exactly."""
    found = [(p.queries, p.neighbours) for p in parts]
    crowded_rows = np.concatenate([p.crowded for p in parts])
    if len(crowded_rows):
        found += _beyond_k(index, vectors, crowded_rows, floor, progress)
    return _exact(vectors, found, threshold)


def join_index(vectors: np.ndarray, threshold: float, nprobe: int | None,
                progress: bool) -> tuple[faiss.Index, float]:
    """The index to join against, and the approximate score above which a pair is a candidate."""
    n, dim = vectors.shape
    if n < EXACT_BELOW:
        index = faiss.IndexFlatIP(dim)
        index.add(vectors)
        return index, threshold - 1e-4  # BLAS's sums may differ from the exact rescoring's last bits
    nlist = choose_nlist(n)
    index = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(dim), dim, nlist, faiss.ScalarQuantizer.QT_8bit,
                                          faiss.METRIC_INNER_PRODUCT)
    index.cp.niter = 10  # the lists only need to be coherent: nprobe covers their edges
    index.cp.min_points_per_centroid = 32  # the sample below is enough: no warning for it
    sample = np.random.default_rng(0).choice(n, size=min(n, 32 * nlist), replace=False)
    index.train(vectors[np.sort(sample)])
    with Progress(n, "indexing for the join", "item", enabled=progress) as bar:
        for start in range(0, n, 100_000):
            index.add(vectors[start:start + 100_000])
            bar.update(min(100_000, n - start))
    index.nprobe = nprobe or 8
    return index, threshold - SLACK


def choose_nlist(n: int) -> int:
    """IVF lists for a self-join of ``n`` vectors: about ``2 sqrt(n)`` (a query scans ~n/nlist
    vectors a list), a power of two."""
    return 1 << max(6, min(14, round(math.log2(2 * math.sqrt(n)))))


def _beyond_k(index: faiss.Index, vectors: np.ndarray, rows: np.ndarray, floor: float,
              progress: bool) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every neighbour above ``floor`` of rows whose k nearest all passed it (range search)."""
    found = []
    with Progress(len(rows), "searching past k", "item", enabled=progress) as bar:
        for start in range(0, len(rows), 1024):
            part = rows[start:start + 1024]
            lims, scores, neighbours = index.range_search(vectors[part], floor)
            counts = np.diff(lims).astype(np.int64)
            found.append((np.repeat(part, counts), neighbours.astype(np.int64)))
            bar.update(len(part))
    return found


def _exact(vectors: np.ndarray, found: list[tuple[np.ndarray, np.ndarray]], threshold: float) -> Pairs:
    """Candidate pairs made canonical (a < b, once each), rescored exactly, kept above threshold."""
    n = len(vectors)
    q = np.concatenate([f[0] for f in found]).astype(np.int64)
    r = np.concatenate([f[1] for f in found]).astype(np.int64)
    a, b = np.minimum(q, r), np.maximum(q, r)
    keys = np.unique(a[a != b] * n + b[a != b])
    a, b = keys // n, keys % n
    score = np.empty(len(keys), np.float32)
    for start in range(0, len(keys), RESCORE_BATCH):
        part = slice(start, start + RESCORE_BATCH)
        score[part] = np.einsum("ij,ij->i", vectors[a[part]], vectors[b[part]])
    above = score > threshold
    return Pairs(a[above], b[above], score[above])
