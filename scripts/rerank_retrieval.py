"""Does a cross-encoder trained on the training pairs rank each query's nearest questions better
than a bi-encoder does? For issue 13's recall@1 (BENCHMARKS.md, round 20): each model's top
``--depth`` answers to `twin eval-retrieval`'s queries are scored by a cross-encoder (the mean of
P(duplicate) both ways round) and re-ranked by cosine + w x logit(P) for each ``--weights`` w, and
by the cross-encoder alone; recall@1 of each, how often the cross-encoder calls the bi-encoder's
top hit a duplicate where the labels say it is not one, and hit@1 with those counted.

    python scripts/rerank_retrieval.py dev.tsv --train train.tsv --save-teacher CE --model packaged --model M
    python scripts/rerank_retrieval.py dev.tsv --teacher CE --model packaged --depth 10 [--json OUT]

The cross-encoder is `twin train`'s teacher (``retrieval.training.teacher``: the packaged MiniLM
with a one-logit head, its epochs and rate), trained on ``--train`` less every pair that shares a
question with the evaluated file, or loaded from ``--teacher``. The queries, groups and ranking
are ``twin eval-retrieval``'s (``retrieval.evaluate.retrieval_run``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from retrieval.calibrate import best_threshold  # noqa: E402
from retrieval.encoders import Encoder, load_encoder, packaged_model_path  # noqa: E402
from retrieval.errors import TwinError  # noqa: E402
from retrieval.evaluate import RetrievalRun, average_precision, retrieval_run  # noqa: E402
from retrieval.pairs import Pair, PairColumns, drop_leaks, read_labelled  # noqa: E402
from retrieval.training.recipe import TEACHER_EPOCHS, TEACHER_LR  # noqa: E402
from retrieval.training.teacher import CrossEncoderTeacher  # noqa: E402


def both_ways(teacher: CrossEncoderTeacher, pairs: list[tuple[str, str]]) -> np.ndarray:
    """P(duplicate) of each pair, the mean of both orders (the teacher reads its two texts apart)."""
    if not pairs:
        return np.zeros(0, np.float32)
    return (teacher.label(pairs) + teacher.label([(b, a) for a, b in pairs])) / 2


def logit(p: np.ndarray) -> np.ndarray:
    """log(p / (1 - p)), clipped away from 0 and 1."""
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def reranked(run: RetrievalRun, depth: int, cosines: list[np.ndarray], probs: list[np.ndarray],
             weights: list[float], threshold: float) -> dict:
    """recall@1 of each query's top ``depth`` re-ranked by cosine + w x logit(P) for each w (0: the
    bi-encoder's own order) and by P alone; where the bi-encoder's top hit is not in the query's
    group, the share the cross-encoder calls a duplicate (P > ``threshold``); and the share of
    queries whose top hit is in the group or called a duplicate (hit@1 against labels the
    cross-encoder completes: it learnt from the same kind of pairs as a student, so it is no neutral judge)."""
    def recall_at_1(score) -> float:
        hits = [(top[int(np.argmax(score(c, p)))] in relevant) / len(relevant) if top else 0.0
                for relevant, top, c, p in zip(run.relevant, tops, cosines, probs)]
        return float(np.mean(hits)) if hits else 0.0

    tops = [ranked[:depth] for ranked in run.ranked]
    out = {f"cosine + {w} logit": recall_at_1(lambda c, p, w=w: c + w * logit(p)) for w in weights}
    out["cross-encoder alone"] = recall_at_1(lambda c, p: p)
    firsts = [(top[0] in relevant, p[0] > threshold) for relevant, top, p in zip(run.relevant, tops, probs) if top]
    wrong = [called for right, called in firsts if not right]
    out["wrong top hits it calls duplicates"] = float(np.mean(wrong)) if wrong else 0.0
    out["top hit labelled or called a duplicate"] = float(np.mean([r or c for r, c in firsts])) if firsts else 0.0
    return out


def rerank_model(encoder: Encoder, teacher: CrossEncoderTeacher, pairs: list[Pair], depth: int,
                 weights: list[float], threshold: float) -> dict:
    """One bi-encoder's queries, their top ``depth`` scored by ``teacher`` and re-ranked (``reranked``)."""
    run = retrieval_run(encoder, pairs, depth)
    flat = both_ways(teacher, [(run.questions[q], run.questions[c]) for q, top in zip(run.queries, run.ranked)
                               for c in top])
    ends = np.cumsum([0] + [len(top) for top in run.ranked])
    probs = [flat[a:b] for a, b in zip(ends[:-1], ends[1:])]
    cosines = [np.array(scores) for scores in run.scores]
    return {"queries": len(run.queries), **reranked(run, depth, cosines, probs, weights, threshold)}


def open_teacher(args: argparse.Namespace, evaluated: set[str]) -> CrossEncoderTeacher:
    """``--teacher``'s cross-encoder, or one trained on ``--train`` less the pairs that share a question
    with the evaluated file (saved to ``--save-teacher`` when given)."""
    if args.teacher:
        if not args.teacher.is_dir():
            raise TwinError(f"{args.teacher}: no such cross-encoder folder")
        return CrossEncoderTeacher(args.teacher)
    train, dropped = drop_leaks(read_labelled(args.train, PairColumns()).pairs, evaluated)
    print(f"teacher: {len(train)} pairs of {args.train}, {dropped} dropped for sharing a question with "
          f"{args.pairs}", file=sys.stderr)
    teacher = CrossEncoderTeacher(packaged_model_path(), seed=args.seed)
    teacher.train(train, TEACHER_EPOCHS, lr=TEACHER_LR, seed=args.seed)
    if args.save_teacher:
        teacher.save(args.save_teacher)
    return teacher


def main() -> None:
    """Score the pair file with the cross-encoder, then re-rank each model's answers with it."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pairs", type=Path, help="labelled pairs (the file `twin eval-retrieval` reads)")
    parser.add_argument("--model", action="append", required=True, help="a model folder, or 'packaged'; repeatable")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--teacher", type=Path, help="a cross-encoder folder (one --save-teacher wrote)")
    source.add_argument("--train", type=Path, help="labelled pairs to train the cross-encoder on")
    parser.add_argument("--save-teacher", type=Path, help="--train: also save the cross-encoder here")
    parser.add_argument("--depth", type=int, default=5, help="answers of each query re-ranked")
    parser.add_argument("--weights", default="0.01,0.02,0.05,0.1,0.2,0.5",
                        help="w of cosine + w x logit(P), comma-separated (0, the bi-encoder's order, is always in)")
    parser.add_argument("--seed", type=int, default=0, help="--train: the teacher's seed")
    parser.add_argument("--backend", default="onnx", choices=["onnx", "torch"], help="what runs the bi-encoders")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.depth < 1:
        raise SystemExit(f"Error: --depth {args.depth}: give 1 or more answers to re-rank")
    try:
        weights = sorted({0.0, *(float(w) for w in args.weights.split(","))})
        labelled = read_labelled(args.pairs, PairColumns())
        teacher = open_teacher(args, set(labelled.texts()))
        encoders = [load_encoder(None if m == "packaged" else m, args.backend) for m in args.model]
    except ValueError as exc:
        raise SystemExit(f"Error: --weights {args.weights}: {exc}") from None
    except (TwinError, OSError) as exc:
        raise SystemExit(f"Error: {exc}") from None
    pairs = labelled.pairs
    probs, labels = both_ways(teacher, [(p.a, p.b) for p in pairs]), np.array([p.label for p in pairs])
    threshold, accuracy = map(float, best_threshold(probs, labels))
    out = {"cross-encoder on the pairs": {"accuracy": accuracy, "ap": average_precision(probs, labels),
                                          "threshold": threshold},
           "models": {m: rerank_model(e, teacher, pairs, args.depth, weights, threshold)
                      for m, e in zip(args.model, encoders)}}
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
