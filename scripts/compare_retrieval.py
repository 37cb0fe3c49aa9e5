"""Where two or more models' one-shot retrieval answers differ, query by query, for the analysis
of BENCHMARKS.md (issue 13, round 14): which queries each model's top hit gets right that the
first model's does not, whether a wrong top hit is a pair the file labels a non-duplicate (a
near-miss the training objective pushes away) or a question never paired with the query, and
whether wrong top hits pile onto a few hub questions.

    python scripts/compare_retrieval.py dev.tsv --model packaged --model M [--model M2] [--json OUT]

The queries, groups and ranking are ``twin eval-retrieval``'s (``retrieval.evaluate.retrieval_run``);
hit@1 is the share of queries whose top hit is in their group (recall@1 divides by the group's size).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from retrieval.encoders import Encoder, load_encoder  # noqa: E402
from retrieval.errors import TwinError  # noqa: E402
from retrieval.evaluate import RetrievalRun, retrieval_run  # noqa: E402
from retrieval.pairs import Pair, PairColumns, read_labelled  # noqa: E402
from retrieval.text import normalize  # noqa: E402


def open_inputs(pairs_path: Path, models: list[str], backend: str) -> tuple[list[Pair], list[Encoder]]:
    """The labelled pairs and each model ('packaged': the packaged MiniLM); a file or folder that
    cannot be read is one 'Error:' line and exit 1."""
    try:
        pairs = read_labelled(pairs_path, PairColumns()).pairs
        return pairs, [load_encoder(None if m == "packaged" else m, backend) for m in models]
    except (TwinError, OSError) as exc:
        raise SystemExit(f"Error: {exc}") from None


def top_hits(run: RetrievalRun) -> list[bool]:
    """For each query: is its nearest other question in its duplicate group?"""
    return [bool(ranked) and ranked[0] in relevant for relevant, ranked in zip(run.relevant, run.ranked)]


def summary(run: RetrievalRun, near_misses: set[tuple[str, str]]) -> dict:
    """hit@1, and what the wrong top hits are: labelled near-misses of the query, and how they pile up."""
    hits = top_hits(run)
    wrong = [(q, ranked[0]) for q, ranked, hit in zip(run.queries, run.ranked, hits) if not hit and ranked]
    piles = Counter(top for _, top in wrong)
    labelled = sum((run.questions[q], run.questions[top]) in near_misses for q, top in wrong)
    return {"hit@1": sum(hits) / max(1, len(hits)), "wrong": len(wrong),
            "wrong_labelled_non_duplicate": labelled / max(1, len(wrong)),
            "wrong_distinct": len(piles), "wrong_most_often": max(piles.values(), default=0)}


def differences(first: RetrievalRun, other: RetrievalRun, examples: int, seed: int) -> dict:
    """Counts of queries whose top hit is right for both, neither, or one of the two models, and
    ``examples`` of the queries only ``first`` gets right, with both models' top hits."""
    a, b = top_hits(first), top_hits(other)
    only_first = [k for k, (x, y) in enumerate(zip(a, b)) if x and not y]
    shown = random.Random(seed).sample(only_first, min(examples, len(only_first)))
    text = first.questions
    return {"both": sum(x and y for x, y in zip(a, b)), "neither": sum(not x and not y for x, y in zip(a, b)),
            "first_only": len(only_first), "other_only": sum(y and not x for x, y in zip(a, b)),
            "examples": [{"query": text[first.queries[k]], "first_top": text[first.ranked[k][0]],
                          "other_top": text[other.ranked[k][0]]} for k in sorted(shown)]}


def main() -> None:
    """Rank the queries with each model and print how their answers differ."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pairs", type=Path, help="labelled pairs (the file `twin eval-retrieval` reads)")
    parser.add_argument("--model", action="append", required=True,
                        help="a model folder, or 'packaged'; repeat it: each later one is compared with the first")
    parser.add_argument("--backend", default="onnx", choices=["onnx", "torch"], help="what runs the models")
    parser.add_argument("--examples", type=int, default=8, help="queries shown that only the first model gets right")
    parser.add_argument("--seed", type=int, default=0, help="which examples are shown")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    pairs, encoders = open_inputs(args.pairs, args.model, args.backend)
    runs = [retrieval_run(encoder, pairs) for encoder in encoders]
    near_misses = {(normalize(x), normalize(y)) for p in pairs if p.label == 0 for x, y in ((p.a, p.b), (p.b, p.a))}
    out = {"models": {m: summary(run, near_misses) for m, run in zip(args.model, runs)},
           "against_first": {m: differences(runs[0], run, args.examples, args.seed)
                             for m, run in zip(args.model[1:], runs[1:])}}
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
