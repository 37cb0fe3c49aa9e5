"""HTTP search throughput and latency: micro-batching on vs off, and the plain-loop floor.

Starts `twin serve` on 127.0.0.1 with and without micro-batching, for each encoder backend, over
an index of the demo corpus, drives it with CONCURRENCY clients (asyncio + httpx, one process) sending single-text
GET /search for DURATION seconds each, and compares with a plain in-process loop of
`SentenceTransformer.encode` + FAISS search, one query at a time. Client and server share the
machine's cores, as they would on one box.

    python scripts/bench_http.py --concurrency 32 --duration 20 --json bench-out/http.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from serving import ROOT, start_server

QUERIES = [line.strip() for line in (ROOT / "retrieval/demo/queries.txt").read_text().splitlines() if line.strip()]


def summary(name: str, latencies: list[float], seconds: float, errors: int = 0) -> dict:
    ms = np.array(latencies) * 1000
    return {"setup": name, "requests": len(latencies), "errors": errors, "rps": round(len(latencies) / seconds, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 1), "p99_ms": round(float(np.percentile(ms, 99)), 1)}


async def drive(base: str, concurrency: int, duration: float) -> tuple[list[float], int, float]:
    """``concurrency`` clients looping GET /search until ``duration`` runs out."""
    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + duration

    async def client(n: int, http: httpx.AsyncClient) -> None:
        nonlocal errors
        i = n
        while time.perf_counter() < stop:
            t = time.perf_counter()
            answer = await http.get("/search", params={"q": QUERIES[i % len(QUERIES)], "k": 5})
            if answer.status_code == 200:
                latencies.append(time.perf_counter() - t)
            else:
                errors += 1
            i += concurrency

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as http:
        start = time.perf_counter()
        await asyncio.gather(*(client(n, http) for n in range(concurrency)))
        return latencies, errors, time.perf_counter() - start


def serve_and_measure(index: Path, batching: bool, concurrency: int, duration: float, backend: str) -> dict:
    server, base = start_server(index, *([] if batching else ["--no-batching"]))
    try:
        asyncio.run(drive(base, concurrency, 2.0))  # warm up
        latencies, errors, seconds = asyncio.run(drive(base, concurrency, duration))
        result = summary(f"twin serve ({backend}), micro-batching {'on' if batching else 'off'}",
                         latencies, seconds, errors)
        lone, _, lone_s = asyncio.run(drive(base, 1, min(duration, 5.0)))
        result["lone_p50_ms"] = summary("", lone, lone_s)["p50_ms"]
        return result
    finally:
        server.terminate()
        server.wait(30)


def plain_loop(index: Path, duration: float) -> dict:
    """The floor: SentenceTransformer.encode + a FAISS flat search, one query after another."""
    import faiss
    from sentence_transformers import SentenceTransformer

    from retrieval.encoders import packaged_model_path

    faiss.omp_set_num_threads(1)
    model = SentenceTransformer(str(packaged_model_path()), device="cpu")
    texts = [line.split(",", 2)[1] for line in (ROOT / "retrieval/demo/faq.csv").read_text().splitlines()[1:]]
    flat = faiss.IndexFlatIP(384)
    flat.add(model.encode(texts, normalize_embeddings=True))
    latencies = []
    stop = time.perf_counter() + duration
    start = time.perf_counter()
    i = 0
    while time.perf_counter() < stop:
        t = time.perf_counter()
        vector = model.encode([QUERIES[i % len(QUERIES)]], normalize_embeddings=True, show_progress_bar=False)
        flat.search(vector, 5)
        latencies.append(time.perf_counter() - t)
        i += 1
    return summary("plain loop: encode + FAISS search, 1 at a time", latencies, time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent clients")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load per setup")
    parser.add_argument("--backends", default="onnx,torch",
                        help="encoder backends to serve with, in order (each: micro-batching on, then off)")
    parser.add_argument("--json", dest="json_out", default=None, help="also write the results here")
    args = parser.parse_args()

    rows = []
    for backend in args.backends.split(","):
        folder = Path(tempfile.mkdtemp(prefix="twin-http-")) / "index"
        subprocess.run([sys.executable, "-m", "retrieval.cli", "build", str(ROOT / "retrieval/demo/faq.csv"),
                        "--index", str(folder), "--backend", backend],
                       cwd=ROOT, check=True, stderr=subprocess.DEVNULL)
        rows += [serve_and_measure(folder, batching, args.concurrency, args.duration, backend)
                 for batching in (True, False)]
    rows.append(plain_loop(folder, args.duration))
    for row in rows:
        print(json.dumps(row), flush=True)
    header = ["setup", "requests", "errors", "rps", "p50_ms", "p99_ms", "lone_p50_ms"]
    print(f"\n{args.concurrency} concurrent clients, {args.duration:.0f} s each, single-text GET /search, k=5\n")
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(row.get(h, "")) for h in header) + " |")
    for on, off in zip(rows[:-1:2], rows[1:-1:2]):
        print(f"{on['setup']}: micro-batching speed-up {on['rps'] / off['rps']:.2f}x requests/s")
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps({
            "concurrency": args.concurrency, "duration_s": args.duration, "rows": rows,
            "machine": f"{platform.machine()}, {os.cpu_count()} cores"}, indent=2))


if __name__ == "__main__":
    main()
