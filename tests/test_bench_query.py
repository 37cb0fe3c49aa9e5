"""scripts/bench_query.py: the search workload is fair (each query's partner indexed, no query
text indexed), and the step break-down runs on a real index."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from .conftest import clustered

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_query.py"
sys.path.insert(0, str(SCRIPT.parent))

from bench_query import workload  # noqa: E402


def fake_qqp(folder: Path) -> Path:
    """BiMPM dev (label, q1, q2, id) and GLUE-sample (id, qid1, qid2, q1, q2, label) files."""
    (folder / "qqp-bimpm").mkdir(parents=True)
    (folder / "qqp-glue-train-sample").mkdir()
    bimpm = [f"{n % 2}\tHow do I do thing {n}?\tWhat is the way to do thing {n}?\t{n}" for n in range(40)]
    glue = [f"{n}\t{2 * n}\t{2 * n + 1}\tIs topic {n} good?\tWhy is topic {n} bad?\t0" for n in range(60)]
    (folder / "qqp-bimpm" / "dev.tsv").write_text("\n".join(bimpm) + "\n")
    (folder / "qqp-glue-train-sample" / "new_dev.tsv").write_text("\n".join(glue + ["bad\trow"]) + "\n")
    return folder


def test_each_query_has_its_partner_indexed_and_is_not_itself(tmp_path):
    from retrieval.text import normalize

    references, queries, truth = workload(fake_qqp(tmp_path), refs=100, queries=10)
    assert len(queries) == 10 and len(truth) == 10 and len(references) == 100
    assert len(set(references)) == len(references)
    assert not {normalize(q) for q in queries} & {normalize(r) for r in references}
    for query, partner in zip(queries, truth):
        number = query.split()[-1].rstrip("?")
        assert references[partner] == f"What is the way to do thing {number}?"


def test_steps_break_one_search_down(tmp_path):
    from index import VectorStore

    vectors = clustered(3000, 32)
    with VectorStore.create(tmp_path / "ix", 32, "hnsw-sq8") as store:
        store.add([str(i) for i in range(len(vectors))], vectors)
        store.save()
    np.save(tmp_path / "q.npy", clustered(50, 32, seed=1))
    out = tmp_path / "steps.json"
    done = subprocess.run([sys.executable, SCRIPT, "steps", "--index", tmp_path / "ix", "--vectors",
                           tmp_path / "q.npy", "--n", "50", "--json", out], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [r["step"].split(" ")[0] for r in rows] == ["FAISS", "SQLite:", "exact", "SQLite:", "SQLite:",
                                                       "VectorStore.search,", "VectorStore.search,"]
    assert rows[-1]["step"].endswith("without the float16 copy")  # hnsw-sq8 re-ranks: its build wrote one
    assert "hnsw-sq8, 20 candidates" in rows[0]["step"]
    assert all(0 < r["p50_ms"] <= r["p99_ms"] for r in rows)
