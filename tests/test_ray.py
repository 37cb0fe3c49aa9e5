"""`twin build --ray` and `twin groups --ray` on a real Ray runtime (ray.init(num_cpus=2)), with
the real model: the same index (or a sharded one that searches the same) and the same groups as
the local commands, a killed worker retried, bad rows and bad addresses as one line."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from index import open_store

from .conftest import DEMO_CSV
from .test_cli import twin
from .test_http import running

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'twin-retrieval[ray]')")


@pytest.fixture(scope="module")
def ray_runtime(tmp_path_factory):
    """A real local Ray runtime with 2 CPUs; its workers see the kill-once test hook's path."""
    from retrieval.distributed.cluster import KILL_ONCE_ENV

    marker = tmp_path_factory.mktemp("ray") / "kill-once"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {KILL_ONCE_ENV: str(marker)}})
    yield marker
    ray.shutdown()


def demo_texts() -> list[dict]:
    with open(DEMO_CSV, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> list[Path]:
    """About 3,000 items in three files of three formats: a CSV with ids and payload columns (one
    id repeated, the later row must win), a JSONL file without ids (numbered FILE:LINE), and a
    text file; the texts are the demo's with variations, so there are real duplicates."""
    folder = tmp_path_factory.mktemp("corpus")
    rows = demo_texts()
    with open(folder / "a.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "text", "topic", "n"])
        for n in range(1200):
            row = rows[n % len(rows)]
            writer.writerow([f"a{n}", f"{row['text']} (take {n // len(rows)})", row["topic"], n])
        writer.writerow(["a7", "This row replaces the first a7.", "override", -1])
    with open(folder / "b.jsonl", "w", encoding="utf-8") as f:
        for n in range(1000):
            row = rows[(n * 7) % len(rows)]
            f.write(json.dumps({"text": f"{row['text'].lower()} #{n % 9}", "group": row["group"]}) + "\n")
    words = "password account order refund shipping login email invoice card delivery".split()
    (folder / "c.txt").write_text("\n".join(f"How do I change the {words[n % 10]} of my {words[(n * 3) % 10]} "
                                            f"number {n % 40}?" for n in range(800)) + "\n", encoding="utf-8")
    return [folder / "a.csv", folder / "b.jsonl", folder / "c.txt"]


@pytest.fixture(scope="module")
def local_index(corpus, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("local") / "index"
    result = twin("build", *corpus, "--index", folder)
    assert result.exit_code == 0, result.output
    return folder


def contents(folder: Path) -> dict[str, tuple]:
    """Every stored item: id -> (text, payload, vector)."""
    with open_store(folder, read_only=True) as store:
        ids = [r.id for s in getattr(store, "shards", [store]) for r in _all(s)]
        return {i: (r.text, r.payload, r.vector) for i, r in store.records_of(ids).items()}


def _all(store):  # noqa: ANN001, ANN202
    return store._meta.records(store._meta.seqs_upto(1 << 62).tolist(), with_vectors=False).values()


def top10(folder: Path, queries: np.ndarray) -> list[list[float]]:
    """The scores of each query's 10 nearest."""
    with open_store(folder, read_only=True) as store:
        return [[h.score for h in row] for row in store.search(queries, 10)]


def assert_same_index(local: Path, built: Path) -> None:
    """Same ids, texts and payloads; vectors of the same model; recall@10 of the local index's
    answers for 200 of its own vectors within 0.01."""
    mine, theirs = contents(local), contents(built)
    assert set(mine) == set(theirs)
    assert all(mine[i][:2] == theirs[i][:2] for i in mine)
    ids = sorted(mine)
    a = np.stack([mine[i][2] for i in ids])
    b = np.stack([theirs[i][2] for i in ids])
    assert np.einsum("ij,ij->i", a, b).min() > 0.999
    queries = a[np.random.default_rng(0).choice(len(a), 200, replace=False)]
    truth, found = top10(local, queries), top10(built, queries)
    # recall@10 counting ties (the corpus repeats texts): a hit scoring at least the true 10th counts
    recall = np.mean([sum(s >= t[-1] - 1e-5 for s in f) / len(t) for t, f in zip(truth, found)])
    assert recall >= 0.99, recall


def test_several_files_and_globs_are_one_corpus(local_index, corpus):
    items = contents(local_index)
    assert len(items) == 1200 + 1000 + 800  # a7 twice: the second replaced the first
    assert items["a7"][:2] == ("This row replaces the first a7.", {"topic": "override", "n": "-1"})
    assert items["b.jsonl:3"][1] == {"group": demo_texts()[14]["group"]}  # line 3: n = 2
    assert "c.txt:800" in items and "800" not in items
    result = twin("build", str(corpus[0].parent / "*.csv"), "--index", corpus[0].parent / "glob")
    assert result.exit_code == 0 and "1201 rows of" in result.stderr, result.output
    result = twin("build", str(corpus[0].parent / "*.nothing"), "--index", corpus[0].parent / "none")
    assert result.exit_code == 1 and "*.nothing: no file matches this pattern" in result.stderr
    result = twin("build", corpus[0], "--index", corpus[0].parent / "none", "--shard-items", "10")
    assert result.exit_code == 1 and "--shard-items applies to builds on Ray: add --ray" in result.stderr


def test_ray_build_is_the_local_build(ray_runtime, corpus, local_index, tmp_path):
    result = twin("build", *corpus, "--index", tmp_path / "ray", "--ray")
    assert result.exit_code == 0, result.output
    assert "on Ray (2 CPUs, 0 GPUs): 3000 items from 3001 rows of 3 files (flat, tau" in result.stderr
    assert_same_index(local_index, tmp_path / "ray")
    assert not [p for p in (tmp_path / "ray").iterdir() if p.name.startswith(".building-")]


def test_a_killed_encoder_worker_is_retried_and_the_build_completes(ray_runtime, corpus, local_index, tmp_path):
    ray_runtime.write_text("armed")  # the first encoder batch after this kills its worker process
    result = twin("build", *corpus, "--index", tmp_path / "ray", "--ray")
    assert result.exit_code == 0, result.output
    assert not ray_runtime.exists(), "no worker was killed"
    assert_same_index(local_index, tmp_path / "ray")


def test_a_worker_that_always_dies_fails_the_job_whole_in_one_line(ray_runtime, corpus, tmp_path):
    ray_runtime.write_text("40")  # more deaths than Ray's retries
    try:
        result = twin("build", corpus[2], "--index", tmp_path / "ray", "--ray")
        left = int(ray_runtime.read_text())
    finally:
        ray_runtime.unlink(missing_ok=True)
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: the Ray job failed and nothing of it was kept (")
    assert len(result.stderr.strip().splitlines()) == 1
    assert 40 - left > 3  # it was retried before giving up
    assert not (tmp_path / "ray").exists()


def test_a_large_corpus_becomes_a_sharded_index_searched_as_one(ray_runtime, corpus, local_index, tmp_path):
    folder = tmp_path / "sharded"
    result = twin("build", *corpus, "--index", folder, "--ray", "--shard-items", "1500")
    assert result.exit_code == 0, result.output
    assert "(flat x 3 shards" in result.stderr
    shards = sorted(p for p in folder.iterdir() if p.name.startswith("shard-"))
    assert len(shards) == 3 and all((s / "manifest.json").is_file() for s in shards)
    assert_same_index(local_index, folder)
    facts = json.loads(twin("info", "--index", folder, "--json").output)
    assert facts["count"] == 3000 and facts["built_kind"] == "flat x 3 shards"
    assert sorted(s["folder"] for s in facts["shards"]) == [s.name for s in shards]
    assert sum(s["count"] for s in facts["shards"]) == 3000 and min(s["count"] for s in facts["shards"]) > 800
    assert "shards     3: " in twin("info", "--index", folder).output

    # writes reach the shard an id hashes to; the query path and the HTTP service see them
    new = tmp_path / "new.csv"
    new.write_text("id,text\nnew-1,Where can I see the status of my parcel?\n", encoding="utf-8")
    assert twin("add", new, "--index", folder).exit_code == 0
    assert twin("delete", "a0", "--index", folder).exit_code == 0
    found = json.loads(twin("query", "--index", folder, "--json", "-k", "3",
                            "Where can I see the status of my parcel?").output)
    assert found["matches"][0]["id"] == "new-1"
    with running(folder) as url, httpx.Client(base_url=url) as http:
        got = http.get("/search", params={"q": "Where can I see the status of my parcel?", "k": 3}).json()
        assert got["results"][0]["matches"][0]["id"] == "new-1"
        assert http.post("/items", json={"items": [{"id": "new-2", "text": "Can I pay by bank transfer?"}]}
                         ).status_code == 200
        assert http.get("/items/new-2").json()["text"] == "Can I pay by bank transfer?"
        assert http.get("/items/a0").status_code == 404
        assert [s["folder"] for s in http.get("/stats").json()["shards"]] == [s.name for s in shards]
        # verdicts and tau live at the top of a sharded index
        verdict = http.post("/feedback", json={"query_id": "new-2", "id": "new-1", "duplicate": False}).json()
        assert verdict["b_text"] == "Where can I see the status of my parcel?"
        assert http.put("/tau", json={"tau": 0.81}).status_code == 200
    assert len(contents(folder)) == 3000 + 2 - 1
    assert json.loads((folder / "manifest.json").read_text())["tau"] == 0.81 and (folder / "feedback.sqlite").is_file()

    # a reader (a read-only server) follows a new build of the folder into its new shards
    with open_store(folder, read_only=True) as reader:
        assert len(reader) == 3001
        rebuilt = twin("build", *corpus, "--index", folder, "--ray", "--shard-items", "1000", "--force")
        assert rebuilt.exit_code == 0 and "(flat x 4 shards" in rebuilt.stderr, rebuilt.output
        reader.refresh()
        assert len(reader) == 3000 and len(reader.shards) == 4 and reader.get("new-1") is None
        assert reader.search(contents(local_index)["a5"][2], 1)[0][0].id == "a5"
    assert len([p for p in folder.iterdir() if p.name.startswith("shard-")]) == 4  # the old shards are gone


def test_groups_on_ray_are_the_local_groups(ray_runtime, corpus, tmp_path, monkeypatch):
    from retrieval.groups import join as join_module

    for linkage in ("star", "connected"):
        local, on_ray = tmp_path / f"local-{linkage}.csv", tmp_path / f"ray-{linkage}.csv"
        assert twin("groups", *corpus, "-o", local, "--linkage", linkage).exit_code == 0
        result = twin("groups", *corpus, "-o", on_ray, "--linkage", linkage, "--ray", "--json")
        assert result.exit_code == 0, result.output
        assert local.read_bytes() == on_ray.read_bytes()
        assert json.loads(result.stdout)["groups"] > 50
    monkeypatch.setattr(join_module, "EXACT_BELOW", 1_000)  # the IVF join: its lists searched in Ray tasks
    local, on_ray = tmp_path / "local-ivf.csv", tmp_path / "ray-ivf.csv"
    assert twin("groups", *corpus, "-o", local, "-k", "4").exit_code == 0
    assert twin("groups", *corpus, "-o", on_ray, "-k", "4", "--ray").exit_code == 0
    assert local.read_bytes() == on_ray.read_bytes()


def test_a_bad_row_read_inside_a_ray_task_is_the_local_one_line_and_keeps_the_old_index(
        ray_runtime, corpus, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("id,text\nx1,fine\nx2,\nx3,also fine\n", encoding="utf-8")
    folder = tmp_path / "index"
    assert twin("build", corpus[2], "--index", folder).exit_code == 0
    local = twin("build", corpus[0], bad, "--index", folder, "--force")
    on_ray = twin("build", corpus[0], bad, "--index", folder, "--force", "--ray")
    assert on_ray.exit_code == local.exit_code == 1
    assert on_ray.stderr == local.stderr == f"Error: {bad}:3:2: empty text in column 'text'\n"
    kept = contents(folder)
    assert len(kept) == 800 and "1" in kept and "a0" not in kept  # the one-file index, unchanged
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".building-")) == []


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("address, message", [
    ("127.0.0.1:{port}", "no Ray cluster answers there"),
    ("not-an-address", "not an address; give HOST:PORT of the head node"),
])
def test_an_unreachable_cluster_is_refused_in_one_line(corpus, tmp_path, address, message):
    address = address.format(port=closed_port())
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "retrieval.cli", "build", str(corpus[2]), "--index",
                             str(tmp_path / "i"), "--ray", address], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}, timeout=120)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: --ray {address}: ") and message in lines[0], lines
    assert time.monotonic() - started < 30
    assert not (tmp_path / "i").exists()
