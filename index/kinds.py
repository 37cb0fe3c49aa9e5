"""FAISS index kinds: one small class each, one interface.

Every kind searches by inner product over L2-normalised float32 vectors (inner product = cosine)
and stores int64 ids. A kind says how to build a FAISS index for ``n`` vectors, whether it must be
trained, whether FAISS can remove ids from it, and how to pass per-call search parameters.
``nprobe`` and ``efSearch`` are passed per call (``SearchParameters``), never set on the index,
because two searches with different values would race [faiss#2204].
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import faiss
import numpy as np

KIND_NAMES = ("auto", "flat", "hnsw", "hnsw-sq8", "ivf-sq8", "ivf-pq")

#: ``auto`` stays exact (flat) below this many live vectors and becomes hnsw-sq8 at or above it.
#: Measured (BENCHMARKS.md): a flat single query through the store takes 2.3 ms at 40k vectors and
#: 47-55 ms at 1M, so flat stays under 2 ms to about 30k. On real MiniLM embeddings, each tuned
#: for recall@10 0.95, hnsw-sq8 answered single queries in 0.25 / 0.46 / 0.65 ms at 59k / 250k /
#: 1M vectors (recall 0.973 / 0.969 / 0.962, 536 bytes a vector) where ivf-sq8 took 0.43 / 2.5 /
#: 2.3 ms (0.971 / 0.972 / 0.951, 398-419 bytes).
AUTO_APPROXIMATE_FROM = 30_000
#: The kind ``auto`` becomes at ``AUTO_APPROXIMATE_FROM`` live vectors.
AUTO_APPROXIMATE_KIND = "hnsw-sq8"


@dataclass(frozen=True)
class SearchKnobs:
    """Per-call search parameters; None means the kind's default."""

    nprobe: int | None = None
    ef_search: int | None = None


class IndexKind(ABC):
    """How to build and search one kind of FAISS index."""

    name: str = ""
    trains: bool = False  #: needs ``train`` on a sample before ``add``
    removes: bool = True  #: FAISS ``remove_ids`` works on it
    rerank: int = 0  #: fetch ``k * rerank`` candidates and re-rank them exactly (0: off)
    knob: str = ""  #: the search knob that trades speed for recall ("nprobe", "ef_search"; "": none)

    def __init__(self) -> None:
        self.measured: dict = {}  #: recall measured when the knob was tuned (see tuning.py)

    @abstractmethod
    def make(self, dim: int, n: int) -> faiss.Index:
        """A new, empty FAISS index for about ``n`` vectors of dimension ``dim``."""

    def params(self, knobs: SearchKnobs) -> faiss.SearchParameters | None:
        """FAISS search parameters for one call."""
        return None

    def search(self, index: faiss.Index, queries: np.ndarray, k: int, knobs: SearchKnobs) -> np.ndarray:
        """Ids (int64, -1 for none) of the ``k`` best candidates of each query."""
        return index.search(queries, k, params=self.params(knobs))[1]

    def describe(self, index: faiss.Index) -> dict:
        """Build parameters worth recording in the manifest, with the tuned knob's measurement."""
        return dict(self.measured)

    def knob_values(self, index: faiss.Index) -> list[int]:
        """Values of ``knob`` to try when tuning, cheapest first (none: nothing to tune)."""
        return []

    def knobs(self, value: int) -> SearchKnobs:
        """Search parameters with ``knob`` set to ``value``."""
        return SearchKnobs(**{self.knob: value})

    def set_knob(self, value: int, measured: dict) -> None:
        """Make ``value`` the default of ``knob``, with the recall measured for it."""
        setattr(self, self.knob, int(value))
        self.measured = {k: v for k, v in measured.items() if k != self.knob}

    def ids(self, index: faiss.Index) -> np.ndarray:
        """Every id the index holds, sorted (tombstones included)."""
        return np.sort(faiss.vector_to_array(index.id_map).astype(np.int64))


class FlatKind(IndexKind):
    """Exact search: every query is compared to every vector. 4*d bytes a vector."""

    name = "flat"
    #: FAISS 1.15 computes flat distances with BLAS only past a threshold (default 128000). Measured
    #: at 200k x 384 on 2 cores: threshold 16 makes a 64-query batch 6x faster (347 -> 57 ms) and
    #: a single query 2x slower (10 -> 20 ms). The value is process-global, so it is chosen per
    #: call; a concurrent call may see the other value, which changes speed, never results.
    blas_from = 16

    def search(self, index: faiss.Index, queries: np.ndarray, k: int, knobs: SearchKnobs) -> np.ndarray:
        faiss.cvar.distance_compute_blas_threshold = 16 if len(queries) >= self.blas_from else 128_000
        return index.search(queries, k)[1]

    def make(self, dim: int, n: int) -> faiss.Index:
        return faiss.index_factory(dim, "IDMap,Flat", faiss.METRIC_INNER_PRODUCT)


class HNSWKind(IndexKind):
    """Graph search (HNSW). Fast and accurate, all in RAM; FAISS cannot remove from it [faiss#3339]."""

    name = "hnsw"
    removes = False
    knob = "ef_search"

    def __init__(self, m: int = 32, ef_construction: int = 80, ef_search: int = 64) -> None:
        super().__init__()
        self.m, self.ef_construction, self.ef_search = m, ef_construction, ef_search

    def make(self, dim: int, n: int) -> faiss.Index:
        index = faiss.index_factory(dim, f"IDMap,HNSW{self.m}", faiss.METRIC_INNER_PRODUCT)
        faiss.downcast_index(index.index).hnsw.efConstruction = self.ef_construction
        return index

    def params(self, knobs: SearchKnobs) -> faiss.SearchParameters:
        return faiss.SearchParametersHNSW(efSearch=knobs.ef_search or self.ef_search)

    def describe(self, index: faiss.Index) -> dict:
        return {"m": self.m, "ef_construction": self.ef_construction, "ef_search": self.ef_search,
                **self.measured}

    def knob_values(self, index: faiss.Index) -> list[int]:
        return [16, 32, 64, 128, 256, 512, 1024]


class HNSWSQ8Kind(HNSWKind):
    """Graph search over 8-bit scalar-quantised vectors: ~d + 8*M bytes a vector (about a third of
    ``hnsw``'s). SQ8 scores are approximate, so ``2k`` candidates are re-ranked with the exact
    vectors. Like ``hnsw``, it cannot remove: deletes are tombstones until a rebuild."""

    name = "hnsw-sq8"
    trains = True  #: the quantiser learns each dimension's range
    rerank = 2

    def __init__(self, m: int = 16, ef_construction: int = 80, ef_search: int = 64) -> None:
        super().__init__(m, ef_construction, ef_search)

    def make(self, dim: int, n: int) -> faiss.Index:
        index = faiss.index_factory(dim, f"IDMap,HNSW{self.m},SQ8", faiss.METRIC_INNER_PRODUCT)
        faiss.downcast_index(index.index).hnsw.efConstruction = self.ef_construction
        return index


def choose_nlist(n: int) -> int:
    """Inverted lists for ``n`` vectors: ~4*sqrt(n) rounded to a power of two, >= 39 points a list."""
    if n < 2 * 39:
        return 1
    target = 2 ** round(math.log2(4 * math.sqrt(n)))
    return int(max(1, min(target, n // 39, 65536)))


class _IVFKind(IndexKind):
    """Shared parts of the inverted-file kinds: a flat coarse quantizer and per-call nprobe."""

    trains = True
    knob = "nprobe"

    def __init__(self, nprobe: int = 32) -> None:
        super().__init__()
        self.nprobe = nprobe

    def params(self, knobs: SearchKnobs) -> faiss.SearchParameters:
        return faiss.SearchParametersIVF(nprobe=knobs.nprobe or self.nprobe)

    def describe(self, index: faiss.Index) -> dict:
        return {"nlist": int(faiss.extract_index_ivf(index).nlist), "nprobe": self.nprobe, **self.measured}

    def knob_values(self, index: faiss.Index) -> list[int]:
        """Powers of two up to ``nlist`` (nprobe = nlist visits every list)."""
        nlist = int(faiss.extract_index_ivf(index).nlist)
        return sorted({min(2**i, nlist) for i in range(int(math.log2(nlist)) + 2)})

    def ids(self, index: faiss.Index) -> np.ndarray:
        lists = faiss.extract_index_ivf(index).invlists
        parts = []
        for number in range(lists.nlist):
            size = lists.list_size(number)
            if size:
                ptr = lists.get_ids(number)
                parts.append(faiss.rev_swig_ptr(ptr, size).astype(np.int64))
                lists.release_ids(number, ptr)
        return np.sort(np.concatenate(parts)) if parts else np.empty(0, np.int64)


class IVFSQ8Kind(_IVFKind):
    """Inverted file with 8-bit scalar-quantised vectors: d+8 bytes a vector, recall close to exact.

    SQ8 scores are approximate, so ``2k`` candidates are re-ranked with the exact vectors.
    """

    name = "ivf-sq8"
    rerank = 2

    def make(self, dim: int, n: int) -> faiss.Index:
        return faiss.index_factory(dim, f"IVF{choose_nlist(n)},SQ8", faiss.METRIC_INNER_PRODUCT)


def choose_pq_m(dim: int) -> int:
    """Sub-quantizers for product quantisation: the largest divisor of ``dim`` <= dim / 8."""
    return max(m for m in range(1, max(1, dim // 8) + 1) if dim % m == 0)


class IVFPQKind(_IVFKind):
    """Inverted file with product-quantised codes (~dim/8 bytes a vector in RAM).

    PQ alone loses recall badly, so the store re-ranks ``k * rerank`` candidates exactly with the
    vectors it keeps in SQLite: RAM holds only the codes, the exact vectors stay on disk.
    """

    name = "ivf-pq"
    rerank = 16

    def make(self, dim: int, n: int) -> faiss.Index:
        nbits = 8 if n >= 256 * 39 else max(1, min(8, int(math.log2(max(2, n // 39)))))
        spec = f"IVF{choose_nlist(n)},PQ{choose_pq_m(dim)}x{nbits}"
        index = faiss.index_factory(dim, spec, faiss.METRIC_INNER_PRODUCT)
        index.do_polysemous_training = False  # costly, and the exact re-rank makes it moot
        return index


def kind_for(name: str, live: int, params: dict | None = None) -> IndexKind:
    """The kind named ``name``; ``auto`` resolves by the number of live vectors. ``params`` (a
    manifest's) restores a tuned knob and its measurement."""
    if name == "auto":
        name = "flat" if live < AUTO_APPROXIMATE_FROM else AUTO_APPROXIMATE_KIND
    kinds = {"flat": FlatKind, "hnsw": HNSWKind, "hnsw-sq8": HNSWSQ8Kind, "ivf-sq8": IVFSQ8Kind, "ivf-pq": IVFPQKind}
    if name not in kinds:
        raise ValueError(f"unknown index kind {name!r}; choose one of {', '.join(KIND_NAMES)}")
    kind = kinds[name]()
    value = (params or {}).get(kind.knob) if kind.knob else None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        kind.set_knob(value, {k: v for k, v in params.items() if k in MEASURED_KEYS})
    return kind


#: Manifest params that record a tuning (see tuning.py).
MEASURED_KEYS = ("recall_at_10", "target_recall", "tuned_on")


def train_size(index: faiss.Index) -> int:
    """How many vectors to train ``index`` on: 64 a list within [10k, 160k], never under 39 a list
    (k-means quality drops below that; the PQ codebooks need 256 points each, always met); 50k
    for a scalar quantiser alone (it learns ranges, not centroids)."""
    try:
        nlist = faiss.extract_index_ivf(index).nlist
    except RuntimeError:
        return 50_000
    return int(max(min(max(64 * nlist, 10_000), 160_000), 39 * nlist))
