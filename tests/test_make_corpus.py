"""scripts/make_corpus.py: reproducible, planted groups of known membership (needs ../shared)."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pyarrow.parquet as pq

from .conftest import ROOT


def make(tmp_path, name: str, seed: int, shared_data) -> list[dict]:
    out = tmp_path / name
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_corpus.py"), "--n", "3000", "--seed", str(seed),
                    "--data", str(shared_data), str(out)], check=True, capture_output=True)
    return pq.read_table(out).to_pylist()


def test_make_corpus_is_reproducible_with_planted_groups(tmp_path, shared_data):
    rows = make(tmp_path, "a.parquet", 1, shared_data)
    assert rows == make(tmp_path, "b.parquet", 1, shared_data)
    assert rows != make(tmp_path, "c.parquet", 2, shared_data)
    assert [r["id"] for r in rows] == [f"q{n}" for n in range(3000)]
    kinds = Counter(r["kind"] for r in rows)
    assert kinds["original"] > 1500 and kinds["rewrite"] > 100 and kinds["qqp"] == 300 and kinds["near-miss"] > 10
    sizes = Counter(r["planted"] for r in rows if r["planted"] is not None)
    assert min(sizes.values()) >= 2  # a planted group has at least two members
    assert all(r["planted"] is None and r["near_miss_of"] in sizes for r in rows if r["kind"] == "near-miss")
    assert all(r["kind"] != "rewrite" or r["planted"] is not None for r in rows)
