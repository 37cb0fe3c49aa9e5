"""Choosing tau, the cosine above which a pair is called a duplicate."""

from __future__ import annotations

import numpy as np

OBJECTIVES = ("accuracy", "f1", "precision@R")


def best_threshold(scores: np.ndarray, labels: np.ndarray, objective: str = "accuracy") -> tuple[float, float]:
    """The tau maximising ``objective`` for the verdict ``score > tau``, and that objective's value.

    Candidates are the midpoints between consecutive distinct scores (plus one below the lowest and
    one above the highest), so tau never sits exactly on an observed score.
    accuracy = (TP + TN) / n; F1 = 2 TP / (2 TP + FP + FN) (van Rijsbergen, 1979);
    ``precision@R`` (e.g. ``precision@0.9``): the highest precision TP / (TP + FP) among the cuts
    whose recall TP / P is at least R.
    """
    min_recall = _min_recall(objective)
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
    elif objective == "f1":
        values = 2 * tp / np.maximum(2 * tp + fp + (positives - tp), 1)
    else:
        precision = tp / np.maximum(tp + fp, 1)
        values = np.where(tp >= min_recall * positives - 1e-9, precision, -1.0)
    best = int(np.argmax(values))
    i = cuts[best]
    if i == 0:
        tau = s[0] + 1e-6 if n else 0.5
    elif i == n:
        tau = s[-1] - 1e-6
    else:
        tau = (s[i - 1] + s[i]) / 2
    return float(tau), float(values[best])


def check_objective(objective: str) -> str:
    """``objective`` if it is one ``best_threshold`` knows; ValueError naming the choices otherwise."""
    _min_recall(objective)
    return objective


def _min_recall(objective: str) -> float:
    if objective in ("accuracy", "f1"):
        return 0.0
    name, _, value = objective.partition("@")
    try:
        recall = float(value)
    except ValueError:
        recall = -1.0
    if name != "precision" or not 0 < recall <= 1:
        raise ValueError(f"unknown objective {objective!r}; choose accuracy, f1 or precision@R with 0 < R <= 1")
    return recall


def calibrate_model(encoder, pairs, objective: str = "accuracy") -> dict:  # noqa: ANN001 - Encoder, pairs
    """tau for ``encoder`` on labelled ``pairs`` and the metrics at it (saved as the model's
    calibration file by ``save_calibration``)."""
    from .evaluate import pair_metrics, pair_scores

    scores = pair_scores(encoder, pairs)
    labels = np.array([p.label for p in pairs])
    tau, value = best_threshold(scores, labels, objective)
    return {"tau": tau, "objective": objective, "objective_value": value,
            "metrics": pair_metrics(scores, labels, tau)}


def save_calibration(folder, calibration: dict, source: str) -> None:  # noqa: ANN001 - Path
    """Write ``twin_calibration.json`` into a model folder."""
    import json
    from pathlib import Path

    from .encoders import CALIBRATION_FILE

    (Path(folder) / CALIBRATION_FILE).write_text(json.dumps({**calibration, "pairs": source}, indent=2))
