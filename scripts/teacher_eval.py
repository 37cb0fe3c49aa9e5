"""A cross-encoder teacher for the bi-encoder (AugSBERT: Thakur et al., NAACL 2021), measured on QQP.

1. A cross-encoder is trained from the packaged MiniLM's weights (a new one-logit head) on the
   labelled QQP training pairs (those sharing a question with BiMPM dev dropped, as `twin train`
   drops them), with binary cross-entropy; its own dev accuracy and AP are reported.
2. Candidate pairs are mined among the *training* questions only (never dev): each question's
   ``--neighbours`` nearest other training questions by the packaged bi-encoder.
3. The teacher labels them (duplicate when its probability > its best-accuracy threshold on dev):
   silver pairs; silver duplicates that would chain groups past 8 texts are left out.
4. `twin train` trains the bi-encoder on gold + silver pairs, `--dev` as usual, and `twin eval`
   and `twin eval-retrieval` measure it on dev, beside the gold-only run's figures.

Steps 1-4 are what `twin train PAIRS --teacher cross-encoder` does (``training/teacher.py``); the
script runs them one by one to also measure the teacher alone on dev.

    python scripts/teacher_eval.py [--data ../shared/data] [--out bench-out/teacher] [--json FILE]
    python scripts/teacher_eval.py --epochs 3 --lr 4e-5 --teacher-only   # step 1 alone, at another rate

The product stays a bi-encoder + cosine + tau: the teacher only labels.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
from reproduce_eval import clean_glue_sample, twin  # noqa: E402

from retrieval.calibrate import best_threshold  # noqa: E402
from retrieval.encoders import load_encoder, packaged_model_path  # noqa: E402
from retrieval.evaluate import average_precision  # noqa: E402
from retrieval.pairs import Pair, drop_leaks, read_labelled  # noqa: E402
from retrieval.training.recipe import TEACHER_LR  # noqa: E402
from retrieval.training.teacher import CrossEncoderTeacher, bounded, mine  # noqa: E402


def write_pairs(rows: list[tuple[str, str, int]], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f, delimiter="\t")
        out.writerow(["question1", "question2", "is_duplicate"])
        out.writerows(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-out" / "teacher")
    parser.add_argument("--epochs", type=int, default=1, help="cross-encoder epochs")
    parser.add_argument("--neighbours", type=int, default=2, help="candidates mined a training question")
    parser.add_argument("--threshold", type=float, default=None,
                        help="silver duplicate when P > this (default: the teacher's best-accuracy one on dev)")
    parser.add_argument("--lr", type=float, default=TEACHER_LR, help="the cross-encoder's learning rate")
    parser.add_argument("--teacher-only", action="store_true", help="stop after scoring the teacher on dev")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    dev_path = args.data / "qqp-bimpm" / "dev.tsv"
    train_path = args.out / "qqp-train.tsv"
    clean_glue_sample(args.data / "qqp-glue-train-sample" / "new_dev.tsv", train_path)
    dev = read_labelled(dev_path)
    gold, dropped = drop_leaks(read_labelled(train_path).pairs, dev.texts())
    print(f"{len(gold):,} gold pairs ({dropped:,} dropped for sharing a question with dev)", flush=True)
    facts: dict = {"gold_pairs": len(gold)}

    started = time.perf_counter()
    teacher = CrossEncoderTeacher(packaged_model_path(), seed=args.seed)  # the steps of `twin train --teacher ...`
    teacher.train(gold, args.epochs, lr=args.lr, seed=args.seed)
    facts["teacher_train_s"] = round(time.perf_counter() - started, 1)
    scores = teacher.label([(p.a, p.b) for p in dev.pairs])  # the teacher alone, for the record
    labels = np.array([p.label for p in dev.pairs])
    threshold, accuracy = best_threshold(scores, labels)
    threshold = args.threshold if args.threshold is not None else float(threshold)
    facts["teacher_dev"] = {"accuracy": accuracy, "average_precision": average_precision(scores, labels),
                            "threshold": threshold}
    print(f"teacher on dev: {facts['teacher_dev']}", flush=True)
    if args.teacher_only:
        finish(facts, args.json)
        return

    started = time.perf_counter()
    candidates = mine(gold, load_encoder(), args.neighbours)
    print(f"mined {len(candidates):,} candidate pairs among the training questions", flush=True)
    silver_scores = teacher.label(candidates)
    labelled = [Pair(a, b, int(s > threshold)) for (a, b), s in zip(candidates, silver_scores)]
    silver = [(p.a, p.b, p.label) for p in bounded(labelled, gold)]
    facts["silver_left_out"] = len(labelled) - len(silver)
    facts["silver_pairs"] = len(silver)
    facts["silver_duplicates"] = int(sum(r[2] for r in silver))
    facts["label_s"] = round(time.perf_counter() - started, 1)
    augmented = args.out / "gold-silver.tsv"
    write_pairs([(p.a, p.b, p.label) for p in gold] + silver, augmented)

    student = args.out / "student"
    started = time.perf_counter()
    twin("train", augmented, "--out", student, "--dev", dev_path, "--teacher", "none", "--force")
    facts["student_train_s"] = round(time.perf_counter() - started, 1)
    facts["student_dev"] = json.loads(twin("eval", dev_path, "--model", student, "--json"))
    facts["student_retrieval"] = json.loads(twin("eval-retrieval", dev_path, "--model", student, "--json"))
    finish(facts, args.json)


def finish(facts: dict, path: Path | None) -> None:
    """Print the figures, and write them to ``path`` where given."""
    print(json.dumps(facts, indent=2))
    if path:
        path.write_text(json.dumps(facts, indent=2))


if __name__ == "__main__":
    main()
