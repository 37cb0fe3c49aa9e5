"""A tau chosen from a person's verdicts, with the same objectives as ``twin calibrate``.

The verdicts are labelled pairs whose cosines the index's encoder gave when they were judged;
``calibrate.best_threshold`` picks the tau that maximises the objective over them, and
``evaluate.pair_metrics`` reports accuracy, precision, recall and F1 at the index's tau now
("before") and at the new one ("after"). Verdicts scored by another encoder (the index was
rebuilt with another model since) are set aside: their cosines are of another space.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from ..calibrate import best_threshold, check_objective
from ..errors import TwinError
from ..evaluate import pair_metrics, plot
from .feedback import Verdict

#: Fewest verdicts of each kind (duplicate, not duplicate) a tau is learned from.
MIN_EACH = 10


class TooFewVerdicts(TwinError):
    """Not enough verdicts of each kind yet to learn tau from."""


@dataclass
class TauChoice:
    """The tau that maximises ``objective`` on the verdicts, against the index's tau now."""

    objective: str
    objective_value: float
    tau_before: float
    tau: float
    before: dict  #: pair metrics at ``tau_before``
    after: dict  #: pair metrics at ``tau``
    verdicts: dict  #: duplicate, not_duplicate (used), set_aside (scored by another encoder)
    scores: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    labels: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, bool))

    def to_dict(self) -> dict:
        """The JSON shape shared by ``twin calibrate --from-feedback --json`` and ``POST /tau/calibrate``."""
        return {"objective": self.objective, "objective_value": self.objective_value,
                "tau_before": self.tau_before, "tau": self.tau, "before": self.before, "after": self.after,
                "verdicts": self.verdicts}

    def plot_png(self) -> bytes:
        """Score histograms by verdict with the new tau marked, and the precision-recall curve (PNG)."""
        out = io.BytesIO()
        plot(self.scores, self.labels, self.tau, out, title=f"{len(self.labels)} verdicts")
        return out.getvalue()


def choose_tau(verdicts: Iterable[Verdict], encoder: str, tau_now: float, objective: str = "accuracy",
               min_each: int = MIN_EACH) -> TauChoice:
    """The tau for ``objective`` on the verdicts scored by ``encoder`` (a fingerprint);
    TooFewVerdicts when fewer than ``min_each`` of either kind are left; TwinError for an unknown
    objective."""
    try:
        check_objective(objective)
    except ValueError as exc:
        raise TwinError(str(exc)) from None
    scores, labels, set_aside = [], [], 0
    for verdict in verdicts:
        if verdict.encoder != encoder:
            set_aside += 1
            continue
        scores.append(verdict.score)
        labels.append(verdict.duplicate)
    s, y = np.array(scores, np.float64), np.array(labels, bool)
    counts = {"duplicate": int(y.sum()), "not_duplicate": int((~y).sum()), "set_aside": set_aside}
    if counts["duplicate"] < min_each or counts["not_duplicate"] < min_each:
        aside = f" ({set_aside} more were scored by another model and are set aside)" if set_aside else ""
        raise TooFewVerdicts(f"too few verdicts to learn tau from: {counts['duplicate']} duplicate and "
                        f"{counts['not_duplicate']} not duplicate{aside}; at least {min_each} of each are needed")
    tau, value = best_threshold(s, y, objective)
    return TauChoice(objective, value, float(tau_now), tau, pair_metrics(s, y, tau_now), pair_metrics(s, y, tau),
                     counts, s, y)
