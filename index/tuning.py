"""Search knobs chosen by measurement instead of a constant.

At each build the store holds a sample of its own rows out of the FAISS index (a tenth, at most
``SAMPLE``), finds each held-out row's exact top-k among the rows that went in
(``ExactNeighbours``, fed the same batches the build adds, so nothing more is read), and then
tries the kind's knob — ``nprobe`` for the IVF kinds, ``efSearch`` for HNSW — from small to large
(``tune``), searching the way the store searches (``k * rerank`` candidates). The first value whose
recall@k reaches the target becomes the kind's default and is recorded, with the recall measured,
in the manifest; then the held-out rows go in. (Rows left in the index flatter HNSW: measured on
59k QQP questions, a row searched for while it is in the graph gives recall@10 0.986 at efSearch
16 where truly new queries get 0.949.)

recall@k = |candidates ∩ exact top-k| / k, averaged over the sample. The store re-ranks its
candidates exactly, so an exact neighbour among the candidates is always in the returned top k.
"""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np

#: The recall@10 a build aims for unless told otherwise (``--target-recall``).
DEFAULT_TARGET_RECALL = 0.95
#: Held-out rows searched when tuning, at most: recall is then known to about +-0.005.
SAMPLE = 1000
K = 10


def check_target(target: float) -> float:
    """``target`` as a float in (0, 1], or ValueError."""
    if isinstance(target, bool) or not isinstance(target, int | float) or not 0 < target <= 1:
        raise ValueError(f"target recall must be in (0, 1], got {target!r}")
    return float(target)


class ExactNeighbours:
    """The exact top-``k`` of a few query rows over data seen in batches; a query skips the row
    with its own seq (held-out style: a vector is not its own neighbour)."""

    def __init__(self, seqs: np.ndarray, vectors: np.ndarray, k: int = K) -> None:
        self.seqs, self.queries, self.k = np.asarray(seqs, np.int64), np.asarray(vectors, np.float32), k
        self.best_scores = np.full((len(self.seqs), k), -np.inf, dtype=np.float32)
        self.best_seqs = np.full((len(self.seqs), k), -1, dtype=np.int64)

    def update(self, seqs: np.ndarray, vectors: np.ndarray) -> None:
        """Fold in one batch of data rows (FAISS's exact k-NN on it, then a merge of 2k columns)."""
        if not len(seqs) or not len(self.seqs):
            return
        scores, rows = faiss.knn(self.queries, np.ascontiguousarray(vectors, np.float32),
                                 min(self.k + 1, len(seqs)), metric=faiss.METRIC_INNER_PRODUCT)
        found = np.where(rows >= 0, np.asarray(seqs, np.int64)[np.maximum(rows, 0)], -1)
        scores[(found == self.seqs[:, None]) | (found < 0)] = -np.inf  # a query is not its own neighbour
        all_scores = np.concatenate([self.best_scores, scores], axis=1)
        all_seqs = np.concatenate([self.best_seqs, found], axis=1)
        top = np.argpartition(-all_scores, self.k - 1, axis=1)[:, : self.k]
        self.best_scores = np.take_along_axis(all_scores, top, axis=1)
        self.best_seqs = np.take_along_axis(all_seqs, top, axis=1)

    def truth(self) -> list[set[int]]:
        """Each query's exact top-k seqs (fewer where the data holds fewer other rows)."""
        return [set(row[score > -np.inf].tolist()) for row, score in zip(self.best_seqs, self.best_scores)]


@dataclass(frozen=True)
class Tuning:
    """What tuning chose: the knob, its value, the recall@k measured with it, and the target."""

    knob: str
    value: int
    recall: float
    target: float
    sample: int

    def record(self) -> dict:
        """The manifest's record of it."""
        return {self.knob: self.value, f"recall_at_{K}": round(self.recall, 4),
                "target_recall": self.target, "tuned_on": self.sample}


def measured_recall(found: np.ndarray, seqs: np.ndarray, truth: list[set[int]], k: int = K) -> float:
    """Mean recall@k of candidate lists ``found`` (each query's own seq dropped) against ``truth``."""
    rates = [len(truth_row & (set(row.tolist()) - {own})) / min(k, len(truth_row))
             for row, own, truth_row in zip(found, seqs.tolist(), truth) if truth_row]
    return float(np.mean(rates)) if rates else 1.0


def tune(kind, index: faiss.Index, probe: ExactNeighbours, target: float) -> Tuning | None:
    """The smallest of ``kind.knob_values(index)`` whose recall@k on ``probe``'s sample reaches
    ``target`` (the largest when none does); None for a kind with no knob or an empty sample."""
    values = kind.knob_values(index)
    if not values or not len(probe.seqs):
        return None
    truth = probe.truth()
    fetch = min(probe.k * max(1, kind.rerank) + 1, int(index.ntotal))
    recall = 0.0
    for value in values:
        found = kind.search(index, probe.queries, fetch, kind.knobs(value))
        recall = measured_recall(found, probe.seqs, truth, probe.k)
        if recall >= target:
            break
    return Tuning(kind.knob, int(value), recall, target, len(probe.seqs))
