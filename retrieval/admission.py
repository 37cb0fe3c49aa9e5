"""Dedup on insert: which items of a batch to store, given what is stored already.

An item is a duplicate when its best match, among the stored items and the earlier admitted
items of the same run, scores above tau; a match with the item's own id is not a duplicate (it
is the item being replaced). ``skip`` stores only the items that are not duplicates; ``report``
stores nothing and says what ``skip`` would have done; ``add`` stores everything.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import faiss
import numpy as np

#: ``add``: store everything (no look-up); ``skip``: store what is not a duplicate; ``report``:
#: store nothing, say what ``skip`` would do.
ON_DUPLICATE = ("add", "skip", "report")


@dataclass
class Outcome:
    """What became of one item: whether it was stored, and if it is a duplicate, of which
    existing (or earlier admitted) item and with what cosine."""

    id: str
    stored: bool
    duplicate_of: str | None = None
    score: float | None = None

    def to_dict(self) -> dict:
        """The JSON shape of ``POST /items`` and ``twin add --json``."""
        return asdict(self)


class Admitted:
    """Items admitted in this run but not in the store (``report`` stores nothing, yet a later
    item that repeats an earlier one of the run is still a duplicate): searched exactly."""

    def __init__(self, dimension: int) -> None:
        self.index, self.ids = faiss.IndexFlatIP(dimension), []

    def add(self, ids: list[str], vectors: np.ndarray) -> None:
        """Remember admitted items."""
        if len(ids):
            self.index.add(np.ascontiguousarray(vectors, np.float32))
            self.ids += ids

    def best(self, ids: list[str], vectors: np.ndarray) -> list[tuple[str, float] | None]:
        """Each item's best remembered match with another id."""
        if not self.ids:
            return [None] * len(ids)
        scores, rows = self.index.search(np.ascontiguousarray(vectors, np.float32), min(2, len(self.ids)))
        return [next(((self.ids[r], float(s)) for s, r in zip(srow, rrow) if r >= 0 and self.ids[r] != own), None)
                for own, srow, rrow in zip(ids, scores, rows)]


def admit(ids: list[str], vectors: np.ndarray, known: list[tuple[str, float] | None], tau: float,
          store: bool) -> list[Outcome]:
    """Decide each item of a batch in order (``skip`` when ``store``, else ``report``): ``known``
    is its best match outside the batch (None: none); earlier admitted items of the batch count
    too. An item is admitted when its best match scores ``<= tau``."""
    similar = vectors @ vectors.T
    names = np.asarray(ids, dtype=object)
    admitted = np.zeros(len(ids), bool)
    outcomes = []
    for i, own in enumerate(ids):
        best = known[i]
        row = np.where(admitted & (names != own), similar[i], -np.inf)
        j = int(np.argmax(row)) if len(row) else 0
        if len(row) and row[j] > -np.inf and (best is None or row[j] > best[1]):
            best = (ids[j], float(row[j]))
        duplicate = best is not None and best[1] > tau
        admitted[i] = not duplicate
        outcomes.append(Outcome(own, store and not duplicate, best[0] if duplicate else None,
                                round(best[1], 6) if duplicate else None))
    return outcomes
