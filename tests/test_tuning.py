"""Search knobs chosen by measured recall at each build (index/tuning.py), on real FAISS and SQLite."""

from __future__ import annotations

import json

import numpy as np
import pytest

from index import IndexFolderError, VectorStore
from index.tuning import ExactNeighbours, measured_recall

DIM = 32


def spread(n: int, seed: int) -> np.ndarray:
    """Unit vectors with little structure: IVF needs many lists probed to find their neighbours."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def store_of(folder, kind: str, data: np.ndarray, target: float) -> VectorStore:
    store = VectorStore.create(folder, DIM, kind, target_recall=target)
    store.add([str(i) for i in range(len(data))], data)
    store.save()
    return store


def recall_at_10(store: VectorStore, data: np.ndarray, queries: np.ndarray, **knobs) -> float:
    truth = np.argsort(-(queries @ data.T), axis=1)[:, :10]
    found = [[int(h.id) for h in row] for row in store.search(queries, 10, **knobs)]
    return float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)]))


def test_exact_neighbours_over_batches_skip_the_query_itself():
    data = spread(500, 0)
    seqs = np.arange(1, 501)
    sample = np.array([3, 77, 250, 499])
    probe = ExactNeighbours(seqs[sample], data[sample], k=5)
    for start in range(0, 500, 37):  # batches of another size than k or the sample
        probe.update(seqs[start : start + 37], data[start : start + 37])
    scores = data[sample] @ data.T
    scores[np.arange(len(sample)), sample] = -np.inf
    expected = [set((np.argsort(-row)[:5] + 1).tolist()) for row in scores]
    assert probe.truth() == expected
    assert measured_recall(np.array([sorted(t) for t in expected]), seqs[sample], expected, k=5) == 1.0


def test_build_picks_the_smallest_nprobe_that_reaches_the_target(tmp_path):
    data, queries = spread(6000, 1), spread(200, 2)
    low = store_of(tmp_path / "low", "ivf-sq8", data, 0.5)
    high = store_of(tmp_path / "high", "ivf-sq8", data, 0.97)
    tuned_low, tuned_high = low.search_defaults, high.search_defaults
    assert tuned_low["recall_at_10"] >= 0.5 and tuned_high["recall_at_10"] >= 0.97
    assert tuned_low["nprobe"] < tuned_high["nprobe"]
    # the smallest: half the chosen nprobe misses the target on the same sample
    assert recall_at_10(high, data, queries, nprobe=tuned_high["nprobe"] // 2) < 0.97
    # the measurement holds for queries the index has never seen
    assert recall_at_10(high, data, queries) >= 0.95
    assert recall_at_10(high, data, queries) == recall_at_10(high, data, queries, nprobe=tuned_high["nprobe"])
    assert recall_at_10(high, data, queries, nprobe=1) < 0.9  # a per-query nprobe still overrides
    low.close()
    high.close()


def test_tuned_ef_search_survives_reopening_and_rebuild_retunes(tmp_path):
    data = spread(3000, 3)
    store = store_of(tmp_path / "ix", "hnsw", data, 0.9)
    chosen = store.search_defaults["ef_search"]
    assert store.search_defaults["recall_at_10"] >= 0.9 and store.search_defaults["tuned_on"] == 300
    store.close()
    manifest = json.loads((tmp_path / "ix" / "manifest.json").read_text())
    assert manifest["target_recall"] == 0.9 and manifest["params"]["ef_search"] == chosen
    reader = VectorStore.open(tmp_path / "ix", read_only=True)
    assert reader.search_defaults["ef_search"] == chosen and reader._kind.ef_search == chosen
    reader.close()
    writer = VectorStore.open(tmp_path / "ix")
    writer.rebuild(target_recall=0.999)
    assert writer.manifest.target_recall == 0.999
    assert writer.search_defaults["ef_search"] > chosen
    writer.save()
    writer.close()
    assert json.loads((tmp_path / "ix" / "manifest.json").read_text())["params"]["ef_search"] > chosen


def test_exact_kind_is_not_tuned(tmp_path):
    store = store_of(tmp_path / "ix", "flat", spread(100, 4), 0.95)
    assert store.search_defaults == {}
    store.close()


@pytest.mark.parametrize("target", [0, -0.1, 1.01, float("nan")])
def test_target_recall_outside_0_1_is_refused(tmp_path, target):
    with pytest.raises(ValueError, match="target recall must be in"):
        VectorStore.create(tmp_path / "ix", DIM, "ivf-sq8", target_recall=target)


def test_manifest_with_a_bad_target_is_damaged(tmp_path):
    store_of(tmp_path / "ix", "flat", spread(10, 5), 0.95).close()
    path = tmp_path / "ix" / "manifest.json"
    path.write_text(path.read_text().replace('"target_recall": 0.95', '"target_recall": 3'))
    with pytest.raises(IndexFolderError, match="'target_recall' 3 is not in"):
        VectorStore.open(tmp_path / "ix")
