"""Reproduce the evaluation table on the real labelled data in ../shared/data.

QQP: train on qqp-glue-train-sample (its one malformed row dropped; pairs sharing a question with
the BiMPM dev split dropped by `twin train`), calibrate tau and evaluate on qqp-bimpm/dev.tsv.
MRPC: train on GLUE's train split, calibrate on GLUE's dev split (both from the original train
file), evaluate on the original test file.
Rows: a bag-of-words TF-IDF cosine baseline, zero-shot MiniLM, fine-tuned MiniLM, siamese BiLSTM
(each with `twin train`'s defaults: the transformer with its cross-encoder teacher, 37-63 minutes
for QQP on 2 cores; the LSTM distilled from the packaged MiniLM), and the BiLSTM trained on the
fine-tuned MiniLM's silver pairs and distilled from it (`--silver`, `--distil-from`,
`--silver-epochs` 8). QQP took 104 minutes on 2 cores, MRPC 21 (BENCHMARKS.md).
Every model step runs the `twin` CLI; the commands are printed as they run.

    python scripts/reproduce_eval.py [--data ../shared/data] [--out bench-out/reproduce] [--json FILE]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from retrieval.calibrate import best_threshold  # noqa: E402
from retrieval.encoders import Encoder, packaged_model_path  # noqa: E402
from retrieval.evaluate import pair_metrics, pair_scores, retrieval_metrics  # noqa: E402
from retrieval.pairs import PairColumns, read_labelled  # noqa: E402

MRPC = PairColumns("#1 String", "#2 String", "Quality")
MINILM, LSTM = "MiniLM fine-tuned (defaults: a teacher)", "siamese BiLSTM (defaults: distilled)"
LSTM_SILVER = "siamese BiLSTM on the MiniLM's silver pairs, distilled from it"
MRPC_FLAGS = ["--first-column", "#1 String", "--second-column", "#2 String", "--label-column", "Quality"]


def twin(*args: str) -> str:
    """Run the twin CLI, echo the command, return stdout."""
    command = [sys.executable, "-m", "retrieval.cli", *map(str, args)]
    print("$ twin " + " ".join(f"'{a}'" if " " in str(a) or "#" in str(a) else str(a) for a in args), flush=True)
    return subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.PIPE, text=True).stdout


class TfidfEncoder(Encoder):
    """Bag-of-words baseline: TF-IDF weighted counts of the ``size`` most frequent training words,
    L2-normalised (Salton & Buckley, 1988)."""

    name = "tf-idf"

    def __init__(self, texts: list[str], size: int = 8192) -> None:
        docs = [set(self.tokens(t)) for t in texts]
        df = Counter(w for d in docs for w in d)
        words = sorted(w for w, _ in df.most_common(size))
        self.vocab = {w: i for i, w in enumerate(words)}
        self.idf = np.array([math.log((1 + len(docs)) / (1 + df[w])) + 1 for w in words], dtype=np.float32)

    @staticmethod
    def tokens(text: str) -> list[str]:
        return re.findall(r"\w+", text.lower())

    @property
    def dimension(self) -> int:
        return len(self.vocab)

    def encode(self, items, batch_size: int = 64) -> np.ndarray:  # noqa: ANN001
        out = np.zeros((len(items), len(self.vocab)), dtype=np.float32)
        for row, text in enumerate(items):
            for word, n in Counter(self.tokens(text)).items():
                if word in self.vocab:
                    out[row, self.vocab[word]] = n * self.idf[self.vocab[word]]
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        out[:, 0] += (norms[:, 0] == 0)  # an all-unknown text still gets a unit vector
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def clean_glue_sample(source: Path, target: Path) -> int:
    """Copy GLUE's QQP train sample with a header, dropping malformed rows; returns how many."""
    with open(source, encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    good = [r for r in rows if len(r) == 6 and r[5] in ("0", "1")]
    with open(target, "w", encoding="utf-8") as f:
        f.write("id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n")
        f.writelines("\t".join(r) + "\n" for r in good)
    return len(rows) - len(good)


def model_row(name: str, model: Path, test: Path, flags: list[str], seconds: float | None) -> dict:
    metrics = json.loads(twin("eval", test, "--model", model, "--json", *flags))
    retrieval = json.loads(twin("eval-retrieval", test, "--model", model, "--json", *flags))
    return {"model": name, **metrics, **retrieval, "train_s": seconds}


def baseline_row(train: Path, dev: Path, test: Path, columns: PairColumns) -> dict:
    train_pairs = read_labelled(train, columns).pairs
    encoder = TfidfEncoder([t for p in train_pairs for t in (p.a, p.b)])
    dev_pairs = read_labelled(dev, columns).pairs
    tau, _ = best_threshold(pair_scores(encoder, dev_pairs), np.array([p.label for p in dev_pairs]))
    test_pairs = read_labelled(test, columns).pairs
    metrics = pair_metrics(pair_scores(encoder, test_pairs), np.array([p.label for p in test_pairs]), tau)
    return {"model": "bag of words (TF-IDF cosine, 8k words)", **metrics, **retrieval_metrics(encoder, test_pairs),
            "train_s": None}


def trained_row(name: str, kind: str, train: Path, dev: Path, test: Path, out: Path, flags: list[str],
                extra: list[str]) -> dict:
    started = time.perf_counter()
    exclude = ["--exclude", test] if test != dev else []
    twin("train", train, "--out", out, "--encoder", kind, "--dev", dev, "--force", *exclude, *flags, *extra)
    return model_row(name, out, test, flags, round(time.perf_counter() - started, 1))


def from_student(model: Path) -> list[str]:
    """The flags that train a model on what ``model``'s teacher labelled, distilled from ``model``
    (at weight 30, which beat the default 10 there: BENCHMARKS.md, round 5)."""
    return ["--silver", str(model / "silver_pairs.jsonl"), "--distil-from", str(model), "--distil-weight", "30"]


def zero_shot_row(dev: Path, test: Path, out: Path, flags: list[str]) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(packaged_model_path(), out)  # a writable copy to hold its calibration
    twin("calibrate", dev, "--model", out, *flags)
    return model_row("MiniLM zero-shot", out, test, flags, None)


def table(title: str, rows: list[dict]) -> str:
    head = ("| model | accuracy | F1 | AP | ROC-AUC | tau | recall@1 | MRR@10 | train s |\n"
            "|---|---|---|---|---|---|---|---|---|")
    lines = [f"**{title}**", "", head]
    for r in rows:
        lines.append(f"| {r['model']} | {r['accuracy']:.4f} | {r['f1']:.4f} | {r['average_precision']:.4f} | "
                     f"{r['roc_auc']:.4f} | {r['threshold']:.3f} | {r['recall@1']:.4f} | {r['mrr@10']:.4f} | "
                     f"{r['train_s'] if r['train_s'] is not None else '-'} |")
    return "\n".join(lines)


def epochs_flag(epochs: int | None) -> list[str]:
    """``--epochs N`` where given, else nothing: `twin train`'s default."""
    return [] if epochs is None else ["--epochs", str(epochs)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data", help="shared data folder")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-out" / "reproduce", help="models and files")
    parser.add_argument("--epochs", type=int, default=None,
                        help="transformer epochs (default: twin train's own, 3 for QQP and MRPC)")
    parser.add_argument("--lstm-epochs", type=int, default=5, help="LSTM epochs (early stopping on dev)")
    parser.add_argument("--silver-epochs", type=int, default=8,
                        help="epochs of the LSTM on the MiniLM's silver pairs (8: BENCHMARKS.md, round 7)")
    parser.add_argument("--only", choices=["qqp", "mrpc"], default=None, help="run one data set")
    parser.add_argument("--json", dest="json_out", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[dict]] = {}

    if args.only in (None, "qqp"):
        train = args.out / "qqp-train.tsv"
        dropped = clean_glue_sample(args.data / "qqp-glue-train-sample" / "new_dev.tsv", train)
        print(f"qqp-glue-train-sample: {dropped} malformed row dropped", flush=True)
        dev = args.data / "qqp-bimpm" / "dev.tsv"
        results["qqp"] = [
            baseline_row(train, dev, dev, PairColumns()),
            zero_shot_row(dev, dev, args.out / "qqp-minilm-zero-shot", []),
            trained_row(MINILM, "transformer", train, dev, dev, args.out / "qqp-minilm",
                        [], epochs_flag(args.epochs)),
            trained_row(LSTM, "lstm", train, dev, dev, args.out / "qqp-lstm", [],
                        ["--epochs", str(args.lstm_epochs)]),
            trained_row(LSTM_SILVER, "lstm", train, dev, dev, args.out / "qqp-lstm-silver", [],
                        ["--epochs", str(args.silver_epochs), *from_student(args.out / "qqp-minilm")]),
        ]
        print(table("QQP (BiMPM dev, 10,000 pairs; tau calibrated on the same dev)", results["qqp"]), flush=True)
        _save(args.json_out, results)

    if args.only in (None, "mrpc"):
        mrpc = args.data / "mrpc"
        train, dev, test = mrpc / "glue" / "train.tsv", mrpc / "glue" / "dev.tsv", mrpc / "msr_paraphrase_test.txt"
        results["mrpc"] = [
            baseline_row(train, dev, test, MRPC),
            zero_shot_row(dev, test, args.out / "mrpc-minilm-zero-shot", MRPC_FLAGS),
            trained_row(MINILM, "transformer", train, dev, test, args.out / "mrpc-minilm",
                        MRPC_FLAGS, epochs_flag(args.epochs)),
            trained_row(LSTM, "lstm", train, dev, test, args.out / "mrpc-lstm", MRPC_FLAGS,
                        ["--epochs", str(args.lstm_epochs)]),
            trained_row(LSTM_SILVER, "lstm", train, dev, test, args.out / "mrpc-lstm-silver", MRPC_FLAGS,
                        ["--epochs", str(args.silver_epochs), *from_student(args.out / "mrpc-minilm")]),
        ]
        print(table("MRPC (test split, 1,725 pairs; tau calibrated on GLUE dev)", results["mrpc"]), flush=True)
        _save(args.json_out, results)

    for name, rows in results.items():
        print("\n" + table(name, rows))


def _save(path: Path | None, results: dict) -> None:
    """Write what is done so far (a later failure keeps the finished tables)."""
    if path:
        path.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
