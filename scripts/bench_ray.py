"""The same corpus built locally and on Ray, side by side: wall time of each stage, Ray's overhead
at equal cores, and whether the results are the same.

    python scripts/bench_ray.py --n 200000 [--repeat 2] [--shard-items 50000] [--groups] [--json]

The corpus is ``make_corpus.py``'s synthetic questions (made once under ``--out``; needs
../shared/data for its QQP fit). Each build runs as a user runs it, in its own process:
``twin build CORPUS --json`` (local), the same with ``--ray`` (a local Ray runtime on this
machine's cores: one index folder), and with ``--ray --shard-items`` (a sharded index).
``--groups`` also times ``twin groups`` with and without ``--ray`` and compares the outputs.
``--repeat N`` alternates N local and N Ray builds and reports the median of each (this machine's
speed wanders by about 10% from one run to the next).

Checks: the same ids, texts and payloads in every index; the cosine of each item's vector in one
index to its vector in the other; recall@10 of 1,000 items' own vectors as queries against the
exact top 10 (brute force over every vector), for each index: the Ray indexes must be within
0.01 of the local one. No speed-up is expected on one machine: the point is that the command
scales out unchanged; the overhead is what Ray costs where it brings nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OUT = ROOT / "bench-out" / "ray"


def corpus(n: int, out: Path) -> Path:
    """A ``make_corpus.py`` corpus of ``n`` questions (made once, then reused)."""
    path = out / f"synthetic-{n}.parquet"
    if not path.exists():
        out.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, str(ROOT / "scripts" / "make_corpus.py"), "--n", str(n), str(path)],
                       check=True)
    return path


def twin(*args: str) -> dict:
    """Run a twin command with ``--json`` as a user would; its JSON, and its wall time."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "retrieval.cli", *args, "--json"], capture_output=True,
                          text=True, cwd=ROOT)
    if done.returncode:
        sys.exit(f"twin {' '.join(args)} failed: {done.stderr.strip().splitlines()[-1:]}")
    facts = json.loads(done.stdout.strip().splitlines()[-1])
    facts["wall_s"] = round(time.perf_counter() - started, 1)
    return facts


def median_run(runs: list[dict]) -> dict:
    """The run of median wall time (the lower middle one of an even count)."""
    return sorted(runs, key=lambda r: r["wall_s"])[(len(runs) - 1) // 2]


def contents(folder: Path, ids: list[str]) -> tuple[list[tuple], np.ndarray]:
    """(text, payload) and the vector of each of ``ids``, from an index (sharded or not)."""
    from index import open_store

    rows, vectors = [], []
    with open_store(folder, read_only=True) as store:
        for start in range(0, len(ids), 20_000):
            part = ids[start:start + 20_000]
            found = store.records_of(part)
            missing = [i for i in part if i not in found]
            if missing:
                sys.exit(f"{folder}: lacks {len(missing)} ids, e.g. {missing[:3]}")
            rows += [(found[i].text, found[i].payload) for i in part]
            vectors.append(np.stack([found[i].vector for i in part]))
    return rows, np.concatenate(vectors)


def recall_at_10(folder: Path, queries: np.ndarray, truth: np.ndarray) -> float:
    """Recall@10 of ``folder``'s answers against the exact top-10 scores (ties count as found)."""
    from index import open_store

    with open_store(folder, read_only=True) as store:
        found = [[h.score for h in row] for row in store.search(queries, 10)]
    return round(float(np.mean([sum(s >= t[-1] - 1e-5 for s in f) / 10 for t, f in zip(truth, found)])), 4)


def exact_top10(vectors: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """The 10 best scores of each query over ``vectors`` (brute force)."""
    scores = queries @ vectors.T
    return -np.sort(-np.partition(scores, -10, axis=1)[:, -10:], axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200_000, help="items in the synthetic corpus")
    parser.add_argument("--shard-items", type=int, default=None,
                        help="also build a sharded index with shards of this many items (default n/4; 0: skip)")
    parser.add_argument("--groups", action="store_true", help="also time twin groups with and without --ray")
    parser.add_argument("--repeat", type=int, default=1,
                        help="build locally and with --ray this many times each, alternating; the median is reported")
    parser.add_argument("--out", type=Path, default=OUT, help="where the corpus and indexes go")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object")
    args = parser.parse_args()
    if args.n < 1000 or args.repeat < 1:
        parser.error("--n must be at least 1000 and --repeat at least 1")
    shard_items = args.n // 4 if args.shard_items is None else args.shard_items

    path = corpus(args.n, args.out)
    runs = [("local", []), ("ray", ["--ray"])] * args.repeat
    if shard_items:
        runs.append(("ray sharded", ["--ray", "--shard-items", str(shard_items)]))
    tries: dict[str, list[dict]] = {}
    for name, flags in runs:  # local and ray alternate, so that a slow spell of the machine hits both
        folder = args.out / f"index-{name.replace(' ', '-')}"
        facts = twin("build", str(path), "--index", str(folder), "--force", *flags)
        facts["folder"] = str(folder)
        tries.setdefault(name, []).append(facts)
        print(f"{name}: {facts['wall_s']} s {facts['seconds']}", file=sys.stderr)
    built = {name: median_run(runs) for name, runs in tries.items()}

    import pyarrow.parquet as pq

    ids = [str(i) for i in pq.read_table(path, columns=["id"]).column("id").to_pylist()]
    ids = list(dict.fromkeys(ids))
    base_rows, base_vectors = contents(Path(built["local"]["folder"]), ids)
    queries = base_vectors[np.random.default_rng(0).choice(len(ids), 1000, replace=False)]
    truth = exact_top10(base_vectors, queries)
    checks = {}
    for name, facts in built.items():
        rows, vectors = contents(Path(facts["folder"]), ids)
        checks[name] = {"same_items": rows == base_rows,
                        "min_cosine_to_local": round(float(np.einsum("ij,ij->i", vectors, base_vectors).min()), 5),
                        "recall_at_10": recall_at_10(Path(facts["folder"]), queries, truth)}
    local_s = built["local"]["wall_s"]
    result = {"n": args.n, "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
              "builds": built, "checks": checks, "walls": {n: [t["wall_s"] for t in r] for n, r in tries.items()},
              "overhead": {name: round(f["wall_s"] / local_s - 1, 3) for name, f in built.items()}}
    if args.groups:
        result["groups"] = groups(path, args.out)
    shutil.rmtree(args.out / "tmp", ignore_errors=True)
    report(result)
    if args.json:
        print(json.dumps(result))


def groups(path: Path, out: Path) -> dict:
    """``twin groups`` locally and with --ray: wall time of each stage, and whether the outputs match."""
    local = twin("groups", str(path), "-o", str(out / "groups-local.parquet"))
    on_ray = twin("groups", str(path), "-o", str(out / "groups-ray.parquet"), "--ray")
    same = (out / "groups-local.parquet").read_bytes() == (out / "groups-ray.parquet").read_bytes()
    return {"local": local, "ray": on_ray, "same_output": same,
            "overhead": round(on_ray["wall_s"] / local["wall_s"] - 1, 3)}


def report(result: dict) -> None:
    """The side-by-side table on stderr."""
    names = list(result["builds"])
    stages = list(dict.fromkeys(s for f in result["builds"].values() for s in f["seconds"]))
    width = 14
    lines = [f"{result['n']:,} items on {result['machine']}; wall times of each try: {result['walls']}",
             "stage".ljust(18) + "".join(n.rjust(width) for n in names)]
    for stage in stages:
        lines.append(stage.ljust(18) + "".join(str(result["builds"][n]["seconds"].get(stage, "-")).rjust(width)
                                               for n in names))
    rows = [("wall (process)", lambda n: result["builds"][n]["wall_s"]),
            ("overhead", lambda n: f"{result['overhead'][n]:+.1%}"),
            ("kind", lambda n: result["builds"][n]["kind"].replace(" shards", "")),
            ("same items", lambda n: result["checks"][n]["same_items"]),
            ("min cosine", lambda n: result["checks"][n]["min_cosine_to_local"]),
            ("recall@10", lambda n: result["checks"][n]["recall_at_10"])]
    for label, value in rows:
        lines.append(label.ljust(18) + "".join(str(value(n)).rjust(width) for n in names))
    if "groups" in result:
        g = result["groups"]
        lines.append(f"groups: local {g['local']['wall_s']} s {g['local']['seconds']}, ray {g['ray']['wall_s']} s "
                     f"{g['ray']['seconds']}, overhead {g['overhead']:+.1%}, same output: {g['same_output']}")
    print("\n".join(lines), file=sys.stderr)


if __name__ == "__main__":
    main()
