"""Hard negatives mined with the model being trained, guarded against unlabelled duplicates.

Every training text is embedded by the model as it stands and indexed (FAISS, inner product: cosine
on unit vectors); a row (anchor, positive) gets as an extra negative the anchor's nearest training
text that passes two guards:

- it is not of the anchor's duplicate group (the batches' guard: a duplicate through a third text
  is no negative);
- its cosine with the anchor is below ``ratio`` x the cosine of the anchor's own positive. QQP
  holds many unlabelled duplicates, and the texts nearest an anchor are the likeliest of them (batches
  of neighbouring anchors cost 1.3 accuracy points for that reason); one nearly as close as the
  positive is more often such a duplicate than a negative. This is NV-Retriever's positive-aware
  mining, TopK-PercPos with 95% (Moreira et al., 2024, arXiv:2407.15831).

The index is rebuilt from the current weights at each refresh (ANCE: Xiong et al., ICLR 2021, mines
with the model being trained and refreshes as it learns), so the negatives stay hard as it learns.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

MINING_RATIO = 0.95  #: a mined negative's cosine stays under this share of the positive's (NV-Retriever)
MINING_DEPTH = 16  #: neighbours searched a text; the first that passes both guards is the negative


class NegativeMiner:
    """The nearest guarded negative of each training text, from the last ``refresh``."""

    def __init__(self, groups: Mapping[str, int], ratio: float = MINING_RATIO, depth: int = MINING_DEPTH) -> None:
        self.texts: list[str] = sorted(groups)
        self.groups, self.ratio, self.depth = groups, ratio, depth
        self.row = {text: i for i, text in enumerate(self.texts)}
        self.vectors = np.zeros((0, 0), np.float32)
        self.neighbours = np.zeros((0, 0), np.int64)
        self.similarities = np.zeros((0, 0), np.float32)
        self.refreshes = 0

    def refresh(self, embed: Callable[[list[str]], np.ndarray]) -> None:
        """Embed every training text with ``embed`` (texts -> unit vectors) and find each one's
        nearest others."""
        import faiss

        self.vectors = np.ascontiguousarray(embed(self.texts), dtype=np.float32)
        index = faiss.IndexFlatIP(self.vectors.shape[1])
        index.add(self.vectors)
        k = min(self.depth + 1, len(self.texts))  # + 1: a text finds itself first
        self.similarities, self.neighbours = index.search(self.vectors, k)
        self.refreshes += 1

    def negative(self, anchor: str, positive: str) -> str | None:
        """``anchor``'s nearest text outside its group and under ``ratio`` x its cosine with
        ``positive``; None before the first refresh or where no neighbour searched passes."""
        if not self.refreshes or anchor not in self.row:
            return None
        i, group = self.row[anchor], self.groups[anchor]
        ceiling = self.ratio * float(self.vectors[i] @ self.vectors[self.row[positive]]) \
            if positive in self.row else 1.0
        for j, similarity in zip(self.neighbours[i], self.similarities[i]):
            if j >= 0 and j != i and self.groups[self.texts[j]] != group and similarity < ceiling:
                return self.texts[j]
        return None

    def negatives(self, rows: Sequence[tuple[str, str]]) -> list[str]:
        """The mined negatives of the rows (anchor, positive) that have one, in row order."""
        found = (self.negative(a, b) for a, b in rows)
        return [n for n in found if n is not None]
