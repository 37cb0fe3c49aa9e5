"""Several models' cosines mixed, as one encoder would give them, on labelled pairs: does an
ensemble of the packaged model and a fine-tuned one (or another model) beat each alone (issue 13,
BENCHMARKS.md rounds 15 and 19)?

    python scripts/mix_models.py dev.tsv --model packaged --model M [--weights 0,0.2,0.5,1] [--json OUT]
    python scripts/mix_models.py dev.tsv --model packaged --model M2 --model M --weights 0.5/0.5/0,0.25/0.25/0.5

With weights w_1..w_k (summing to 1), each text's vector is the concatenation [sqrt(w_1) v_1, ...,
sqrt(w_k) v_k] of the k models' unit vectors: a unit vector whose inner product with another is
sum_j w_j cos_j, so FAISS ranks by the mixed cosine (an output-space ensemble, at the cost of every
encoder). Two models take the first one's weight alone (w, then 1 - w); more take one
slash-separated weight a model for each mix. Each mix is scored as `twin eval` (best-threshold
accuracy, AP) and `twin eval-retrieval` (recall@1, MRR@10) score a model.
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
    """Fixed vectors of known texts: the weighted concatenation of several models' unit vectors."""

    def __init__(self, texts: list[str], vectors: Sequence[np.ndarray], weights: Sequence[float]) -> None:
        self.row = {t: i for i, t in enumerate(texts)}
        self.vectors = np.hstack([np.sqrt(w) * v for w, v in zip(weights, vectors, strict=True)]).astype(np.float32)
        self.name = "mix " + "/".join(f"{w:g}" for w in weights)

    @property
    def dimension(self) -> int:
        return int(self.vectors.shape[1])

    def encode(self, items: Sequence[str], batch_size: int = 64) -> np.ndarray:
        return self.vectors[[self.row[normalize(t)] for t in items]]


def mix_metrics(pairs: list[Pair], encoders: Sequence[Encoder], mixes: Sequence[Sequence[float]]) -> list[dict]:
    """For each mix (one weight a model): best-threshold accuracy, AP, recall@1 and MRR@10 on ``pairs``."""
    texts = sorted({normalize(t) for p in pairs for t in (p.a, p.b)})
    vectors = [e.encode(texts, 128) for e in encoders]
    labels = np.array([p.label for p in pairs])
    rows = []
    for weights in mixes:
        mixed = Mixed(texts, vectors, weights)
        pair = pair_metrics(pair_scores(mixed, pairs), labels, 0.5)
        ranked = retrieval_metrics(mixed, pairs)
        rows.append({"weights": list(weights), "accuracy": pair["best_accuracy"], "average_precision":
                     pair["average_precision"], "recall@1": ranked["recall@1"], "mrr@10": ranked["mrr@10"]})
    return rows


def parse_mixes(text: str, models: int) -> list[list[float]]:
    """``--weights``: for two models the first one's weights (``0,0.3,1``), for more one
    slash-separated weight a model a mix (``0.5/0.5/0,0.2/0.2/0.6``); each mix sums to 1."""
    try:
        mixes = [[float(w) for w in mix.split("/")] for mix in text.split(",")]
    except ValueError:
        raise SystemExit(f"Error: --weights {text}: numbers between 0 and 1, comma-separated") from None
    if models == 2:
        mixes = [[m[0], 1 - m[0]] if len(m) == 1 else m for m in mixes]
    for mix in mixes:
        if len(mix) != models or not all(0 <= w <= 1 for w in mix) or abs(sum(mix) - 1) > 1e-6:
            raise SystemExit(f"Error: --weights {text}: each mix needs {models} weights between 0 and 1 (a/b/...) "
                             "that sum to 1")
    return mixes


def main() -> None:
    """Score each mix and print one line a mix (and the JSON file, where asked)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pairs", type=Path, help="labelled pairs (the file `twin eval` reads)")
    parser.add_argument("--model", action="append", required=True, help="a model folder or 'packaged'; twice or more")
    parser.add_argument("--weights", default="0,0.2,0.4,0.6,0.8,1",
                        help="two models: weights of the first, comma-separated; more: a/b/... a mix")
    parser.add_argument("--backend", default="onnx", choices=["onnx", "torch"], help="what runs the models")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    if len(args.model) < 2:
        raise SystemExit("Error: give --model at least twice")
    mixes = parse_mixes(args.weights, len(args.model))
    pairs, encoders = open_inputs(args.pairs, args.model, args.backend)
    rows = mix_metrics(pairs, encoders, mixes)
    for row in rows:
        print("weights " + "/".join(f"{w:g}" for w in row["weights"]) + " "
              + " ".join(f"{k} {v:.4f}" for k, v in row.items() if k != "weights"))
    if args.json:
        args.json.write_text(json.dumps({"models": args.model, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
