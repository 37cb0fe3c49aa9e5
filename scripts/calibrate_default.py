"""Measure the default tau of the packaged all-MiniLM-L6-v2 on QQP dev (BiMPM split).

The packaged model has no calibration file (its folder lies in site-packages), so twin carries
the thresholds this script prints, one a backend (int8 ONNX vectors differ slightly from torch's),
as ``DEFAULT_TAUS``. Needs ../shared/data.

    python scripts/calibrate_default.py [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from retrieval.calibrate import best_threshold  # noqa: E402
from retrieval.encoders import BACKENDS, load_encoder  # noqa: E402
from retrieval.text import normalize  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"),
                        help="the shared data folder")
    args = parser.parse_args()
    path = Path(args.data) / "qqp-bimpm" / "dev.tsv"
    with open(path, encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    labels = np.array([int(r[0]) for r in rows])
    for backend in BACKENDS:
        encoder = load_encoder(backend=backend)
        a = encoder.encode([normalize(r[1]) for r in rows], batch_size=128)
        b = encoder.encode([normalize(r[2]) for r in rows], batch_size=128)
        scores = (a * b).sum(axis=1)
        for objective in ("accuracy", "f1"):
            tau, value = best_threshold(scores, labels, objective)
            print(f"{backend} ({getattr(encoder, 'precision', 'int8')}): {objective}: tau={tau:.4f} "
                  f"{objective}={value:.4f} on {len(rows)} pairs of {path}")


if __name__ == "__main__":
    main()
