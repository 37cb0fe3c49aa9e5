"""Benchmark every index kind side by side, on real vectors (``--vectors``) or synthetic ones.

One store is filled once (SQLite + FAISS), then rebuilt as each kind in turn. For each kind:
build time (FAISS training + adding, vectors read back from SQLite), bytes per vector of the FAISS
index, single-query latency p50/p99 through ``VectorStore.search`` (FAISS + SQLite look-up + exact
re-rank), batch throughput, and recall@10 against exact brute-force search.

    python scripts/bench_index.py --n 1000000 --json bench-out/index.json
    python scripts/bench_index.py --vectors bench-out/vectors/qqp-questions.npy --json bench-out/index-qqp.json

Each approximate kind is first measured with the search knob its build tuned for
``--target-recall`` (``tuned``), then at fixed values: the recall-vs-latency curve.
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
from index import BadVectorError, VectorStore, check_vectors  # noqa: E402


def clustered(n: int, dim: int, seed: int, latent: int = 256, spread: float = 1.0, noise: float = 0.02,
              loners: float = 0.15) -> np.ndarray:
    """``n`` unit vectors with the shape of sentence embeddings: low intrinsic dimension (a
    ``latent``-d subspace) and nested clusters (n/1000 topics, n/20 subtopics, items around a
    subtopic at ``spread``; a ``loners`` fraction belongs to no subtopic), plus isotropic
    ``noise``. The defaults are fitted (``scripts/fit_synthetic.py``) to the ivf-sq8 recall-vs-nprobe
    curve of 59k real MiniLM embeddings of QQP questions; the former defaults (latent 64, spread
    0.3, no loners) were far easier: recall@10 0.9998 at nprobe 8 where real vectors give 0.86."""
    rng = np.random.default_rng(seed)
    latent = min(latent, dim)
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
        z = centres[part] + spread * rng.standard_normal((len(part), latent), dtype=np.float32) / np.sqrt(latent)
        alone = rng.random(len(part)) < loners
        z[alone] = rng.standard_normal((int(alone.sum()), latent), dtype=np.float32) / np.sqrt(latent)
        out[start : start + len(part)] = z @ basis.T + noise * rng.standard_normal((len(part), dim), dtype=np.float32)
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


#: Search-time settings measured for each kind after its tuned default (the build picks nprobe or
#: ef_search for --target-recall; see index/tuning.py).
KNOBS = {
    "ivf-sq8": [{}, {"nprobe": 8}, {"nprobe": 16}, {"nprobe": 32}, {"nprobe": 64}, {"nprobe": 128},
                {"nprobe": 256}],
    "ivf-pq": [{}, {"nprobe": 16}, {"nprobe": 32}, {"nprobe": 64}, {"nprobe": 128}],
    "hnsw": [{}, {"ef_search": 16}, {"ef_search": 32}, {"ef_search": 64}, {"ef_search": 128}, {"ef_search": 256}],
}
KNOBS["hnsw-sq8"] = KNOBS["hnsw"]


def load_vectors(path: Path, dim: int | None = None) -> np.ndarray:
    """The float rows of a .npy file, L2-normalised, or SystemExit naming the file and the problem."""
    try:
        array = np.load(path, allow_pickle=False, mmap_mode="r")
    except FileNotFoundError:
        raise SystemExit(f"{path}: no such file") from None
    except (OSError, ValueError) as exc:
        raise SystemExit(f"{path}: not a NumPy .npy array ({exc})") from None
    if not np.issubdtype(array.dtype, np.floating):
        raise SystemExit(f"{path}: holds {array.dtype} values, expected float vectors")
    if array.ndim != 2 or not array.shape[0] or not array.shape[1]:
        raise SystemExit(f"{path}: has shape {array.shape}, expected (rows, dimension)")
    if dim is not None and array.shape[1] != dim:
        raise SystemExit(f"{path}: vectors of dimension {array.shape[1]}, expected {dim}")
    try:
        return check_vectors(array, array.shape[1])
    except BadVectorError as exc:
        raise SystemExit(f"{path}: {str(exc).replace('vector', 'row', 1)}") from None


def distinct_rows(vectors: np.ndarray) -> np.ndarray:
    """``vectors`` without exact repeats, first occurrences in order (ties make recall@k ambiguous)."""
    keys = np.ascontiguousarray(vectors).view(np.dtype((np.void, vectors.dtype.itemsize * vectors.shape[1])))
    _, first = np.unique(keys.ravel(), return_index=True)
    return vectors[np.sort(first)]


def dataset(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, str]:
    """(data, queries, description): synthetic, or from --vectors (queries from --queries or held
    out at random from the distinct rows)."""
    if args.vectors is None:
        data = clustered((args.n or 1_000_000) + args.n_queries, args.dim or 384, seed=0)
        n = len(data) - args.n_queries
        return data[:n], data[n:], f"{n:,} x {data.shape[1]} synthetic clustered"
    data = load_vectors(args.vectors, args.dim)
    total = len(data)
    data = distinct_rows(data)
    repeats = total - len(data)
    if args.queries is not None:
        queries = load_vectors(args.queries, data.shape[1])
    else:
        order = np.random.default_rng(0).permutation(len(data))
        queries, data = data[np.sort(order[: args.n_queries])], data[np.sort(order[args.n_queries:])]
    data = data[: args.n] if args.n else data
    return data, queries, (f"{len(data):,} x {data.shape[1]} from {args.vectors} ({total:,} rows, "
                           f"{repeats:,} exact repeats dropped)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=Path, default=None,
                        help="real vectors (.npy, float, one row each; scripts/encode_vectors.py makes them); "
                             "default: synthetic clustered vectors")
    parser.add_argument("--queries", type=Path, default=None,
                        help="query vectors (.npy); default: --n-queries rows held out of --vectors")
    parser.add_argument("--n", type=int, default=None, help="vectors in the index (default: 1M synthetic, "
                                                            "or every row of --vectors)")
    parser.add_argument("--dim", type=int, default=None, help="dimension (synthetic: 384; checked for --vectors)")
    parser.add_argument("--n-queries", type=int, default=1000, help="queries for recall and throughput")
    parser.add_argument("--singles", type=int, default=300, help="queries timed one at a time")
    parser.add_argument("--kinds", default="flat,ivf-sq8,ivf-pq,hnsw,hnsw-sq8,auto", help="comma-separated kinds")
    parser.add_argument("--target-recall", type=float, default=0.95, help="recall@10 the builds tune for")
    parser.add_argument("--folder", default=None, help="where to put the store (default: a temp dir)")
    parser.add_argument("--json", dest="json_out", default=None, help="also write the results here")
    args = parser.parse_args()
    if not 0 < args.target_recall <= 1:
        parser.error(f"--target-recall must be in (0, 1], got {args.target_recall}")
    k = 10

    t = time.perf_counter()
    data, queries, described = dataset(args)
    truth = exact_top(data, queries, k)
    n, dim = data.shape
    print(f"data: {described}, {len(queries)} queries, ground truth in {time.perf_counter() - t:.1f} s", flush=True)

    folder = Path(args.folder or tempfile.mkdtemp(prefix="twin-bench-"))
    store = VectorStore.create(folder, dim, "flat", force=True, target_recall=args.target_recall)
    t = time.perf_counter()
    ids = [str(i) for i in range(n)]
    for start in range(0, n, 50_000):
        store.add(ids[start : start + 50_000], data[start : start + 50_000])
    ingest_s = time.perf_counter() - t
    print(f"ingest (SQLite commit + flat add): {ingest_s:.1f} s = {n / ingest_s:,.0f} vectors/s", flush=True)

    rows = []
    for kind in args.kinds.split(","):
        t = time.perf_counter()
        store.rebuild(kind)
        build_s = time.perf_counter() - t
        size = len(faiss.serialize_index(store._index))
        name = kind if kind != "auto" else f"auto->{store.built_kind}"
        tuned = store.search_defaults
        for knobs in KNOBS.get(store.built_kind, [{}]):
            label = " ".join(f"{a}={b}" for a, b in knobs.items()) or (
                "exact" if "recall_at_10" not in tuned else
                f"tuned: {store._kind.knob}={tuned[store._kind.knob]} (sample recall {tuned['recall_at_10']})")
            row = {"kind": name, "knobs": label, "build_s": round(build_s, 1), "bytes_per_vector": round(size / n, 1)}
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
            {"data": described, "n": n, "dim": dim, "ingest_s": round(ingest_s, 1), "machine": machine,
             "target_recall": args.target_recall, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
