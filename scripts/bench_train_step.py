"""Training's forward passes: one padded pass against chunks of like length, side by side.

Three timings on real QQP questions, each both ways in one run (``retrieval/training/lengths.py``):

- the transformer student's step: forward and backward over a batch's 128 texts (32 anchors, 32
  positives, 32 near-miss pairs), in one pass padded to the longest, or in chunks of 32;
- the cross-encoder teacher's step: forward and backward over 32 pairs, in one pass or chunks of 8;
- the teacher's labelling of N pairs, 128 a pass: both orders in file order, both orders sorted by
  length, and one order sorted by length (``CrossEncoderTeacher.label`` since round 13).

    python scripts/bench_train_step.py [--pairs ../shared/data/qqp-glue-train-sample/new_dev.tsv]
                                       [--steps 8] [--label 2048] [--json FILE]

The first step of each kind warms up and is not counted.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from retrieval.encoders import packaged_model_path  # noqa: E402
from retrieval.training.lengths import CHUNK, by_length  # noqa: E402
from retrieval.training.teacher import TRAIN_CHUNK, CrossEncoderTeacher  # noqa: E402
from retrieval.training.trainer import TransformerTrainable  # noqa: E402

DEFAULT_PAIRS = ROOT.parent / "shared" / "data" / "qqp-glue-train-sample" / "new_dev.tsv"


def read_pairs(path: Path) -> list[tuple[str, str]]:
    """(question1, question2) of each six-column row of a GLUE QQP TSV (id, qid1, qid2, question1,
    question2, is_duplicate), with a header row or none; malformed rows are skipped."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        return [(r[3], r[4]) for r in rows if len(r) == 6 and r[5] in ("0", "1")]


def seconds_a_step(step: Callable[[int], None], steps: int) -> float:
    """Mean seconds of ``step(i)`` over i = 1..steps, after step(0) as a warm-up."""
    step(0)
    start = time.perf_counter()
    for i in range(1, steps + 1):
        step(i)
    return (time.perf_counter() - start) / steps


def student(pairs: list[tuple[str, str]], steps: int, rng: random.Random) -> dict[str, float]:
    """Seconds a student step, one padded pass against chunks of like length."""
    trainable = TransformerTrainable(None, max_seq_length=64)
    trainable.module().train()
    texts = [t for pair in pairs for t in pair]
    batches = [rng.sample(texts, 128) for _ in range(steps + 1)]

    def run(embed: Callable[[list[str]], torch.Tensor]) -> Callable[[int], None]:
        def step(i: int) -> None:
            vectors = embed(batches[i])
            (vectors @ vectors.T).pow(2).mean().backward()
            trainable.module().zero_grad()
        return step
    return {"one_pass": seconds_a_step(run(trainable._embed), steps),
            f"chunks_of_{CHUNK}": seconds_a_step(run(trainable.embed), steps)}


def teacher(pairs: list[tuple[str, str]], steps: int, label: int,
            rng: random.Random) -> dict[str, dict[str, float]]:
    """Seconds a teacher step (one pass against chunks), and seconds to label ``label`` pairs."""
    model = CrossEncoderTeacher(packaged_model_path())
    model.model.train()
    batches = [rng.sample(pairs, 32) for _ in range(steps + 1)]

    def run(chunk: int) -> Callable[[int], None]:
        def step(i: int) -> None:
            model._logits([a for a, _ in batches[i]], [b for _, b in batches[i]], chunk).pow(2).mean().backward()
            model.model.zero_grad()
        return step
    step = {"one_pass": seconds_a_step(run(32), steps),
            f"chunks_of_{TRAIN_CHUNK}": seconds_a_step(run(TRAIN_CHUNK), steps)}
    model.model.eval()
    chosen = rng.sample(pairs, label)
    return {"teacher_step": step, "labelling": labelling(model, chosen)}


def labelling(model: CrossEncoderTeacher, chosen: list[tuple[str, str]]) -> dict[str, float]:
    """Seconds to label ``chosen``: both orders in file order (round 11), both orders sorted by
    length (round 12), and ``label`` as it is: one order, sorted by length (round 13)."""
    def both_orders(batches: list[list[int]]) -> float:
        start = time.perf_counter()
        with torch.inference_mode():
            for rows in batches:
                a, b = [chosen[i][0] for i in rows], [chosen[i][1] for i in rows]
                model._forward(a, b), model._forward(b, a)
        return time.perf_counter() - start

    in_order = [list(range(s, min(s + 128, len(chosen)))) for s in range(0, len(chosen), 128)]
    timings = {"file_order_both": both_orders(in_order),
               "by_length_both": both_orders(by_length([len(a) + len(b) for a, b in chosen], 128))}
    start = time.perf_counter()
    model.label(chosen)
    timings["by_length_one"] = time.perf_counter() - start
    return timings


def main() -> None:
    """Time both ways and print them side by side."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=Path, default=DEFAULT_PAIRS, help="a QQP TSV (question1, question2)")
    parser.add_argument("--steps", type=int, default=8, help="timed steps of each kind")
    parser.add_argument("--label", type=int, default=2048, help="pairs the teacher labels")
    parser.add_argument("--seed", type=int, default=0, help="which texts make the batches")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    if not args.pairs.is_file():
        sys.exit(f"{args.pairs}: no such file (pass --pairs)")
    pairs = read_pairs(args.pairs)
    rng = random.Random(args.seed)
    parts = {"student_step": student(pairs, args.steps, rng), **teacher(pairs, args.steps, args.label, rng)}
    for part, timings in parts.items():
        baseline = next(iter(timings.values()))
        for name, seconds in timings.items():
            print(f"{part:13} {name:12} {seconds:8.3f} s  {baseline / seconds:5.2f}x")
    if args.json:
        figures = {**parts, "threads": torch.get_num_threads(), "steps": args.steps, "label_pairs": args.label}
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
