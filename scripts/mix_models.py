"""Two models' cosines mixed, as one encoder would give them, on labelled pairs: does an ensemble of
the packaged model and a fine-tuned one beat both (issue 13, BENCHMARKS.md round 15)?

    python scripts/mix_models.py dev.tsv --model packaged --model M [--weights 0,0.2,0.5,1] [--json OUT]

At weight w of the first model, each text's vector is the concatenation [sqrt(w) a, sqrt(1 - w) b]
of the two models' unit vectors a and b: a unit vector whose inner product with another is
w cos_a + (1 - w) cos_b, so FAISS ranks by the mixed cosine (an output-space ensemble, at the cost
of both encoders). Each weight is scored as `twin eval` (best-threshold accuracy, AP) and `twin
eval-retrieval` (recall@1, MRR@10) score a model; w = 1 and w = 0 are the two models alone.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from compare_retrieval import open_inputs  # noqa: E402

from retrieval.encoders import Encoder  # noqa: E402
from retrieval.evaluate import pair_metrics, pair_scores, retrieval_metrics  # noqa: E402
from retrieval.pairs import Pair  # noqa: E402
from retrieval.text import normalize  # noqa: E402


class Mixed(Encoder):
    """Fixed vectors of known texts: the weighted concatenation of two models' unit vectors."""

    def __init__(self, texts: list[str], first: np.ndarray, second: np.ndarray, weight: float) -> None:
        self.row = {t: i for i, t in enumerate(texts)}
        self.vectors = np.hstack([np.sqrt(weight) * first, np.sqrt(1 - weight) * second]).astype(np.float32)
        self.name = f"mix {weight:g}"

    @property
    def dimension(self) -> int:
        return int(self.vectors.shape[1])

    def encode(self, items: Sequence[str], batch_size: int = 64) -> np.ndarray:
        return self.vectors[[self.row[normalize(t)] for t in items]]


def mix_metrics(pairs: list[Pair], first: Encoder, second: Encoder, weights: Sequence[float]) -> list[dict]:
    """For each weight of ``first``: best-threshold accuracy, AP, recall@1 and MRR@10 on ``pairs``."""
    texts = sorted({normalize(t) for p in pairs for t in (p.a, p.b)})
    a, b = first.encode(texts, 128), second.encode(texts, 128)
    labels = np.array([p.label for p in pairs])
    rows = []
    for weight in weights:
        mixed = Mixed(texts, a, b, weight)
        pair = pair_metrics(pair_scores(mixed, pairs), labels, 0.5)
        ranked = retrieval_metrics(mixed, pairs)
        rows.append({"weight_first": weight, "accuracy": pair["best_accuracy"], "average_precision":
                     pair["average_precision"], "recall@1": ranked["recall@1"], "mrr@10": ranked["mrr@10"]})
    return rows


def main() -> None:
    """Score each mixing weight and print one line a weight (and the JSON file, where asked)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pairs", type=Path, help="labelled pairs (the file `twin eval` reads)")
    parser.add_argument("--model", action="append", required=True, help="a model folder or 'packaged'; twice")
    parser.add_argument("--weights", default="0,0.2,0.4,0.6,0.8,1", help="weights of the first model, comma-separated")
    parser.add_argument("--backend", default="onnx", choices=["onnx", "torch"], help="what runs the models")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    try:
        weights = [float(w) for w in args.weights.split(",")]
    except ValueError:
        raise SystemExit(f"Error: --weights {args.weights}: numbers between 0 and 1, comma-separated") from None
    if len(args.model) != 2 or not all(0 <= w <= 1 for w in weights):
        raise SystemExit("Error: give --model twice and --weights between 0 and 1")
    pairs, (first, second) = open_inputs(args.pairs, args.model, args.backend)
    rows = mix_metrics(pairs, first, second, weights)
    for row in rows:
        print(" ".join(f"{k} {v:.4f}" for k, v in row.items()))
    if args.json:
        args.json.write_text(json.dumps({"models": args.model, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
