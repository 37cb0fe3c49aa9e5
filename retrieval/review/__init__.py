"""Review: a person's verdicts on the pairs an index shows, and a tau learned from them.

``Reviewer`` is a sibling of ``Retriever`` (it wraps one): the review page of ``twin serve``,
``twin feedback export`` and ``twin calibrate --index`` all go through it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import TwinError
from ..retriever import Retriever
from ..tables import TableWriter
from .feedback import FEEDBACK_FILE, FeedbackStore, Verdict
from .groups import GroupBook, index_rows
from .tau import MIN_EACH, TauChoice, TooFewVerdicts, choose_tau

__all__ = ["FEEDBACK_FILE", "MIN_EACH", "FeedbackStore", "GroupBook", "Reviewer", "TauChoice", "TooFewVerdicts",
           "UnknownItem", "Verdict", "export_verdicts"]

#: Columns of an exported pairs file: those ``twin eval``, ``calibrate`` and ``train`` read first.
EXPORT_COLUMNS = ["question1", "question2", "is_duplicate", "id1", "id2", "score", "at"]


class UnknownItem(TwinError):
    """A verdict names an item the index does not hold."""


class Reviewer:
    """Records verdicts on pairs of an index (scored by the index's encoder), exports them as a
    pairs file, and learns the index's tau from them."""

    def __init__(self, retriever: Retriever) -> None:
        self.retriever = retriever
        self.feedback = FeedbackStore(retriever.store.folder, read_only=retriever.store.read_only)
        self.encoder = str(retriever.store.manifest.encoder.get("fingerprint") or retriever.encoder.name)

    def close(self) -> None:
        """Close the verdicts' file (the retriever stays open)."""
        self.feedback.close()

    def judge(self, item_id: str, duplicate: bool, query: str | None = None, query_id: str | None = None,
              query_image: bytes | None = None, query_name: str = "uploaded image") -> Verdict:
        """Store a person's verdict on the pair (the query, or the stored item ``query_id``, or
        the image ``query_image``; the stored item ``item_id``), scored by the index's encoder
        as a search would score it. UnknownItem when an id is not stored; nothing is stored then."""
        if sum(x is not None for x in (query, query_id, query_image)) != 1:
            raise TwinError("give exactly one of query, query_id and query_image")
        found = self.retriever.store.records_of([i for i in (item_id, query_id) if i is not None])
        for name in (item_id, query_id):
            if name is not None and name not in found:
                raise UnknownItem(f"no item {name!r} in the index")
        if query_id == item_id:
            raise TwinError(f"a pair of the item {item_id!r} with itself")
        item = found[item_id]
        if query_id is not None:
            a_text, vector = found[query_id].text or query_id, found[query_id].vector
        elif query is not None:
            a_text, vector = query, self.retriever.encode_queries([query])[0]
        else:
            a_text, vector = query_name, self.retriever.encode_images([query_image], [query_name])[0]
        score = float(np.dot(np.asarray(vector, np.float32), item.vector))
        return self.feedback.record(Verdict(query_id, a_text, item_id, item.text or item_id, round(score, 6),
                                            bool(duplicate), self.encoder))

    def choose_tau(self, objective: str = "accuracy", min_each: int = MIN_EACH) -> TauChoice:
        """The tau the verdicts call for (see ``tau.choose_tau``), against the index's tau now."""
        return choose_tau(self.feedback.all(), self.encoder, self.retriever.tau, objective, min_each)

    def set_tau(self, tau: float) -> None:
        """Write ``tau`` to the index's manifest (the index's writer only)."""
        self.retriever.store.set_tau(tau)

    def export(self, path: Path | None) -> int:
        """Write every verdict as a labelled pairs file (see ``export_verdicts``)."""
        return export_verdicts(self.feedback, path)

    def compute_groups(self, threshold: float | None = None, linkage: str = "star") -> GroupBook:
        """The duplicate groups among the index's own items (its vectors reused, nothing encoded)."""
        from ..groups import Grouper

        tau = self.retriever.tau if threshold is None else float(threshold)
        grouper = Grouper(self.retriever.encoder, tau, self.retriever.store)  # not closed: the store is ours
        grouping = grouper.group(index_rows(self.retriever.store), linkage, progress=False)
        return GroupBook.of_grouping(grouping, f"computed from the index at cosine > {tau:.4f} with {linkage} linkage")

    def __enter__(self) -> Reviewer:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def export_verdicts(feedback: FeedbackStore, path: Path | None) -> int:
    """Write every verdict, oldest first, as a labelled pairs file (CSV, TSV, JSONL or Parquet by
    suffix; None: CSV on stdout) that ``twin eval``, ``calibrate`` and ``train`` read; returns how many."""
    written = 0
    with TableWriter(path, EXPORT_COLUMNS, {"is_duplicate": int, "score": float}) as out:
        for v in feedback.all():
            out.write({"question1": v.a_text, "question2": v.b_text, "is_duplicate": int(v.duplicate),
                       "id1": v.a_id, "id2": v.b_id, "score": v.score, "at": v.at})
            written += 1
    return written
