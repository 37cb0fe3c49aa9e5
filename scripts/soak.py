"""Soak: N clients mixing searches and upserts against a real `twin serve` for a given time.

Builds an index of ITEMS generated questions (unless --index is given: a copy of it is served),
starts `twin serve` on 127.0.0.1, and drives it with N asyncio clients: single-text GET and POST
searches of varied lengths (1-60 words, so the encoder sees many input shapes) and, with
probability --upsert-ratio, POST /items of 1-3 items that replace ids of the index (its size stays
put). Every --every seconds it prints requests, errors, 5xx, p50/p99 of that interval and the
server's RSS; at the end, RSS over the second half and whether it stayed within 10%.

    python scripts/soak.py --clients 32 --minutes 30 --json bench-out/soak.json
    python scripts/soak.py --clients 32 --minutes 4 --compare   # shape buckets on vs off, same run

``--compare`` runs the same load twice: with twin's input-shape buckets (the default) and with
them off (TWIN_SHAPE_BUCKETS=0, the behaviour before the fix), one after the other.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from serving import ROOT, rss_mib, start_server

WORDS = ("how what why when where which can do does is are should would I you we my your our the a an to of in "
         "for on with best way learn make get find use start stop fix change reset improve python money health "
         "travel sleep phone password account bank weight job career study exam code bug server data music").split()


def question(rng: random.Random, words: int) -> str:
    """A question-like text of ``words`` words."""
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "?"


def build_index(folder: Path, items: int) -> None:
    corpus = folder.parent / "soak.csv"
    rng = random.Random(0)
    corpus.write_text("id,text\n" + "".join(f"s{i},{question(rng, rng.randint(4, 20))}\n" for i in range(items)))
    subprocess.run([sys.executable, "-m", "retrieval.cli", "build", str(corpus), "--index", str(folder)], cwd=ROOT,
                   check=True, stderr=subprocess.DEVNULL)


class Tally:
    """Counts and latencies of one reporting interval, and of the whole run."""

    def __init__(self) -> None:
        self.requests = self.errors = self.server_errors = 0
        self.latencies: list[float] = []
        self.total_requests = self.total_errors = self.total_5xx = 0

    def record(self, status: int | None, seconds: float) -> None:
        self.requests += 1
        self.latencies.append(seconds)
        if status is None or status >= 400:
            self.errors += 1
        if status is None or status >= 500:
            self.server_errors += 1

    def flush(self) -> dict:
        ms = np.array(self.latencies or [0.0]) * 1000
        row = {"requests": self.requests, "errors": self.errors, "5xx": self.server_errors,
               "p50_ms": round(float(np.percentile(ms, 50)), 1), "p99_ms": round(float(np.percentile(ms, 99)), 1)}
        self.total_requests += self.requests
        self.total_errors += self.errors
        self.total_5xx += self.server_errors
        self.requests = self.errors = self.server_errors = 0
        self.latencies = []
        return row


async def client(n: int, http: httpx.AsyncClient, stop: float, upsert_ratio: float, items: int, tally: Tally) -> None:
    rng = random.Random(n)
    while time.monotonic() < stop:
        start = time.monotonic()
        try:
            roll = rng.random()
            if roll < upsert_ratio:
                batch = [{"id": f"s{rng.randrange(items)}", "text": question(rng, rng.randint(4, 30)),
                          "payload": {"by": n}} for _ in range(rng.randint(1, 3))]
                answer = await http.post("/items", json={"items": batch})
            elif roll < (1 + upsert_ratio) / 2:
                answer = await http.get("/search", params={"q": question(rng, rng.randint(1, 60)), "k": 5})
            else:
                answer = await http.post("/search", json={"texts": [question(rng, rng.randint(1, 60))], "k": 3})
            status = answer.status_code
        except httpx.HTTPError:
            status = None
        tally.record(status, time.monotonic() - start)


async def drive(base: str, pid: int, clients: int, seconds: float, every: float, upsert_ratio: float, items: int,
                label: str) -> list[dict]:
    tally = Tally()
    stop = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    rows: list[dict] = []
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as http:
        tasks = [asyncio.create_task(client(n, http, stop, upsert_ratio, items, tally)) for n in range(clients)]
        start = time.monotonic()
        while time.monotonic() < stop:
            await asyncio.sleep(min(every, max(0.0, stop - time.monotonic())))
            row = {"setup": label, "t_s": round(time.monotonic() - start), **tally.flush(),
                   "rss_mib": round(rss_mib(pid))}
            rows.append(row)
            print(json.dumps(row), flush=True)
        await asyncio.gather(*tasks)
    return rows


def verdict(rows: list[dict]) -> dict:
    """RSS over the second half of the run: first, last, min, max, and whether max <= 1.1 * min."""
    second = [r["rss_mib"] for r in rows[len(rows) // 2:]] or [0]
    return {"setup": rows[0]["setup"] if rows else "", "requests": sum(r["requests"] for r in rows),
            "errors": sum(r["errors"] for r in rows), "5xx": sum(r["5xx"] for r in rows),
            "rss_start_mib": rows[0]["rss_mib"] if rows else 0, "rss_end_mib": rows[-1]["rss_mib"] if rows else 0,
            "second_half_rss_min_mib": min(second), "second_half_rss_max_mib": max(second),
            "second_half_flat_within_10pct": max(second) <= 1.10 * min(second)}


def run(index: Path, args: argparse.Namespace, buckets: bool) -> tuple[list[dict], dict]:
    env = {**os.environ, "TWIN_SHAPE_BUCKETS": "1" if buckets else "0"}
    served = index.parent / f"served-{int(buckets)}"
    shutil.rmtree(served, ignore_errors=True)
    shutil.copytree(index, served)
    server, base = start_server(served, env=env)
    label = f"shape buckets {'on' if buckets else 'off'}"
    try:
        rows = asyncio.run(drive(base, server.pid, args.clients, args.minutes * 60, args.every, args.upsert_ratio,
                                 args.items, label))
        return rows, verdict(rows)
    finally:
        server.terminate()
        server.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients")
    parser.add_argument("--minutes", type=float, default=30.0, help="minutes of load (per setup with --compare)")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between report lines")
    parser.add_argument("--upsert-ratio", type=float, default=0.1, help="share of requests that are upserts")
    parser.add_argument("--items", type=int, default=2000, help="items in the generated index")
    parser.add_argument("--index", type=Path, default=None, help="serve a copy of this index instead")
    parser.add_argument("--compare", action="store_true", help="also run with shape buckets off (the old behaviour)")
    parser.add_argument("--json", dest="json_out", default=None, help="also write every row and the verdicts here")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="twin-soak-"))
    index = work / "index"
    if args.index:
        shutil.copytree(args.index, index)
    else:
        build_index(index, args.items)
    results = [run(index, args, True)] + ([run(index, args, False)] if args.compare else [])
    verdicts = [v for _, v in results]
    print(f"\n{args.clients} clients, {args.minutes:g} min, {args.upsert_ratio:.0%} upserts, {args.items} items\n")
    header = list(verdicts[0])
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for v in verdicts:
        print("| " + " | ".join(str(v[h]) for h in header) + " |")
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps({
            "clients": args.clients, "minutes": args.minutes, "upsert_ratio": args.upsert_ratio, "items": args.items,
            "machine": f"{platform.machine()}, {os.cpu_count()} cores", "verdicts": verdicts,
            "rows": [row for rows, _ in results for row in rows]}, indent=2))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
