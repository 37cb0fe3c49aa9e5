"""Benchmark every index kind side by side on clustered, normalised vectors.

One store is filled once (SQLite + FAISS), then rebuilt as each kind in turn. For each kind:
build time (FAISS training + adding, vectors read back from SQLite), bytes per vector of the FAISS
index, single-query latency p50/p99 through ``VectorStore.search`` (FAISS + SQLite look-up + exact
re-rank), batch throughput, and recall@10 against exact brute-force search.

    python scripts/bench_index.py --n 1000000 --json bench-out/index.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from index import VectorStore  # noqa: E402


def clustered(n: int, dim: int, seed: int, latent: int = 64) -> np.ndarray:
    """``n`` unit vectors with the shape of real sentence embeddings: low intrinsic dimension
    (a ``latent``-d subspace) and nested clusters (n/1000 topics, n/20 subtopics, items around a
    subtopic), plus a little isotropic noise. Nearest neighbours have cosine ~0.86, random pairs ~0.
    (Isotropic noise in all 384 dimensions would make every neighbour equally far: uniform noise.)"""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((dim, dim)))[0][:, :latent].astype(np.float32)
    topics = rng.standard_normal((max(1, n // 1000), latent)).astype(np.float32)
    topics /= np.linalg.norm(topics, axis=1, keepdims=True)
    subs = max(1, n // 20)
    centres = topics[rng.integers(0, len(topics), subs)]
    centres += 0.5 * rng.standard_normal((subs, latent), dtype=np.float32) / np.sqrt(latent)
    labels = rng.integers(0, subs, n)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):
        part = labels[start : start + 100_000]
        z = centres[part] + 0.3 * rng.standard_normal((len(part), latent), dtype=np.float32) / np.sqrt(latent)
        out[start : start + len(part)] = z @ basis.T + 0.02 * rng.standard_normal((len(part), dim), dtype=np.float32)
    faiss.normalize_L2(out)
    return out


def exact_top(data: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Row numbers of the exact top-k of each query."""
    flat = faiss.IndexFlatIP(data.shape[1])
    flat.add(data)
    return flat.search(queries, k)[1]


def recall(found: list[list[str]], truth: np.ndarray) -> float:
    """Mean fraction of the true top-k found in the returned top-k."""
    hits = [len(set(f) & {str(t) for t in row}) / len(row) for f, row in zip(found, truth)]
    return float(np.mean(hits))


def measure(
    store: VectorStore, queries: np.ndarray, truth: np.ndarray, singles: int, k: int, knobs: dict
) -> dict:
    """Latency, throughput and recall of one built store with per-call knobs (nprobe, ef_search)."""
    faiss.omp_set_num_threads(1)  # one query: one thread is faster (docs: DESIGN.md, faiss#2731)
    store.search(queries[:5], k)  # warm up
    lat = []
    single_found = []
    for q in queries[:singles]:
        t = time.perf_counter()
        hits = store.search(q, k, **knobs)[0]
        lat.append(time.perf_counter() - t)
        single_found.append([h.id for h in hits])
    faiss.omp_set_num_threads(os.cpu_count())
    t = time.perf_counter()
    found = []
    for start in range(0, len(queries), 100):
        found += [[h.id for h in row] for row in store.search(queries[start : start + 100], k, **knobs)]
    batch_s = time.perf_counter() - t
    lat_ms = np.array(lat) * 1000
    return {
        "p50_ms": round(float(np.percentile(lat_ms, 50)), 3),
        "p99_ms": round(float(np.percentile(lat_ms, 99)), 3),
        "batch_qps": round(len(queries) / batch_s, 1),
        "recall_at_10": round(recall(found, truth), 4),
        "single_recall_at_10": round(recall(single_found, truth[:singles]), 4),
    }


#: Search-time settings measured for each kind (the defaults are nprobe=32, ef_search=64).
KNOBS = {
    "ivf-sq8": [{"nprobe": 8}, {"nprobe": 16}, {"nprobe": 32}, {"nprobe": 64}],
    "ivf-pq": [{"nprobe": 16}, {"nprobe": 32}, {"nprobe": 64}],
    "hnsw": [{"ef_search": 32}, {"ef_search": 64}, {"ef_search": 128}],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="vectors in the index")
    parser.add_argument("--dim", type=int, default=384, help="dimension")
    parser.add_argument("--queries", type=int, default=1000, help="queries for recall and throughput")
    parser.add_argument("--singles", type=int, default=300, help="queries timed one at a time")
    parser.add_argument("--kinds", default="flat,ivf-sq8,ivf-pq,hnsw,auto", help="comma-separated kinds")
    parser.add_argument("--folder", default=None, help="where to put the store (default: a temp dir)")
    parser.add_argument("--json", dest="json_out", default=None, help="also write the results here")
    args = parser.parse_args()
    k = 10

    t = time.perf_counter()
    data = clustered(args.n + args.queries, args.dim, seed=0)
    data, queries = data[: args.n], data[args.n :]
    truth = exact_top(data, queries, k)
    print(f"data: {args.n:,} x {args.dim} clustered, {args.queries} queries, "
          f"ground truth in {time.perf_counter() - t:.1f} s", flush=True)

    folder = Path(args.folder or tempfile.mkdtemp(prefix="twin-bench-"))
    store = VectorStore.create(folder, args.dim, "flat", force=True)
    t = time.perf_counter()
    ids = [str(i) for i in range(args.n)]
    for start in range(0, args.n, 50_000):
        store.add(ids[start : start + 50_000], data[start : start + 50_000])
    ingest_s = time.perf_counter() - t
    print(f"ingest (SQLite commit + flat add): {ingest_s:.1f} s = {args.n / ingest_s:,.0f} vectors/s", flush=True)

    rows = []
    for kind in args.kinds.split(","):
        t = time.perf_counter()
        store.rebuild(kind)
        build_s = time.perf_counter() - t
        size = len(faiss.serialize_index(store._index))
        name = kind if kind != "auto" else f"auto->{store.built_kind}"
        for knobs in KNOBS.get(kind, [{}]):
            row = {"kind": name, "knobs": " ".join(f"{a}={b}" for a, b in knobs.items()) or "default",
                   "build_s": round(build_s, 1), "bytes_per_vector": round(size / args.n, 1)}
            row.update(measure(store, queries, truth, args.singles, k, knobs))
            rows.append(row)
            print(json.dumps(row), flush=True)
    store.close()

    header = ["kind", "knobs", "build_s", "bytes_per_vector", "p50_ms", "p99_ms", "batch_qps", "recall_at_10"]
    print("\n| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(row[h]) for h in header) + " |")
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(
            {"n": args.n, "dim": args.dim, "ingest_s": round(ingest_s, 1), "machine": machine, "rows": rows},
            indent=2))


if __name__ == "__main__":
    main()
