"""Aligned batches of duplicate pairs, with hard negatives and a false-negative guard.

Row i of ``anchors`` and row i of ``positives`` are duplicates; every other positive of the batch
serves as a negative for anchor i, and so do the batch's extra hard negatives (labelled
non-duplicates, or the third text of a triplet, and optionally negatives mined with the model being
trained: ``mining.py``).

Labelled non-duplicate pairs (a, b) are near-misses: they share most words yet mean different
things, which random in-batch negatives never teach. Optionally each one joins the batches as a row
of its own, anchor a with a itself as the positive (a second view under dropout, as in SimCSE: Gao,
Yao & Chen, 2021) and b as its hard negative, so the loss asks s(a, b) < s(a, a') - alpha
(``near_miss_rows``). Or (``near_miss_pairs``) a sample of them rides along with each batch for
the loss's quadruplet term: every duplicate pair must score above every near-miss pair.

Texts are put into groups: the connected components of the duplicate pairs. A batch never holds
two pairs of one group, and each text's
group id travels with it, so the loss can mask any candidate of the anchor's own group: two rows
that are duplicates through a third question are never pushed apart.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..pairs import Pair
from ..text import normalize
from .mining import NegativeMiner


@dataclass
class Batch:
    """One training step's texts and their group ids (equal id = duplicates)."""

    anchors: list[str]
    positives: list[str]
    negatives: list[str]
    anchor_groups: list[int]
    positive_groups: list[int]
    negative_groups: list[int]
    near_misses: list[tuple[str, str]]  #: labelled non-duplicate pairs for the quadruplet term
    #: (row, negative, whether the negative is the positive's rather than the anchor's, the teacher's
    #: margin t(x, p) - t(x, n)) for the margin-MSE term, where a teacher scored both pairs
    scored: list[tuple[int, int, bool, float]] = field(default_factory=list)
    #: the score of each (anchor, positive) row, then of each near-miss pair, for the CoSENT term: a
    #: teacher's P(duplicate) where it scored the pair, else the label (1 for a row, 0 for a near miss)
    pair_targets: list[float] = field(default_factory=list)


class Groups:
    """Union-find over normalised texts: the duplicate groups."""

    def __init__(self) -> None:
        self._parent: dict[str, str] = {}
        self._size: dict[str, int] = {}

    def find(self, text: str) -> str:
        """The representative of ``text``'s group."""
        if text not in self._parent:
            self._parent[text], self._size[text] = text, 1
        root = text
        while self._parent[root] != root:
            root = self._parent[root]
        while self._parent[text] != root:
            self._parent[text], text = root, self._parent[text]
        return root

    def union(self, a: str, b: str) -> None:
        """Put ``a`` and ``b`` in one group."""
        root_a, root_b = self.find(a), self.find(b)
        if root_a != root_b:
            self._parent[root_a] = root_b
            self._size[root_b] += self._size.pop(root_a)

    def size_if_joined(self, a: str, b: str) -> int:
        """How many texts the group of ``a`` and ``b`` would hold after ``union(a, b)``."""
        root_a, root_b = self.find(a), self.find(b)
        return self._size[root_a] + (self._size[root_b] if root_b != root_a else 0)

    def ids(self) -> dict[str, int]:
        """A dense group id for every text seen."""
        roots: dict[str, int] = {}
        return {t: roots.setdefault(self.find(t), len(roots)) for t in list(self._parent)}


class TripletBatches:
    """Yields aligned batches for one epoch at a time, reproducibly from ``seed``."""

    def __init__(self, pairs: Sequence[Pair], triplets: Sequence[tuple[str, str, str]] = (),
                 batch_size: int = 32, seed: int = 0, near_miss_rows: bool = False,
                 near_miss_pairs: int = 0) -> None:
        self.batch_size, self.seed = batch_size, seed
        self.near_miss_pairs = near_miss_pairs  # labelled non-duplicate pairs attached to each batch
        groups = Groups()
        self.duplicates: list[tuple[str, str]] = []
        self.near_misses: list[tuple[str, str]] = []
        self.hard: dict[str, list[str]] = defaultdict(list)
        self.scores = _teacher_scores(pairs)
        for p in pairs:
            a, b = normalize(p.a), normalize(p.b)
            groups.find(a), groups.find(b)
            if p.label == 1 and a != b:
                groups.union(a, b)
                self.duplicates.append((a, b))
            elif p.label == 0:
                self.hard[a].append(b)
                self.hard[b].append(a)
                self.near_misses.append((a, b))
        for anchor, positive, negative in triplets:
            a, b, n = normalize(anchor), normalize(positive), normalize(negative)
            groups.union(a, b)
            groups.find(n)
            self.duplicates.append((a, b))
            self.hard[a].append(n)
        self.group = groups.ids()
        # A "hard negative" that is a duplicate through other pairs is no negative: drop it.
        for text, negs in self.hard.items():
            negs[:] = [n for n in negs if self.group[n] != self.group[text]]
        self.labelled_near_misses = [(a, b) for a, b in self.near_misses if self.group[a] != self.group[b]]
        self.near_misses = self.labelled_near_misses if near_miss_rows else []
        if len(self.duplicates) < 2 or len({self.group[a] for a, _ in self.duplicates}) < 2:
            raise ValueError(
                f"{len(self.duplicates)} duplicate pairs in {len({self.group[a] for a, _ in self.duplicates})} "
                "groups: training needs duplicate pairs from at least 2 groups to form a batch"
            )

    def __len__(self) -> int:
        return -(-(len(self.duplicates) + len(self.near_misses)) // self.batch_size)

    def epoch(self, number: int, embed: Callable[[list[str]], np.ndarray] | None = None,
              mine: Callable[[list[str]], np.ndarray] | None = None, mine_every: int = 0) -> Iterator[Batch]:
        """The batches of epoch ``number`` (0-based). With ``embed`` (texts -> unit vectors from the
        model being trained), batches are made of neighbouring anchors (k-means over the anchors,
        one cluster a batch), so the other rows of a batch are hard negatives, not random ones.
        With ``mine`` (the same kind of function), each row also gets a negative mined among all the
        training texts with the model as it stands (``mining.NegativeMiner``), refreshed at the
        epoch's start and every ``mine_every`` batches (0: once); the batches are made as they are
        asked for, so a refresh sees the weights trained so far."""
        rng = random.Random(self.seed * 1_000_003 + number)
        miner = NegativeMiner(self.group) if mine is not None else None
        made = 0

        def batch(rows: list[tuple]) -> Batch:
            nonlocal made
            if miner is not None and (made == 0 or (mine_every and made % mine_every == 0)):
                miner.refresh(mine)
            made += 1
            return self._batch(rows, rng, miner)

        # A row is (anchor, positive, hard negative or None); near-misses are their own positive.
        rows = [(a, b, None) for a, b in self.duplicates] + [(a, a, b) for a, b in self.near_misses]
        rng.shuffle(rows)
        if embed is not None and len(rows) >= 2 * self.batch_size:
            rows = self._by_topic(rows, embed([r[0] for r in rows]), number)
        waiting: list[tuple[str, str, str | None]] = []
        for a, b, negative in rows:
            waiting.append((a, b, negative) if negative or rng.random() < 0.5 else (b, a, None))
            if len(waiting) >= self.batch_size * 2:
                rows_now, waiting = self._fill(waiting)
                yield batch(rows_now)
        while waiting:  # the rest: batches may shrink where groups collide (a lone row still learns
            rows_now, waiting = self._fill(waiting)  # from its hard negative, if it has one)
            yield batch(rows_now)

    def _by_topic(self, rows: list[tuple], vectors: np.ndarray, number: int) -> list[tuple]:
        """Rows ordered cluster by cluster (clusters of about batch_size anchors)."""
        import faiss

        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        kmeans = faiss.Kmeans(vectors.shape[1], len(rows) // self.batch_size, niter=10,
                              seed=self.seed * 7919 + number, spherical=True, min_points_per_centroid=1)
        kmeans.train(vectors)
        cluster = kmeans.index.search(vectors, 1)[1][:, 0]
        return [rows[i] for i in np.argsort(cluster, kind="stable")]

    def _fill(self, waiting: list[tuple]) -> tuple[list[tuple], list[tuple]]:
        """Up to batch_size rows of distinct groups; the rest wait for the next batch."""
        taken, rest, used = [], [], set()
        for row in waiting:
            group = self.group[row[0]]
            if len(taken) < self.batch_size and group not in used:
                taken.append(row)
                used.add(group)
            else:
                rest.append(row)
        return taken, rest

    def _batch(self, rows: list[tuple], rng: random.Random, miner: NegativeMiner | None = None) -> Batch:
        negatives, scored = [], []
        for row, (a, b, negative) in enumerate(rows):
            options = ([(a, negative)] if negative else
                       [(a, n) for n in self.hard.get(a, [])] + [(b, n) for n in self.hard.get(b, [])])
            if options:
                x, n = rng.choice(options)
                negatives.append(n)
                margin = self._margin(a, b, x, n)
                if margin is not None:
                    scored.append((row, len(negatives) - 1, x != a, margin))
        if miner is not None:  # after the labelled ones, whose places ``scored`` holds
            negatives += miner.negatives([(a, b) for a, b, _ in rows])
        near_misses = rng.sample(self.labelled_near_misses, min(self.near_miss_pairs, len(self.labelled_near_misses)))
        targets = ([self.scores.get(frozenset((a, b)), 1.0) for a, b, _ in rows]
                   + [self.scores.get(frozenset(pair), 0.0) for pair in near_misses])
        return Batch(
            anchors=[r[0] for r in rows], positives=[r[1] for r in rows], negatives=negatives,
            anchor_groups=[self.group[r[0]] for r in rows], positive_groups=[self.group[r[1]] for r in rows],
            negative_groups=[self.group[n] for n in negatives], near_misses=near_misses, scored=scored,
            pair_targets=targets,
        )

    def _margin(self, a: str, b: str, x: str, n: str) -> float | None:
        """The teacher's t(x, p) - t(x, n) for the row (a, b) and x's negative n, where both are known."""
        positive, negative = self.scores.get(frozenset((a, b))), self.scores.get(frozenset((x, n)))
        return None if positive is None or negative is None else positive - negative


def _teacher_scores(pairs: Sequence[Pair]) -> dict[frozenset[str], float]:
    """P(duplicate) of each labelled pair where a teacher scored some of them (silver pairs carry
    its score; a gold pair's label is its score), else nothing: no teacher, no margin-MSE term."""
    if all(p.score is None for p in pairs):
        return {}
    return {frozenset((normalize(p.a), normalize(p.b))): float(p.label if p.score is None else p.score)
            for p in pairs}
