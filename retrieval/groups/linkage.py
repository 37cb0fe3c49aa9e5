"""From pairs above tau to groups: star or connected linkage, and which member to keep.

Both work on "units" (the distinct texts of a corpus, each standing for ``copies`` identical
items) numbered in corpus order, and on the pairs of units above tau.

* **star**: units are taken in order of preference (``keep``); each joins the most similar
  representative it is a duplicate of, or, with none, becomes a representative. Every member is a
  duplicate of its representative, so no chain through a hub merges items that are not alike
  (greedy "leader" clustering, as in SemHash's selection; ``community_detection`` instead lets
  each representative take all its free neighbours).
* **connected**: the connected components of the pair graph (the transitive closure of
  "duplicate of"), as MinHash/LSH pipelines do; the representative is chosen by ``keep``.

``keep``: ``first`` (corpus order), ``longest`` (most characters), or ``central`` (the largest
sum of cosines to the other members it is a duplicate of, copies counting 1 each). Ties go to
the earlier unit, so the result depends on nothing but the input.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from .join import Pairs

KEEP_RULES = ("first", "longest", "central")
LINKAGES = ("star", "connected")


@dataclass
class Linked:
    """Per unit: its representative unit (itself for a representative or a unit in no group)."""

    representative: np.ndarray

    def in_group(self, copies: np.ndarray) -> np.ndarray:
        """Whether each unit belongs to a group of two items or more."""
        size = np.bincount(self.representative, weights=copies, minlength=len(copies))
        return size[self.representative] > 1


def link(pairs: Pairs, copies: np.ndarray, lengths: np.ndarray, linkage: str = "star",
         keep: str = "first") -> Linked:
    """Group ``len(copies)`` units joined by ``pairs``."""
    if linkage not in LINKAGES:
        raise ValueError(f"linkage must be one of {LINKAGES}, got {linkage!r}")
    preference = _preference(pairs, copies, lengths, keep)
    if linkage == "star":
        return Linked(_star(pairs, len(copies), preference))
    return Linked(_connected(pairs, len(copies), preference))


def _preference(pairs: Pairs, copies: np.ndarray, lengths: np.ndarray, keep: str) -> np.ndarray:
    """Rank of each unit as a representative (0 = most preferred); ties keep corpus order."""
    m = len(copies)
    order = np.arange(m)
    if keep == "first":
        key = np.zeros(m)
    elif keep == "longest":
        key = -lengths.astype(np.float64)
    elif keep == "central":
        weight = (copies - 1).astype(np.float64)
        weight += np.bincount(pairs.a, weights=pairs.score * copies[pairs.b], minlength=m)
        weight += np.bincount(pairs.b, weights=pairs.score * copies[pairs.a], minlength=m)
        key = -np.round(weight, 5)  # sums in another order must not reorder near-ties
    else:
        raise ValueError(f"keep must be one of {KEEP_RULES}, got {keep!r}")
    ranked = np.lexsort((order, key))
    rank = np.empty(m, np.int64)
    rank[ranked] = order
    return rank


def _star(pairs: Pairs, m: int, rank: np.ndarray) -> np.ndarray:
    """Star groups: units in order of preference; each joins the most similar representative
    among its neighbours, or, with none, becomes one."""
    representative = np.arange(m)
    if not len(pairs):
        return representative
    src = np.concatenate([pairs.a, pairs.b])
    dst = np.concatenate([pairs.b, pairs.a])
    score = np.concatenate([pairs.score, pairs.score])
    by_src = np.lexsort((dst, src))
    src, dst, score = src[by_src], dst[by_src], score[by_src]
    starts = np.searchsorted(src, np.arange(m + 1))
    is_rep = np.zeros(m, bool)
    linked = np.unique(src)
    for unit in linked[np.argsort(rank[linked], kind="stable")].tolist():
        neighbours = dst[starts[unit]:starts[unit + 1]]
        reps = is_rep[neighbours]
        if reps.any():
            scores = np.where(reps, score[starts[unit]:starts[unit + 1]], -np.inf)
            representative[unit] = neighbours[int(np.argmax(scores))]
        else:
            is_rep[unit] = True
    return representative


def _connected(pairs: Pairs, m: int, rank: np.ndarray) -> np.ndarray:
    """Connected components, each represented by its best-ranked unit."""
    graph = coo_matrix((np.ones(len(pairs)), (pairs.a, pairs.b)), shape=(m, m))
    _, component = connected_components(graph, directed=False)
    best = np.full(component.max() + 1 if m else 0, m, np.int64)
    np.minimum.at(best, component, rank)
    unit_of_rank = np.argsort(rank)
    return unit_of_rank[best[component]]
