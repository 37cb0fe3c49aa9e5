"""The groups self-join's searches on a Ray cluster: the same join index, its query batches
searched in parallel Ray tasks, then the same exact rescoring (``groups.join.self_join`` with
``searcher=search_on_ray``), so the pairs, and the groups, are those of the local ``twin groups``.

The join index is built once, by the driver, as the local join builds it (flat below 50,000
vectors, else IVF with 8-bit codes trained on a seeded sample); it and the vectors go into Ray's
object store once, and each task searches a range of rows against it.
"""

from __future__ import annotations

import faiss
import numpy as np

from ..groups.join import BATCH, Candidates, search_rows
from ..progress import Progress
from .cluster import RETRIES, one_line_errors


def search_on_ray(index: faiss.Index, vectors: np.ndarray, k: int, floor: float,
                  progress: bool = True) -> list[Candidates]:
    """Every row's ``k`` nearest above ``floor`` (a ``groups.join.Searcher``), one Ray task a batch."""
    import ray

    n = len(vectors)
    with one_line_errors():
        index_ref, vectors_ref = ray.put(faiss.serialize_index(index)), ray.put(vectors)
        search = ray.remote(max_retries=RETRIES)(_search_part)
        pending = {search.remote(index_ref, vectors_ref, start, min(start + BATCH, n), k, floor): start
                   for start in range(0, n, BATCH)}
        parts: dict[int, Candidates] = {}
        with Progress(n, "joining on Ray", "item", enabled=progress) as bar:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                start = pending.pop(done[0])
                parts[start] = ray.get(done[0])
                bar.update(min(BATCH, n - start))
    return [parts[s] for s in sorted(parts)]


def _search_part(index_bytes: np.ndarray, vectors: np.ndarray, start: int, stop: int, k: int,
                 floor: float) -> Candidates:
    """A Ray task: rows ``start:stop`` searched against the join index (its nprobe travels with it)."""
    return search_rows(faiss.deserialize_index(index_bytes), vectors, start, stop, k, floor)
