"""`twin groups`: the self-join, both linkages, the keep rules, outputs and bad input, with the
real model, real FAISS and the demo corpus."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from retrieval import DEFAULT_TAU
from retrieval.groups import Pairs, link, self_join
from retrieval.groups import join as join_module

from .conftest import DEMO_CSV, ROOT, clustered
from .test_cli import twin


def brute_pairs(vectors: np.ndarray, tau: float) -> set[tuple[int, int]]:
    """Every pair above tau, from the full similarity matrix (small inputs only)."""
    sims = vectors @ vectors.T
    a, b = np.nonzero(np.triu(sims > tau, k=1))
    return set(zip(a.tolist(), b.tolist()))


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def demo_vectors(encoder) -> tuple[list[dict], np.ndarray]:
    from retrieval.text import normalize

    rows = read_csv(DEMO_CSV)
    return rows, encoder.encode([normalize(r["text"]) for r in rows])


def test_flat_self_join_finds_exactly_the_pairs_above_tau(demo_vectors):
    _, vectors = demo_vectors
    pairs = self_join(vectors, DEFAULT_TAU, k=2, progress=False)
    assert set(zip(pairs.a.tolist(), pairs.b.tolist())) == brute_pairs(vectors, DEFAULT_TAU)
    assert np.all(pairs.a < pairs.b) and np.all(pairs.score > DEFAULT_TAU)
    exact = np.einsum("ij,ij->i", vectors[pairs.a], vectors[pairs.b])
    assert np.allclose(pairs.score, exact, atol=1e-6)


def test_ivf_self_join_rescores_exactly_and_searches_past_k(monkeypatch):
    vectors = clustered(6_000, 64, seed=3)
    vectors[:40] = vectors[0] + 0.01 * np.random.default_rng(1).standard_normal((40, 64))  # a 40-item hub
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    monkeypatch.setattr(join_module, "EXACT_BELOW", 1_000)  # the IVF path, at a size a test can check
    tau = 0.9
    pairs = self_join(vectors, tau, k=4, nprobe=16, progress=False)
    found, truth = set(zip(pairs.a.tolist(), pairs.b.tolist())), brute_pairs(vectors, tau)
    assert found <= truth  # never a pair below tau
    assert len(found) >= 0.98 * len(truth)
    hub = {(a, b) for a in range(40) for b in range(a + 1, 40)}
    assert hub <= found  # 39 neighbours above tau each, k = 4: found by searching further
    assert np.allclose(pairs.score, np.einsum("ij,ij->i", vectors[pairs.a], vectors[pairs.b]), atol=1e-6)


def chain() -> Pairs:
    """A-B and B-C are duplicates, A-C is not: B is a hub."""
    return Pairs(np.array([0, 1]), np.array([1, 2]), np.array([0.8, 0.8], np.float32))


def test_star_linkage_does_not_chain_through_a_hub_and_connected_does():
    copies, lengths = np.ones(3, np.int64), np.array([5, 9, 7])
    assert link(chain(), copies, lengths, "star", "first").representative.tolist() == [0, 0, 2]
    assert link(chain(), copies, lengths, "connected", "first").representative.tolist() == [0, 0, 0]
    # central: B is a duplicate of both, so B represents A and C in one star
    assert link(chain(), copies, lengths, "star", "central").representative.tolist() == [1, 1, 1]
    assert link(chain(), copies, lengths, "connected", "longest").representative.tolist() == [1, 1, 1]


@pytest.fixture(scope="module")
def demo_groups(tmp_path_factory, encoder) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("groups")
    runs = {}
    for linkage in ("star", "connected"):
        out, pairs = folder / f"{linkage}.csv", folder / f"{linkage}-pairs.csv"
        result = twin("groups", DEMO_CSV, "-o", out, "--pairs", pairs, "--linkage", linkage, "--json")
        assert result.exit_code == 0, result.output
        runs[linkage] = out
        runs[f"{linkage}-pairs"] = pairs
        runs[f"{linkage}-summary"] = json.loads(result.stdout)
        assert result.stderr.splitlines()[-1].startswith("groups: 258 items, ")  # after any progress lines
    return runs


def test_groups_output_is_one_row_per_item_with_one_kept_per_group(demo_groups, demo_vectors):
    rows, vectors = demo_vectors
    for linkage in ("star", "connected"):
        out = read_csv(demo_groups[linkage])
        assert [r["id"] for r in out] == [r["id"] for r in rows]
        assert list(out[0]) == ["id", "group", "representative", "score", "keep", "topic", "payload_group", "role"]
        groups: dict[str, list[dict]] = {}
        for r in out:
            if r["group"]:
                groups.setdefault(r["group"], []).append(r)
            else:
                assert r["keep"] == "true" and r["representative"] == "" and r["score"] == ""
        assert len(groups) >= 20 and all(len(g) >= 2 for g in groups.values())
        for members in groups.values():
            kept = [m for m in members if m["keep"] == "true"]
            assert len(kept) == 1 and {m["representative"] for m in members} == {kept[0]["id"]}
            assert kept[0]["id"] == members[0]["id"]  # keep first: the first in corpus order
        assert [int(g) for g in dict.fromkeys(r["group"] for r in out if r["group"])] == list(range(1, len(groups) + 1))
        summary = demo_groups[f"{linkage}-summary"]
        assert summary["groups"] == len(groups) and summary["items"] == 258
        assert summary["items_to_drop"] == sum(len(g) - 1 for g in groups.values())
        assert summary["tau"] == DEFAULT_TAU
    index = {r["id"]: n for n, r in enumerate(rows)}
    pairs = [(index[p["id_a"]], index[p["id_b"]]) for p in read_csv(demo_groups["star-pairs"])]
    assert set(tuple(sorted(p)) for p in pairs) == brute_pairs(vectors, DEFAULT_TAU) and len(pairs) == len(set(pairs))
    star = {r["id"]: r for r in read_csv(demo_groups["star"])}
    for r in star.values():  # star: every member is a duplicate of its representative
        if r["group"] and r["keep"] == "false":
            assert float(r["score"]) > DEFAULT_TAU
            cos = float(vectors[index[r["id"]]] @ vectors[index[r["representative"]]])
            assert cos == pytest.approx(float(r["score"]), abs=1e-5)
    connected = {r["id"]: r["group"] for r in read_csv(demo_groups["connected"])}
    for a, b in pairs:  # connected: no pair above tau is split
        assert connected[rows[a]["id"]] == connected[rows[b]["id"]] != ""


def test_exact_copies_keep_rules_and_parquet_output(tmp_path):
    corpus = tmp_path / "c.jsonl"
    texts = ["How do I reset my password?", "How do I reset my password?", "How can I reset my password ?",
             "How do I reset my forgotten account password quickly?", "What is the capital of France?",
             "  How do I reset   my password?"]
    corpus.write_text("".join(json.dumps({"id": f"r{n}", "text": t, "n": n, "tag": ["x", 1][n % 2]}) + "\n"
                              for n, t in enumerate(texts)))
    out = tmp_path / "g.parquet"
    result = twin("groups", corpus, "-o", out, "--keep", "longest", "--pairs", tmp_path / "p.jsonl")
    assert result.exit_code == 0, result.output
    table = pq.read_table(out)
    assert str(table.schema.field("group").type) == "int64" and str(table.schema.field("keep").type) == "bool"
    assert str(table.schema.field("n").type) == "int64" and str(table.schema.field("tag").type) == "string"
    rows = table.to_pylist()
    by_id = {r["id"]: r for r in rows}
    assert by_id["r4"]["group"] is None and by_id["r4"]["keep"] is True
    reset = [r for r in rows if r["group"] == by_id["r0"]["group"]]
    assert {r["id"] for r in reset} >= {"r0", "r1", "r5"}
    assert [r["id"] for r in reset if r["keep"]] == [max(reset, key=lambda r: len(texts[int(r["id"][1:])]))["id"]]
    assert by_id["r1"]["score"] == pytest.approx(by_id["r0"]["score"])  # an exact copy scores as its first copy
    pairs = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert {"id_a": "r0", "id_b": "r1", "score": 1.0} in pairs and {"id_a": "r0", "id_b": "r5", "score": 1.0} in pairs


def test_groups_reuses_an_index_built_from_the_corpus(demo_groups, tmp_path, encoder):
    index = tmp_path / "ix"
    assert twin("build", DEMO_CSV, "--index", index).exit_code == 0
    out = tmp_path / "again.csv"
    result = twin("groups", DEMO_CSV, "-o", out, "--index", index, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["reused_vectors"] == 258
    assert out.read_text() == demo_groups["star"].read_text()


def test_groups_are_the_same_whatever_the_batch_size_or_threads(demo_groups, tmp_path):
    out = tmp_path / "one-thread.csv"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "retrieval.cli", "groups", str(DEMO_CSV), "-o", str(out),
                    "--batch-size", "7", "--linkage", "connected"], check=True, env=env, cwd=ROOT,
                   capture_output=True)
    assert out.read_text() == demo_groups["connected"].read_text()


@pytest.mark.parametrize("args, message", [
    (["--threshold", "1"], "--threshold"),
    (["--threshold", "-1"], "--threshold"),
    (["-o", "out.xlsx"], "unknown output suffix '.xlsx'"),
    (["--pairs", "p.txt"], "unknown output suffix '.txt'"),
])
def test_groups_option_errors(tmp_path, args, message):
    base = ["groups", DEMO_CSV, "-o", tmp_path / "out.csv"]
    result = twin(*base, *[str(tmp_path / a) if a.endswith((".xlsx", ".txt")) else a for a in args])
    assert result.exit_code != 0 and message in result.output


def test_groups_refuses_bad_input_like_build_and_writes_nothing(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text('id,text\n1,"fine"\n2,"   "\n')
    out = tmp_path / "out.csv"
    out.write_text("previous\n")
    result = twin("groups", bad, "-o", out)
    assert result.exit_code == 1 and f"{bad}:3" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert out.read_text() == "previous\n" and sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv", "out.csv"]
    leftover = tmp_path / ".out.csv.999999999.tmp"  # what a killed run left (no such process)
    leftover.write_text("half")
    assert twin("groups", DEMO_CSV, "-o", out).exit_code == 0 and not leftover.exists()
    empty = tmp_path / "empty.csv"
    empty.write_text("id,text\n")
    result = twin("groups", empty, "-o", out)
    assert result.exit_code == 1 and f"{empty}: no items in the file" in result.stderr


IVF_JOIN = """
import sys, numpy as np
sys.path.insert(0, sys.argv[1])
from tests.conftest import clustered
from retrieval.groups import join
join.EXACT_BELOW = 1_000
p = join.self_join(clustered(6_000, 64, seed=5), 0.9, k=4, progress=False)
sys.stdout.write(f"{len(p)} {hash((p.a.tobytes(), p.b.tobytes(), p.score.tobytes()))}")
"""


def test_the_ivf_self_join_is_the_same_whatever_the_threads():
    answers = set()
    for threads in ("1", "2"):
        env = {**os.environ, "OMP_NUM_THREADS": threads, "PYTHONHASHSEED": "0"}
        done = subprocess.run([sys.executable, "-c", IVF_JOIN, str(ROOT)], env=env, capture_output=True, text=True,
                              check=True)
        answers.add(done.stdout)
    assert len(answers) == 1 and int(next(iter(answers)).split()[0]) > 1000
