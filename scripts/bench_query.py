"""Query speed and encoder quality, side by side in one run: twin (torch, int8 ONNX) and txtai.

Three parts, each printing a table and (with --json) writing its figures:

``search``  In-process, through each tool's Python API, with the same packaged all-MiniLM-L6-v2:
            REFS QQP questions indexed (refs/s: encode + store + save), then QUERIES held-out
            questions, each a duplicate of one reference, asked one at a time (p50/p99 of encode +
            search) and recall@1 (the top hit is that reference). Each setup runs in its own process.
``encode``  Bulk encoding of N QQP questions at batch 64: sentence-transformers fp32, twin torch
            (bf16 where the CPU has it), ONNX fp32 (the same trace, not quantised) and twin's int8 ONNX.
``quality`` QQP dev (BiMPM, 10,000 pairs) for each model: accuracy at the model's tau, best-threshold
            accuracy, AP, and one-shot retrieval recall@1 (``twin eval-retrieval``), torch fp32 vs
            int8 ONNX; with the min / mean cosine between the two backends' vectors.
``steps``   Where one search's time goes in an existing index (``--index``, queries from ``--vectors``,
            a .npy): FAISS, the SQLite look-up of the candidates, the exact re-rank, and the whole
            ``VectorStore.search`` (with and without its float16 re-rank copy); and the look-up
            alone for fewer rows or without vectors.

    python scripts/bench_query.py search --json bench-out/query/search.json
    python scripts/bench_query.py encode --json bench-out/query/encode.json
    python scripts/bench_query.py quality --model bench-out/reproduce/qqp-minilm --json bench-out/query/quality.json
    python scripts/bench_query.py steps --index IX --vectors QUERIES.npy --json bench-out/query/steps.json

txtai is in the ``bench`` extra (pip install -e ".[bench]"); a setup whose package is missing is
reported as skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"
SETUPS = ("txtai", "twin-torch", "twin-onnx")


# -- data -------------------------------------------------------------------------------------
def qqp_pairs(data: Path) -> list[tuple[str, str, int]]:
    """(question1, question2, label) of the BiMPM dev split and the GLUE train sample."""
    pairs = []
    for path, width, first, label in ((data / "qqp-bimpm" / "dev.tsv", 4, 1, 0),
                                      (data / "qqp-glue-train-sample" / "new_dev.tsv", 6, 3, 5)):
        for line in path.read_text(encoding="utf-8").splitlines():
            fields = line.split("\t")
            if len(fields) == width and fields[label] in ("0", "1"):
                pairs.append((fields[first].strip(), fields[first + 1].strip(), int(fields[label])))
    return [p for p in pairs if p[0] and p[1]]


def workload(data: Path, refs: int, queries: int, seed: int = 0) -> tuple[list[str], list[str], list[int]]:
    """(references, queries, the reference index each query duplicates): each query's partner is
    among the references; no query text is."""
    from retrieval.text import normalize

    pairs = qqp_pairs(data)
    rng = random.Random(seed)
    duplicates = [(a, b) for a, b, label in pairs if label == 1 and normalize(a) != normalize(b)]
    rng.shuffle(duplicates)
    asked: dict[str, str] = {}
    for a, b in duplicates:
        if len(asked) == queries:
            break
        if normalize(a) not in asked and normalize(b) not in asked:
            asked[normalize(a)] = b
    partners = list(dict.fromkeys(asked.values()))
    seen = set(asked) | {normalize(b) for b in partners}
    others = []
    for a, b, _ in pairs:
        for text in (a, b):
            if normalize(text) not in seen:
                seen.add(normalize(text))
                others.append(text)
    rng.shuffle(others)
    references = partners + others[: refs - len(partners)]
    where = {normalize(t): i for i, t in enumerate(references)}
    return references, list(asked), [where[normalize(b)] for b in asked.values()]


def percentiles(seconds: list[float]) -> dict:
    ms = np.array(seconds) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2)}


# -- search -----------------------------------------------------------------------------------
def run_setup(setup: str, references: list[str], queries: list[str]) -> dict:
    """Build, then ask each query alone; returns timings and each query's top reference index."""
    folder = Path(tempfile.mkdtemp(prefix="twin-bench-query-"))
    if setup == "txtai":
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from txtai import Embeddings

        from retrieval.encoders import packaged_model_path

        start = time.perf_counter()
        tool = Embeddings(path=str(packaged_model_path()), backend="faiss")
        tool.index(list(references))
        tool.save(str(folder / "txtai"))
        build_s = time.perf_counter() - start

        def ask(text: str) -> int:
            found = tool.search(text, 1)
            return int(found[0][0]) if found else -1
    else:
        from retrieval.retriever import Item, Retriever

        start = time.perf_counter()
        tool = Retriever.create(folder / "index", backend=setup.split("-")[1])
        tool.add((Item(str(i), t) for i, t in enumerate(references)), progress=False)
        tool.save()
        build_s = time.perf_counter() - start

        def ask(text: str) -> int:
            found = tool.search([text], 1)[0].matches
            return int(found[0].id) if found else -1
    for text in queries[:20]:  # warm up
        ask(text)
    latencies, top = [], []
    for text in queries:
        t = time.perf_counter()
        top.append(ask(text))
        latencies.append(time.perf_counter() - t)
    return {"setup": setup, "refs": len(references), "queries": len(queries),
            "build_refs_per_s": round(len(references) / build_s, 1), **percentiles(latencies), "top": top}


def search_part(args: argparse.Namespace) -> list[dict]:
    references, queries, truth = workload(args.data, args.refs, args.queries)
    rows = []
    for setup in args.setups.split(","):
        out = Path(tempfile.mkdtemp()) / "row.json"
        done = subprocess.run([sys.executable, __file__, "_one", setup, "--refs", str(args.refs),
                               "--queries", str(args.queries), "--data", str(args.data), "--out", str(out)])
        if done.returncode or not out.is_file():
            rows.append({"setup": setup, "skipped": f"exit {done.returncode}"})
            continue
        row = json.loads(out.read_text())
        row["recall_at_1"] = round(float(np.mean(np.array(row.pop("top")) == np.array(truth))), 4)
        rows.append(row)
        print(json.dumps(row), flush=True)
    table(rows, ["setup", "build_refs_per_s", "p50_ms", "p99_ms", "recall_at_1", "skipped"],
          f"{args.refs:,} QQP references, {args.queries} held-out duplicate queries, one at a time, in-process")
    return rows


def one_part(args: argparse.Namespace) -> None:
    references, queries, _ = workload(args.data, args.refs, args.queries)
    try:
        row = run_setup(args.setup, references, queries)
    except ImportError as exc:
        print(f"{args.setup}: skipped ({exc})", file=sys.stderr)
        raise SystemExit(3) from None
    args.out.write_text(json.dumps(row))


# -- encode -----------------------------------------------------------------------------------
def encode_part(args: argparse.Namespace) -> list[dict]:
    from sentence_transformers import SentenceTransformer

    from retrieval.encoders import load_encoder, packaged_model_path
    from retrieval.encoders.onnxrt import OnnxEncoder, trace

    texts = list(dict.fromkeys(t for p in qqp_pairs(args.data) for t in p[:2]))[: args.n]
    plain = SentenceTransformer(str(packaged_model_path()), device="cpu", local_files_only=True)
    torch_encoder = load_encoder(backend="torch")
    int8 = load_encoder(backend="onnx")
    fp32_file = Path(tempfile.mkdtemp()) / "model.onnx"
    trace(packaged_model_path(), fp32_file)
    fp32 = OnnxEncoder(int8.path, int8.name, model_file=fp32_file)
    setups = [("sentence-transformers fp32", lambda t: plain.encode(t, batch_size=64, normalize_embeddings=True)),
              (f"twin torch ({torch_encoder.precision})", lambda t: torch_encoder.encode(t, 64)),
              ("ONNX fp32", lambda t: fp32.encode(t, 64)), ("twin ONNX int8", lambda t: int8.encode(t, 64))]
    rows, reference = [], None
    for name, encode in setups:
        encode(texts[:256])  # warm up
        start = time.perf_counter()
        vectors = encode(texts)
        seconds = time.perf_counter() - start
        reference = vectors if reference is None else reference
        cosines = (vectors * reference).sum(axis=1)
        rows.append({"setup": name, "texts": len(texts), "texts_per_s": round(len(texts) / seconds, 1),
                     "cos_to_fp32_min": round(float(cosines.min()), 4),
                     "cos_to_fp32_mean": round(float(cosines.mean()), 5)})
        print(json.dumps(rows[-1]), flush=True)
    for row in rows:
        row["speedup"] = round(row["texts_per_s"] / rows[0]["texts_per_s"], 2)
    table(rows, ["setup", "texts_per_s", "speedup", "cos_to_fp32_min", "cos_to_fp32_mean"],
          f"{len(texts):,} QQP questions, batch 64, {os.cpu_count()} cores")
    return rows


# -- quality ----------------------------------------------------------------------------------
def quality_part(args: argparse.Namespace) -> list[dict]:
    os.environ["TWIN_PRECISION"] = "fp32"
    from retrieval.encoders import load_encoder
    from retrieval.evaluate import pair_metrics, pair_scores, retrieval_metrics
    from retrieval.pairs import PairColumns, read_labelled
    from retrieval.retriever import DEFAULT_TAU
    from retrieval.text import normalize

    dev = read_labelled(args.data / "qqp-bimpm" / "dev.tsv", PairColumns("2", "3", "1", header=False)).pairs
    labels = np.array([p.label for p in dev])
    texts = sorted({normalize(t) for p in dev for t in (p.a, p.b)})
    rows = []
    for model in [None, *args.model]:
        vectors = {}
        for backend in ("torch", "onnx"):
            encoder = load_encoder(model, backend)
            tau = encoder.tau if encoder.tau is not None else DEFAULT_TAU
            metrics = pair_metrics(pair_scores(encoder, dev), labels, tau)
            found = retrieval_metrics(encoder, dev)
            vectors[backend] = encoder.encode(texts, 128)
            rows.append({"model": str(model or "packaged"),
                         "backend": "torch fp32" if backend == "torch" else "onnx int8",
                         "tau": round(tau, 4), "accuracy": round(metrics["accuracy"], 4),
                         "best_accuracy": round(metrics["best_accuracy"], 4),
                         "ap": round(metrics["average_precision"], 4), "recall_at_1": round(found["recall@1"], 4)})
            print(json.dumps(rows[-1]), flush=True)
        cosines = (vectors["torch"] * vectors["onnx"]).sum(axis=1)
        rows[-1].update(cos_min=round(float(cosines.min()), 4), cos_mean=round(float(cosines.mean()), 5))
    table(rows, ["model", "backend", "tau", "accuracy", "best_accuracy", "ap", "recall_at_1", "cos_min", "cos_mean"],
          f"QQP dev (BiMPM), {len(dev):,} pairs, {len(texts):,} distinct questions")
    return rows


# -- steps ------------------------------------------------------------------------------------
def steps_part(args: argparse.Namespace) -> list[dict]:
    from index import VectorStore
    from index.kinds import SearchKnobs
    from index.store import _ranked, one_thread_for_one_query

    store = VectorStore.open(args.index, read_only=True)
    queries = np.load(args.vectors).astype(np.float32)[: args.n]
    k = 10
    store.search(queries[:20], k)  # loads the index
    index, kind, meta = store._index, store._kind, store._meta
    fetch = k * max(1, kind.rerank)
    candidates = [kind.search(index, q[None], fetch, SearchKnobs())[0] for q in queries]
    one_thread_for_one_query(1)

    def timed(name: str, step) -> dict:  # noqa: ANN001
        seconds = []
        for q, found in zip(queries, candidates):
            start = time.perf_counter()
            step(q, found)
            seconds.append(time.perf_counter() - start)
        return {"step": name, **percentiles(seconds)}

    def rerank(q: np.ndarray, found: np.ndarray) -> None:
        _ranked(q, list(meta.records(found.tolist(), with_vectors=True).values()), k)

    rows = [timed(f"FAISS search ({kind.name}, {fetch} candidates)",
                  lambda q, f: kind.search(index, q[None], fetch, SearchKnobs())),
            timed(f"SQLite: {fetch} rows with vectors", lambda q, f: meta.records(f.tolist(), with_vectors=True)),
            timed(f"exact re-rank of {fetch}", rerank),
            timed(f"SQLite: {k} rows with vectors", lambda q, f: meta.records(f[:k].tolist(), with_vectors=True)),
            timed(f"SQLite: {k} rows, no vectors", lambda q, f: meta.records(f[:k].tolist(), with_vectors=False)),
            timed("VectorStore.search, whole", lambda q, f: store.search(q[None], k))]
    rows[2]["step"] += " (includes a second look-up)"
    if store._copy is not None:  # the same search re-ranking every candidate from SQLite instead
        copy, store._copy = store._copy, None
        rows.append(timed("VectorStore.search, whole, without the float16 copy", lambda q, f: store.search(q[None], k)))
        store._copy = copy
    table(rows, ["step", "p50_ms", "p99_ms"],
          f"one query at a time, {len(queries)} queries, {len(store):,} items, k={k}")
    store.close()
    return rows


# -- output -----------------------------------------------------------------------------------
def table(rows: list[dict], header: list[str], title: str) -> None:
    print(f"\n{title}\n")
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(row.get(h, "")) for h in header) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["search", "encode", "quality", "steps", "_one"])
    parser.add_argument("setup", nargs="?", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, default=DATA, help="the shared data folder (default: ../shared/data)")
    parser.add_argument("--refs", type=int, default=20_000, help="search: references indexed")
    parser.add_argument("--queries", type=int, default=600, help="search: held-out duplicate queries")
    parser.add_argument("--setups", default=",".join(SETUPS), help="search: setups to run, in order")
    parser.add_argument("--n", type=int, default=4000, help="encode: distinct QQP questions to encode; steps: queries")
    parser.add_argument("--model", type=Path, action="append", default=[],
                        help="quality: a fine-tuned model folder, besides the packaged model (repeatable)")
    parser.add_argument("--index", type=Path, help="steps: an index folder")
    parser.add_argument("--vectors", type=Path, help="steps: query vectors (.npy)")
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--json", dest="json_out", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    if args.part != "steps" and not (args.data / "qqp-bimpm" / "dev.tsv").is_file():
        raise SystemExit(f"{args.data}: no QQP data (qqp-bimpm/dev.tsv); give --data")
    if args.part == "_one":
        return one_part(args)
    rows = {"search": search_part, "encode": encode_part, "quality": quality_part, "steps": steps_part}[args.part](args)
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps({"part": args.part, "rows": rows, "argv": sys.argv[1:],
                                             "machine": f"{platform.machine()}, {os.cpu_count()} cores"}, indent=2))


if __name__ == "__main__":
    main()
