"""Duplicate groups: quality on labelled data, twin vs the usual tools side by side, and scale.

    python scripts/bench_groups.py quality [--finetuned MODEL]     # QQP dev + a synthetic corpus
    python scripts/bench_groups.py compare --n 100000              # twin vs community_detection vs SemHash
    python scripts/bench_groups.py compare --n 1000000 --limit-s 1800 --only community_detection,semhash
    python scripts/bench_groups.py join --n 100000                 # the IVF join's pair recall
    python scripts/bench_groups.py scale --n 1000000               # raw file to written groups

Pairwise precision and recall of "in the same group". On QQP dev (BiMPM, its distinct questions
as the corpus): a labelled duplicate pair split across groups is a miss, a labelled
non-duplicate pair inside a group a false merge. On a corpus of ``make_corpus.py``: a pair of one
planted group is a duplicate, any other pair inside a predicted group a false merge.

``compare`` encodes the corpus once; every tool then groups *the same vectors* at the same tau,
each in its own process (wall time of the grouping; peak RSS of the process, with the RSS once
the texts and vectors are loaded beside it):
twin's ``Grouper`` (what ``twin groups`` runs: self-join + star linkage), sentence-transformers'
``util.community_detection``, and SemHash's ``self_deduplicate`` (its default usearch backend,
given an encoder that returns the precomputed vectors: nothing is downloaded). SemHash comes
with the ``bench`` extra (``pip install -e ".[bench]"``); the QQP corpora need ../shared/data.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from retrieval.text import normalize  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
OUT = ROOT / "bench-out" / "groups"
TOOLS = ("twin", "community_detection", "semhash")


# -- scoring -------------------------------------------------------------------------------------
def planted_scores(labels: list, predicted: np.ndarray, labelled: list[bool] | None = None) -> dict:
    """Pairwise precision/recall of ``predicted`` group numbers (-1: none) against planted labels
    (None: in no planted group). ``labelled`` marks the items whose relations are known (planted
    items and near-misses): ``precision_labelled`` counts only pairs of two such items, leaving out
    the near-duplicates a generator makes by chance among its unplanted questions."""
    labelled = labelled if labelled is not None else [True] * len(labels)
    tp = together = together_known = 0
    groups: dict[int, Counter] = {}
    known: Counter = Counter()
    for label, group, is_known in zip(labels, predicted.tolist(), labelled):
        if group >= 0:
            groups.setdefault(group, Counter())[label] += 1
            known[group] += is_known
    for group, counter in groups.items():
        size = sum(counter.values())
        together += size * (size - 1) // 2
        together_known += known[group] * (known[group] - 1) // 2
        tp += sum(c * (c - 1) // 2 for lab, c in counter.items() if lab is not None)
    planted = Counter(lab for lab in labels if lab is not None)
    positives = sum(c * (c - 1) // 2 for c in planted.values())
    out = _pr(tp, together, positives)
    out["precision_labelled"] = round(tp / together_known, 4) if together_known else 1.0
    return out


def labelled_scores(pairs: list[tuple[int, int, int]], predicted: np.ndarray) -> dict:
    """Pairwise precision/recall of ``predicted`` against labelled pairs (item a, item b, label)."""
    same = [predicted[a] >= 0 and predicted[a] == predicted[b] for a, b, _ in pairs]
    tp = sum(s and lab for s, (_, _, lab) in zip(same, pairs))
    return _pr(tp, sum(same), sum(lab for *_, lab in pairs))


def _pr(tp: int, claimed: int, positives: int) -> dict:
    tp, claimed, positives = int(tp), int(claimed), int(positives)
    p = tp / claimed if claimed else 1.0
    r = tp / positives if positives else 1.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(2 * p * r / (p + r), 4) if p + r else 0.0,
            "pairs_claimed": claimed, "pairs_true": positives}


def group_numbers(path: Path) -> np.ndarray:
    """The ``group`` column of a ``twin groups`` output (-1 for none)."""
    import pyarrow.parquet as pq

    groups = pq.read_table(path, columns=["group"]).column("group").to_pylist()
    return np.array([-1 if g is None else g for g in groups], np.int64)


# -- corpora ----------------------------------------------------------------------------------------
def qqp_corpus(data: Path, out: Path) -> tuple[Path, list[tuple[int, int, int]]]:
    """The distinct questions of the BiMPM dev split as a corpus, and its labelled pairs."""
    from retrieval.pairs import read_labelled
    from retrieval.tables import TableWriter

    labelled = read_labelled(data / "qqp-bimpm" / "dev.tsv").pairs
    number: dict[str, int] = {}
    for p in labelled:
        for t in (p.a, p.b):
            number.setdefault(normalize(t), len(number))
    path = out / "qqp-dev-questions.parquet"
    with TableWriter(path, ["id", "text"]) as table:
        for text, n in number.items():
            table.write({"id": f"d{n}", "text": text})
    return path, [(number[normalize(p.a)], number[normalize(p.b)], p.label) for p in labelled]


def synthetic_corpus(n: int, out: Path) -> Path:
    """A ``make_corpus.py`` corpus of ``n`` questions (made once, then reused)."""
    path = out / f"synthetic-{n}.parquet"
    if not path.exists():
        subprocess.run([sys.executable, str(ROOT / "scripts" / "make_corpus.py"), "--n", str(n), str(path)],
                       check=True)
    return path


def twin_groups(corpus: Path, out: Path, *flags: str) -> tuple[Path, dict]:
    """Run ``twin groups`` as a user would; its output and --json summary."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "retrieval.cli", "groups", str(corpus), "-o", str(out),
                           "--json", *flags], check=True, capture_output=True, text=True, cwd=ROOT)
    summary = json.loads(done.stdout)
    summary["wall_s"] = round(time.perf_counter() - started, 1)
    return out, summary


def quality(args: argparse.Namespace) -> dict:
    """Pairwise P/R on QQP dev and on a synthetic corpus, star and connected, each model. Each
    corpus is indexed once a model (``twin build``); ``twin groups --index`` then reuses its vectors."""
    import pyarrow.parquet as pq

    args.out.mkdir(parents=True, exist_ok=True)
    qqp, pairs = qqp_corpus(args.data, args.out)
    synthetic = synthetic_corpus(args.synthetic_n, args.out)
    marks = pq.read_table(synthetic, columns=["planted", "kind"])
    planted = marks.column("planted").to_pylist()
    labelled = [p is not None or k == "near-miss" for p, k in zip(planted, marks.column("kind").to_pylist())]
    models = [("MiniLM zero-shot", None)] + ([("MiniLM fine-tuned", args.finetuned)] if args.finetuned else [])
    corpora = [("QQP dev questions", qqp, lambda g: labelled_scores(pairs, g)),
               (f"synthetic {args.synthetic_n:,}", synthetic, lambda g: planted_scores(planted, g, labelled))]
    rows = []
    for m, (name, model) in enumerate(models):
        for corpus_name, corpus, score in corpora:
            index = args.out / f"index-{m}-{corpus.stem}"  # built once a model and corpus
            if not index.exists():
                subprocess.run([sys.executable, "-m", "retrieval.cli", "build", str(corpus), "--index", str(index),
                                *(["--model", str(model)] if model else [])], check=True, cwd=ROOT)
            for linkage in ("star", "connected"):
                out, summary = twin_groups(corpus, args.out / f"q-{len(rows)}.parquet", "--index", str(index),
                                           "--linkage", linkage)
                numbers = group_numbers(out)
                row = {"corpus": corpus_name, "model": name, "linkage": linkage, **score(numbers),
                       "largest_group": int(np.bincount(numbers[numbers >= 0]).max(initial=0)),
                       "groups": summary["groups"], "tau": summary["tau"], "wall_s": summary["wall_s"]}
                print(json.dumps(row), flush=True)
                rows.append(row)
    return {"quality": rows}


# -- side by side ---------------------------------------------------------------------------------
def compare(args: argparse.Namespace) -> dict:
    """The same vectors grouped by each tool in its own process."""
    import pyarrow.parquet as pq

    args.out.mkdir(parents=True, exist_ok=True)
    corpus = synthetic_corpus(args.n, args.out)
    table = pq.read_table(corpus, columns=["text", "planted", "kind"])
    texts, planted = table.column("text").to_pylist(), table.column("planted").to_pylist()
    labelled = [p is not None or k == "near-miss" for p, k in zip(planted, table.column("kind").to_pylist())]
    vectors_path = args.out / f"vectors-{args.n}.npy"
    if not vectors_path.exists():
        from retrieval.encoders import load_encoder

        started = time.perf_counter()
        vectors = load_encoder().encode([normalize(t) for t in texts], 64)
        np.save(vectors_path, vectors)
        print(f"encoded {len(texts):,} texts in {time.perf_counter() - started:.0f} s", flush=True)
    from retrieval import DEFAULT_TAU

    tau = args.threshold or DEFAULT_TAU
    rows = []
    for tool in args.only.split(","):
        labels = args.out / f"labels-{tool}-{args.n}.npy"
        try:
            done = subprocess.run([sys.executable, __file__, "_run", tool, str(corpus), str(vectors_path),
                                   str(labels), str(tau)], check=True, capture_output=True, text=True,
                                  timeout=args.limit_s)
            numbers = np.load(labels)
            row = {"tool": tool, "n": args.n, **json.loads(done.stdout.splitlines()[-1]),
                   "largest_group": int(np.bincount(numbers[numbers >= 0]).max(initial=0)),
                   **planted_scores(planted, numbers, labelled)}
        except subprocess.TimeoutExpired:
            row = {"tool": tool, "n": args.n, "result": f"did not finish in {args.limit_s} s (killed)"}
        except subprocess.CalledProcessError as exc:
            row = {"tool": tool, "n": args.n, "result": f"failed: {exc.stderr.strip().splitlines()[-1][:300]}"}
        print(json.dumps(row), flush=True)
        rows.append(row)
    return {"compare": rows, "tau": tau}


def scale(args: argparse.Namespace) -> dict:
    """From raw file to written groups: ``twin groups`` on a synthetic corpus of ``n`` questions,
    its stages (from --json), wall time and peak RSS (the child's, from wait4)."""
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    corpus = synthetic_corpus(args.n, args.out)
    made_s = time.perf_counter() - started
    out = args.out / f"groups-{args.n}.parquet"
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "retrieval.cli", "groups", str(corpus), "-o", str(out), "--json"],
                             stdout=subprocess.PIPE, text=True, cwd=ROOT)
    stdout = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    if status:
        raise SystemExit(f"twin groups failed ({status})")
    summary = json.loads(stdout)
    import pyarrow.parquet as pq

    marks = pq.read_table(corpus, columns=["planted", "kind"])
    planted = marks.column("planted").to_pylist()
    labelled = [p is not None or k == "near-miss" for p, k in zip(planted, marks.column("kind").to_pylist())]
    row = {"n": args.n, "make_corpus_s": round(made_s, 1), "groups_wall_s": round(time.perf_counter() - started, 1),
           "peak_rss_mib": round(usage.ru_maxrss / 1024), **summary,
           **planted_scores(planted, group_numbers(out), labelled)}
    print(json.dumps(row), flush=True)
    return {"scale": row}


def join_recall(args: argparse.Namespace) -> dict:
    """The IVF self-join's pair recall against the exact one, on the vectors ``compare`` saved."""
    import pyarrow.parquet as pq

    from retrieval import DEFAULT_TAU
    from retrieval.groups import join

    texts = pq.read_table(synthetic_corpus(args.n, args.out), columns=["text"]).column("text").to_pylist()
    first: dict[str, int] = {}
    for n, t in enumerate(texts):
        first.setdefault(normalize(t), n)
    vectors = np.load(args.out / f"vectors-{args.n}.npy")[list(first.values())]
    tau = args.threshold or DEFAULT_TAU
    runs = {}
    for nprobe in (8, 16, 32):
        started = time.perf_counter()
        pairs = join.self_join(vectors, tau, nprobe=nprobe, progress=False)
        runs[nprobe] = (pairs, time.perf_counter() - started)
    join.EXACT_BELOW = len(vectors) + 1
    started = time.perf_counter()
    exact = join.self_join(vectors, tau, progress=False)
    exact_s = time.perf_counter() - started
    truth = set(zip(exact.a.tolist(), exact.b.tolist()))
    rows = [{"join": f"ivf-sq8, nprobe {nprobe}", "seconds": round(sec, 1), "pairs": len(p),
             "recall": round(len(truth & set(zip(p.a.tolist(), p.b.tolist()))) / max(1, len(truth)), 4)}
            for nprobe, (p, sec) in runs.items()]
    rows.append({"join": "exact (flat)", "seconds": round(exact_s, 1), "pairs": len(exact), "recall": 1.0})
    for row in rows:
        print(json.dumps({"distinct_vectors": len(vectors), **row}), flush=True)
    return {"join": rows, "distinct_vectors": len(vectors), "tau": tau}


def run_one(tool: str, corpus: Path, vectors_path: Path, labels_path: Path, tau: float) -> None:
    """One tool in this process: group, save a group number per row, print time and peak RSS."""
    import pyarrow.parquet as pq

    texts = pq.read_table(corpus, columns=["text"]).column("text").to_pylist()
    vectors = np.load(vectors_path)
    loaded = peak_rss_mib()
    started = time.perf_counter()
    labels = {"twin": _twin, "community_detection": _community_detection, "semhash": _semhash}[tool](
        texts, vectors, tau)
    seconds = time.perf_counter() - started
    np.save(labels_path, labels)
    peak = peak_rss_mib()
    print(json.dumps({"seconds": round(seconds, 1), "peak_rss_mib": round(peak), "inputs_rss_mib": round(loaded),
                      "groups": int(labels.max() + 1),
                      "items_in_groups": int((labels >= 0).sum())}))


def peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _Lookup:
    """An encoder that returns the precomputed vector of each text (no model, no download)."""

    def __init__(self, texts: list[str], vectors: np.ndarray) -> None:
        self.rows = {normalize(t): n for n, t in enumerate(texts)}
        self.vectors, self.dimension, self.tau = vectors, vectors.shape[1], None

    def encode(self, inputs, batch_size: int = 64, **_: object) -> np.ndarray:  # noqa: ANN001
        return self.vectors[[self.rows[normalize(t)] for t in inputs]]


def _numbered(groups: list[list[int]], n: int) -> np.ndarray:
    labels = np.full(n, -1, np.int64)
    for g, members in enumerate(groups):
        labels[members] = g
    return labels


def _twin(texts: list[str], vectors: np.ndarray, tau: float) -> np.ndarray:
    from retrieval.corpus import Row
    from retrieval.groups import Grouper

    grouping = Grouper(_Lookup(texts, vectors), tau).group((Row(str(n), t) for n, t in enumerate(texts)),
                                                           progress=False)
    return grouping.group.astype(np.int64) - 1


def _community_detection(texts: list[str], vectors: np.ndarray, tau: float) -> np.ndarray:
    import torch
    from sentence_transformers.util import community_detection

    groups = community_detection(torch.from_numpy(vectors), threshold=tau, min_community_size=2)
    return _numbered(groups, len(texts))


def _semhash(texts: list[str], vectors: np.ndarray, tau: float) -> np.ndarray:
    from semhash import SemHash

    result = SemHash.from_records(texts, model=_Lookup(texts, vectors)).self_deduplicate(threshold=tau)
    rows: dict[str, list[int]] = {}
    for n, t in enumerate(texts):
        rows.setdefault(t, []).append(n)
    groups: dict[str, list[int]] = {}
    for dup in result.filtered:
        groups.setdefault(dup.duplicate_of, list(rows[dup.duplicate_of][:1])).extend(
            [r for r in rows[dup.record] if r not in groups.get(dup.duplicate_of, [])])
    return _numbered([sorted(set(g)) for g in groups.values()], len(texts))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_run":
        tool, corpus, vectors, labels, tau = sys.argv[2:7]
        run_one(tool, Path(corpus), Path(vectors), Path(labels), float(tau))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    q = sub.add_parser("quality", help="pairwise P/R on QQP dev and a synthetic corpus")
    q.add_argument("--finetuned", type=Path, default=None, help="also a fine-tuned model folder (twin train)")
    q.add_argument("--synthetic-n", type=int, default=100_000, help="size of the synthetic corpus")
    c = sub.add_parser("compare", help="twin vs community_detection vs SemHash on the same vectors")
    c.add_argument("--n", type=int, default=100_000, help="synthetic corpus size")
    c.add_argument("--only", default=",".join(TOOLS), help="comma-separated tools to run")
    c.add_argument("--limit-s", type=int, default=3600, help="kill a tool after this many seconds")
    c.add_argument("--threshold", type=float, default=None, help="tau (default: twin's default)")
    j = sub.add_parser("join", help="pair recall of the IVF self-join against the exact one")
    j.add_argument("--n", type=int, default=100_000, help="synthetic corpus size (run compare first)")
    j.add_argument("--threshold", type=float, default=None, help="tau (default: twin's default)")
    sc = sub.add_parser("scale", help="twin groups from raw file to written groups")
    sc.add_argument("--n", type=int, default=1_000_000, help="synthetic corpus size")
    for p in (q, c, j, sc):
        p.add_argument("--data", type=Path, default=DATA, help="the shared data folder")
        p.add_argument("--out", type=Path, default=OUT, help="where corpora, vectors and outputs go")
        p.add_argument("--json", dest="json_out", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    facts = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
             **{"quality": quality, "compare": compare, "join": join_recall, "scale": scale}[args.mode](args)}
    if args.json_out:
        args.json_out.write_text(json.dumps(facts, indent=1))


if __name__ == "__main__":
    tempfile.tempdir = None
    main()
