"""Pair metrics, retrieval metrics and plots for a model on labelled pairs."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .calibrate import best_threshold
from .encoders import Encoder
from .pairs import Pair
from .text import normalize
from .training.batches import Groups


def pair_scores(encoder: Encoder, pairs: Sequence[Pair], batch_size: int = 128) -> np.ndarray:
    """Cosine similarity of each pair's two normalised texts (each distinct text encoded once)."""
    texts = sorted({normalize(t) for p in pairs for t in (p.a, p.b)})
    where = {t: i for i, t in enumerate(texts)}
    vectors = encoder.encode(texts, batch_size)
    a = vectors[[where[normalize(p.a)] for p in pairs]]
    b = vectors[[where[normalize(p.b)] for p in pairs]]
    return (a * b).sum(axis=1)


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """AP = sum_n (R_n - R_{n-1}) P_n over the distinct score thresholds, highest first: the area
    under the precision-recall step curve (as scikit-learn's average_precision_score)."""
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order].astype(bool)
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # the last index of each tie group
    tp = np.cumsum(y)[last]
    precision = tp / (last + 1)
    recall = tp / max(1, y.sum())
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC-AUC as the Mann-Whitney U statistic: P(score of a duplicate > score of a non-duplicate),
    ties counting one half (Hanley & McNeil, 1982)."""
    labels = labels.astype(bool)
    n_pos, n_neg = labels.sum(), (~labels).sum()
    if not n_pos or not n_neg:
        return float("nan")
    order = np.argsort(scores, kind="stable")
    ranks = np.empty(len(scores))
    s = scores[order]
    starts = np.r_[0, np.nonzero(np.diff(s))[0] + 1]
    ends = np.r_[starts[1:], len(s)]
    for start, end in zip(starts, ends):
        ranks[order[start:end]] = (start + end + 1) / 2  # average 1-based rank of the tie group
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def pair_metrics(scores: np.ndarray, labels: np.ndarray, tau: float) -> dict:
    """Accuracy, precision, recall and F1 of ``score > tau``; the best-threshold accuracy; AP; ROC-AUC."""
    labels = np.asarray(labels).astype(bool)
    predicted = scores > tau
    tp = int(np.sum(predicted & labels))
    fp = int(np.sum(predicted & ~labels))
    fn = int(np.sum(~predicted & labels))
    best_tau, best_acc = best_threshold(scores, labels, "accuracy")
    return {
        "n_pairs": int(len(labels)), "threshold": float(tau),
        "accuracy": float(np.mean(predicted == labels)),
        "precision": tp / (tp + fp) if tp + fp else 0.0, "recall": tp / (tp + fn) if tp + fn else 0.0,
        "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0,
        "best_threshold": best_tau, "best_accuracy": best_acc,
        "average_precision": average_precision(scores, labels), "roc_auc": roc_auc(scores, labels),
    }


def plot(scores: np.ndarray, labels: np.ndarray, tau: float, out: Path | BinaryIO, title: str = "") -> None:
    """Cosine histograms of duplicates and non-duplicates with tau marked, and the PR curve, as a
    PNG written to ``out`` (a path or a binary file)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = np.asarray(labels).astype(bool)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    bins = np.linspace(min(scores.min(), 0), 1, 60)
    left.hist(scores[~labels], bins=bins, alpha=0.6, label=f"not duplicate ({(~labels).sum()})")
    left.hist(scores[labels], bins=bins, alpha=0.6, label=f"duplicate ({labels.sum()})")
    left.axvline(tau, color="black", linestyle="--", label=f"tau = {tau:.3f}")
    left.set(xlabel="cosine similarity", ylabel="pairs", title="Scores by label")
    left.legend()
    order = np.argsort(-scores, kind="stable")
    tp = np.cumsum(labels[order])
    right.plot(tp / labels.sum(), tp / np.arange(1, len(scores) + 1))
    at = scores > tau
    right.scatter([np.sum(at & labels) / labels.sum()], [np.sum(at & labels) / max(1, at.sum())], color="black",
                  zorder=3, label=f"tau = {tau:.3f}")
    ap = average_precision(scores, labels)
    right.set(xlabel="recall", ylabel="precision", title=f"Precision-recall (AP {ap:.3f})",
              xlim=(0, 1), ylim=(0, 1.02))
    right.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if isinstance(out, Path):
        out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, format="png")
    plt.close(fig)


@dataclass
class RetrievalRun:
    """One model's answers to the one-shot retrieval queries of a pair file: ``questions`` are its
    distinct normalised texts, in ``n_groups`` duplicate groups; for each query (an index into
    ``questions``), ``relevant`` holds the rest of its group, ``ranked`` its nearest other
    questions, best first, and ``scores`` their cosines with it."""

    questions: list[str]
    n_groups: int
    queries: list[int]
    relevant: list[set[int]]
    ranked: list[list[int]]
    scores: list[list[float]] = field(default_factory=list)


def retrieval_run(encoder: Encoder, pairs: Sequence[Pair], depth: int = 10) -> RetrievalRun:
    """Index every distinct question of ``pairs`` and rank the ``depth`` nearest others of each
    question of a group of two or more; the groups are the connected components of the duplicate
    pairs."""
    from index import VectorStore

    groups = Groups()
    for p in pairs:
        a, b = normalize(p.a), normalize(p.b)
        groups.find(a), groups.find(b)
        if p.label == 1 and a != b:
            groups.union(a, b)
    group_of = groups.ids()
    questions = sorted(group_of)
    members: dict[int, set[int]] = {}
    for i, q in enumerate(questions):
        members.setdefault(group_of[q], set()).add(i)
    queries = [i for i, q in enumerate(questions) if len(members[group_of[q]]) > 1]
    with tempfile.TemporaryDirectory() as folder:
        store = VectorStore.create(Path(folder) / "ix", encoder.dimension, "flat")
        vectors = encoder.encode(questions, 128)
        store.add([str(i) for i in range(len(questions))], vectors)
        hits = store.search(vectors[queries], k=min(depth + 1, len(questions)))
        store.close()
    others = [[h for h in row if int(h.id) != query][:depth] for query, row in zip(queries, hits)]
    relevant = [members[group_of[questions[query]]] - {query} for query in queries]
    return RetrievalRun(questions, len(members), queries, relevant, [[int(h.id) for h in row] for row in others],
                        [[h.score for h in row] for row in others])


def retrieval_metrics(encoder: Encoder, pairs: Sequence[Pair], ks: Sequence[int] = (1, 5, 10)) -> dict:
    """The one-shot retrieval claim measured (``retrieval_run``): every distinct question is
    indexed; each question of a group of two or more is a query, scored against the rest of its
    group (itself excluded).

    recall@k = |relevant in top k| / |relevant|, MRR@10 = mean of 1 / rank of the first relevant
    hit within 10 (0 when none), over all queries."""
    run = retrieval_run(encoder, pairs, max(max(ks), 10))
    recalls = {k: [] for k in ks}
    reciprocal = []
    for relevant, ranked in zip(run.relevant, run.ranked):
        for k in ks:
            recalls[k].append(len(relevant & set(ranked[:k])) / len(relevant))
        first = next((r for r, i in enumerate(ranked[:10], 1) if i in relevant), None)
        reciprocal.append(1 / first if first else 0.0)
    out = {"n_questions": len(run.questions), "n_groups": run.n_groups, "n_queries": len(run.queries)}
    out.update({f"recall@{k}": float(np.mean(v)) if v else 0.0 for k, v in recalls.items()})
    out["mrr@10"] = float(np.mean(reciprocal)) if reciprocal else 0.0
    return out
