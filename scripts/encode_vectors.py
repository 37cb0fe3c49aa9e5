"""Encode a corpus once into a .npy file of L2-normalised float32 vectors, for benchmarks.

The file is reused while the corpus, the model and the text normalisation are unchanged (a
``.json`` beside it records the corpus's SHA-256 and the model's fingerprint); otherwise it is
written anew. Identical texts (after normalisation) are encoded once and stored once: the rows are
the corpus's distinct texts in first-seen order.

    python scripts/encode_vectors.py --qqp ../shared/data -o bench-out/vectors/qqp-questions.npy
    python scripts/encode_vectors.py bench-out/groups/synthetic-1000000.parquet -o bench-out/vectors/synthetic-1m.npy
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from retrieval.text import normalize  # noqa: E402


def qqp_questions(data: Path) -> list[str]:
    """The questions of the shared QQP files: BiMPM dev (label, q1, q2, id) and the GLUE train
    sample (id, qid1, qid2, q1, q2, label; its one malformed row, with 5 fields, is skipped)."""
    texts: list[str] = []
    for path, width, first in ((data / "qqp-bimpm" / "dev.tsv", 4, 1),
                               (data / "qqp-glue-train-sample" / "new_dev.tsv", 6, 3)):
        for line in path.read_text(encoding="utf-8").splitlines():
            fields = line.split("\t")
            if len(fields) == width:
                texts += [fields[first], fields[first + 1]]
    return [t for t in texts if t.strip()]


def corpus_texts(path: Path, text_column: str | None) -> list[str]:
    """The texts of a twin corpus file (any format ``twin build`` reads)."""
    from retrieval.corpus import Columns, read_corpus

    return [row.text for row in read_corpus(path, Columns(text=text_column))]


def fingerprint(sources: list[Path], model: str | None) -> dict:
    """What the vectors depend on: the source files' SHA-256 and the model's fingerprint."""
    from retrieval.encoders import load_encoder

    digest = hashlib.sha256()
    for source in sources:
        with open(source, "rb") as f:
            while chunk := f.read(1 << 22):
                digest.update(chunk)
    return {"sources": [str(s) for s in sources], "sha256": digest.hexdigest(),
            "model": load_encoder(model).info().get("fingerprint")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", nargs="?", type=Path, help="a corpus file (CSV, TSV, JSONL, Parquet, text)")
    parser.add_argument("--qqp", type=Path, help="instead of a corpus: the shared data folder; encodes the "
                                                 "distinct questions of its QQP files")
    parser.add_argument("-o", "--out", type=Path, required=True, help="the .npy file to write")
    parser.add_argument("--model", default=None, help="model folder (default: the packaged model)")
    parser.add_argument("--text-column", default=None, help="the corpus's text column")
    parser.add_argument("--batch-size", type=int, default=64, help="texts a batch")
    args = parser.parse_args()
    if (args.corpus is None) == (args.qqp is None):
        parser.error("give a corpus file or --qqp DATA, not both")
    sources = ([args.qqp / "qqp-bimpm" / "dev.tsv", args.qqp / "qqp-glue-train-sample" / "new_dev.tsv"]
               if args.qqp else [args.corpus])
    key = fingerprint(sources, args.model)
    record = args.out.with_suffix(".json")
    if args.out.exists() and record.exists() and json.loads(record.read_text()).get("key") == key:
        print(f"{args.out}: up to date ({json.loads(record.read_text())['rows']:,} vectors)")
        return
    texts = qqp_questions(args.qqp) if args.qqp else corpus_texts(args.corpus, args.text_column)
    distinct = list(dict.fromkeys(normalize(t) for t in texts))
    from retrieval.encoders import load_encoder

    started = time.perf_counter()
    vectors = load_encoder(args.model).encode(distinct, args.batch_size)
    seconds = time.perf_counter() - started
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.save(args.out, vectors.astype(np.float32))
    summary = {"key": key, "rows": len(distinct), "texts": len(texts), "encode_s": round(seconds, 1),
               "texts_per_s": round(len(distinct) / seconds, 1)}
    record.write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
