"""tau selection on constructed scores, checked against an exhaustive search."""

from __future__ import annotations

import numpy as np
import pytest

from retrieval.calibrate import best_threshold


def exhaustive(scores, labels, objective):
    best = -1.0
    for tau in np.concatenate([[scores.min() - 1], scores]):
        pred = scores > tau
        tp = np.sum(pred & labels)
        fp = np.sum(pred & ~labels)
        fn = np.sum(~pred & labels)
        value = np.mean(pred == labels) if objective == "accuracy" else 2 * tp / max(2 * tp + fp + fn, 1)
        best = max(best, value)
    return best


def test_separable_scores_get_a_tau_between_the_classes():
    scores = np.array([0.2, 0.3, 0.35, 0.8, 0.9, 0.95])
    labels = np.array([0, 0, 0, 1, 1, 1])
    tau, acc = best_threshold(scores, labels)
    assert 0.35 < tau < 0.8 and acc == 1.0
    assert tau == pytest.approx((0.35 + 0.8) / 2)


@pytest.mark.parametrize("objective", ["accuracy", "f1"])
@pytest.mark.parametrize("seed", range(5))
def test_matches_exhaustive_search_with_ties(objective, seed):
    rng = np.random.default_rng(seed)
    labels = rng.random(200) < 0.4
    scores = np.round(rng.normal(labels * 0.3 + 0.5, 0.15), 2)  # rounding makes ties
    tau, value = best_threshold(scores, labels, objective)
    assert value == pytest.approx(exhaustive(scores, labels, objective))
    pred = scores > tau
    achieved = np.mean(pred == labels) if objective == "accuracy" else (
        2 * np.sum(pred & labels) / (np.sum(pred) + np.sum(labels)))
    assert achieved == pytest.approx(value)


def test_unknown_objective():
    with pytest.raises(ValueError, match="unknown objective"):
        best_threshold(np.array([0.1]), np.array([1]), "recall")
