"""Choosing tau, the cosine above which a pair is called a duplicate."""

from __future__ import annotations

import numpy as np

OBJECTIVES = ("accuracy", "f1")


def best_threshold(scores: np.ndarray, labels: np.ndarray, objective: str = "accuracy") -> tuple[float, float]:
    """The tau maximising ``objective`` for the verdict ``score > tau``, and that objective's value.

    Candidates are the midpoints between consecutive distinct scores (plus one below the lowest),
    so tau never sits exactly on an observed score. accuracy = (TP + TN) / n;
    F1 = 2 TP / (2 TP + FP + FN) (van Rijsbergen, 1979).
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; choose one of {', '.join(OBJECTIVES)}")
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order]
    # Predicting the top i pairs positive, for i = 0..n: TP and FP counts.
    tp = np.concatenate([[0], np.cumsum(y)])
    fp = np.concatenate([[0], np.cumsum(~y)])
    positives, n = int(y.sum()), len(y)
    # A cut is only possible where the score changes (ties go together).
    cuts = np.concatenate([[0], np.nonzero(np.diff(s) != 0)[0] + 1, [n]])
    tp, fp = tp[cuts], fp[cuts]
    if objective == "accuracy":
        values = (tp + (n - positives - fp)) / n
    else:
        values = 2 * tp / np.maximum(2 * tp + fp + (positives - tp), 1)
    best = int(np.argmax(values))
    i = cuts[best]
    if i == 0:
        tau = s[0] + 1e-6 if n else 0.5
    elif i == n:
        tau = s[-1] - 1e-6
    else:
        tau = (s[i - 1] + s[i]) / 2
    return float(tau), float(values[best])
