"""VectorStore on every kind: search against numpy brute force, upserts, deletes, persistence."""

from __future__ import annotations

import json

import numpy as np
import pytest

import index.kinds
from index import BadVectorError, EncoderMismatchError, IndexFolderError, VectorStore

from .conftest import clustered

KINDS = ["flat", "hnsw", "hnsw-sq8", "ivf-sq8", "ivf-pq"]
DIM = 32


def ids_of(n: int, start: int = 0) -> list[str]:
    return [f"item-{i}" for i in range(start, start + n)]


def brute_force(data: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-(queries @ data.T), axis=1, kind="stable")[:, :k]


@pytest.fixture(params=KINDS)
def kind(request) -> str:
    return request.param


@pytest.fixture
def data() -> np.ndarray:
    return clustered(3100, DIM, seed=1)[:3000]


def filled(folder, kind: str, data: np.ndarray) -> VectorStore:
    store = VectorStore.create(folder, DIM, kind)
    store.add(ids_of(len(data)), data, texts=[f"text {i}" for i in range(len(data))],
              payloads=[{"n": i} for i in range(len(data))])
    return store


def test_search_matches_brute_force(tmp_path, kind, data):
    queries = clustered(3100, DIM, seed=1)[3000:]  # held out of the same distribution: the builds
    # tune nprobe / ef_search on the index's own vectors (index/tuning.py)
    store = filled(tmp_path / "ix", kind, data)
    truth = brute_force(data, queries, 10)
    hits = store.search(queries, k=10)
    assert store.built_kind == kind
    found = [[int(h.id.split("-")[1]) for h in row] for row in hits]
    recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)])
    if kind == "flat":  # exact: each rank's true score (two near-equal scores may come in either order)
        rank_scores = [data[f] @ q for f, q in zip(found, queries)]
        assert np.allclose(rank_scores, [data[t] @ q for t, q in zip(truth, queries)], atol=1e-5)
        assert recall >= 0.99
    else:
        assert recall >= 0.9, f"{kind} recall@10 {recall:.3f}"
    for q, row in zip(queries, hits):
        scores = [h.score for h in row]
        assert scores == sorted(scores, reverse=True)
        exact = data[[int(h.id.split("-")[1]) for h in row]] @ q
        np.testing.assert_allclose(scores, exact, atol=1e-5)  # exact cosine, whatever the kind
    assert hits[0][0].payload == {"n": int(hits[0][0].id.split("-")[1])}


def test_upsert_replaces_vector_and_metadata(tmp_path, kind, data):
    store = filled(tmp_path / "ix", kind, data)
    store.add(["item-5"], data[7], texts=["moved"], payloads=[{"v": 2}])
    assert len(store) == len(data)
    got = store.get("item-5")
    assert got.text == "moved" and got.payload == {"v": 2}
    np.testing.assert_allclose(got.vector, data[7], atol=1e-6)
    top = store.search(data[5], k=3)[0]
    assert "item-5" not in [h.id for h in top[:1]] or top[0].score < 0.9999
    near7 = [h.id for h in store.search(data[7], k=2)[0]]
    assert set(near7) == {"item-5", "item-7"}


def test_delete_removes_from_search_and_get(tmp_path, kind, data):
    store = filled(tmp_path / "ix", kind, data)
    assert store.delete(["item-3", "missing"]) == ["item-3"]
    assert store.get("item-3") is None
    assert len(store) == len(data) - 1
    assert "item-3" not in [h.id for h in store.search(data[3], k=10)[0]]


def test_tombstones_never_crowd_out_live_hits(tmp_path, kind, data):
    store = filled(tmp_path / "ix", kind, data)
    nearest = brute_force(data, data[:1], 60)[0]
    store.delete([f"item-{i}" for i in nearest[:50]])
    hits = store.search(data[0], k=10)[0]
    assert len(hits) == 10
    assert {h.id for h in hits}.isdisjoint({f"item-{i}" for i in nearest[:50]})


def test_persistence_round_trip_and_replay(tmp_path, kind, data):
    folder = tmp_path / "ix"
    store = filled(folder, kind, data)
    before = store.search(data[:20], k=5)
    store.save()
    store.add(["late"], data[11] * 3)  # acknowledged after the snapshot: replayed from SQLite
    store.delete(["item-12"])
    store.close()
    reopened = VectorStore.open(folder)
    assert reopened.built_kind == kind
    assert len(reopened) == len(data)
    assert [h.id for h in reopened.search(data[:20], k=5)[0]] == [h.id for h in before[0]]
    assert {h.id for h in reopened.search(data[11], k=2)[0]} == {"late", "item-11"}
    assert "item-12" not in [h.id for h in reopened.search(data[12], k=5)[0]]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["dimension"] == DIM and manifest["built_kind"] == kind


def test_repeated_id_in_batch_last_wins(tmp_path):
    store = VectorStore.create(tmp_path / "ix", 3, "flat")
    written = store.add(["a", "b", "a"], [[1, 0, 0], [0, 1, 0], [0, 0, 1]], texts=["a1", "b", "a2"])
    assert written == ["b", "a"]
    assert len(store) == 2
    assert store.get("a").text == "a2"
    assert store.search([0, 0, 1], k=1)[0][0].id == "a"


def test_vectors_are_checked_and_normalised(tmp_path):
    store = VectorStore.create(tmp_path / "ix", 3, "flat")
    with pytest.raises(BadVectorError, match="shape"):
        store.add(["x"], [[1.0, 2.0]])
    with pytest.raises(BadVectorError, match="vector 1 contains NaN"):
        store.add(["x", "y"], [[1, 0, 0], [np.nan, 0, 0]])
    with pytest.raises(BadVectorError, match="vector 0 is all zeros"):
        store.add(["x"], [[0, 0, 0]])
    with pytest.raises(BadVectorError, match="infinity"):
        store.search([[np.inf, 0, 0]])
    assert len(store) == 0  # nothing half-written
    store.add(["x"], [[3.0, 4.0, 0.0]])
    np.testing.assert_allclose(store.get("x").vector, [0.6, 0.8, 0.0], atol=1e-6)
    assert store.search([6.0, 8.0, 0.0], k=1)[0][0].score == pytest.approx(1.0, abs=1e-6)


def test_threshold_filters_hits(tmp_path):
    store = VectorStore.create(tmp_path / "ix", 2, "flat")
    store.add(["a", "b", "c"], [[1, 0], [1, 1], [0, 1]])
    hits = store.search([1, 0], k=3, threshold=0.5)[0]
    assert [h.id for h in hits] == ["a", "b"]


def test_auto_switches_to_approximate_past_threshold(tmp_path, monkeypatch, data):
    monkeypatch.setattr(index.kinds, "AUTO_APPROXIMATE_FROM", 1000)
    store = VectorStore.create(tmp_path / "ix", DIM, "auto")
    store.add(ids_of(500), data[:500])
    store.save()
    assert store.built_kind == "flat"
    store.add(ids_of(2500, 500), data[500:])
    store.save()
    assert store.built_kind == "hnsw-sq8"
    store.close()
    assert VectorStore.open(tmp_path / "ix").built_kind == "hnsw-sq8"


def test_rebuild_compacts_tombstones(tmp_path, data):
    store = filled(tmp_path / "ix", "hnsw", data)
    store.delete(ids_of(2000))
    store.save()  # tombstones past a quarter of the items: rebuilt
    assert store._index.ntotal == len(store) == 1000


def test_encoder_mismatch_is_refused(tmp_path):
    folder = tmp_path / "ix"
    VectorStore.create(folder, 4, "flat", encoder={"name": "a", "dimension": 4, "fingerprint": "f1"}).close()
    with pytest.raises(EncoderMismatchError, match="fingerprint"):
        VectorStore.open(folder, encoder={"name": "b", "dimension": 4, "fingerprint": "f2"})
    with pytest.raises(EncoderMismatchError, match="dimension"):
        VectorStore.open(folder, encoder={"name": "c", "dimension": 8, "fingerprint": "f1"})
    VectorStore.open(folder, encoder={"name": "renamed", "dimension": 4, "fingerprint": "f1"}).close()


def test_existing_index_needs_force(tmp_path):
    folder = tmp_path / "ix"
    store = VectorStore.create(folder, 2, "flat")
    store.add(["a"], [[1, 0]])
    store.close()
    with pytest.raises(IndexFolderError, match="--force"):
        VectorStore.create(folder, 2, "flat")
    fresh = VectorStore.create(folder, 2, "flat", force=True)
    assert len(fresh) == 0


def test_damaged_folders_give_clear_errors(tmp_path, data):
    with pytest.raises(IndexFolderError, match="no index folder"):
        VectorStore.open(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(IndexFolderError, match="not a twin index"):
        VectorStore.open(tmp_path / "empty")
    folder = tmp_path / "ix"
    store = filled(folder, "flat", data)
    store.save()
    store.close()
    (folder / "manifest.json").write_text("{not json")
    with pytest.raises(IndexFolderError, match="damaged manifest"):
        VectorStore.open(folder)


def test_unreadable_snapshot_is_rebuilt_from_sqlite(tmp_path, data, capsys):
    folder = tmp_path / "ix"
    store = filled(folder, "ivf-sq8", data)
    store.save()
    store.close()
    snapshot = next(folder.glob("index-*.faiss"))
    snapshot.write_bytes(snapshot.read_bytes()[:100])
    reopened = VectorStore.open(folder)
    assert "rebuilding" in capsys.readouterr().err
    assert len(reopened) == len(data)
    assert reopened.search(data[42], k=1)[0][0].id == "item-42"


def test_empty_store_searches_empty(tmp_path):
    for kind in KINDS:
        store = VectorStore.create(tmp_path / kind, 4, kind)
        assert store.search([[1, 0, 0, 0]], k=3) == [[]]
        store.save()
        store.close()
        assert VectorStore.open(tmp_path / kind).search([[1, 0, 0, 0]], k=3) == [[]]


def test_rebuild_aside_keeps_writes_made_during_it(tmp_path, monkeypatch, data):
    """A save that rebuilds (here flat -> hnsw-sq8) builds without the lock; writes that land
    meanwhile must all be in the index that is swapped in."""
    import threading

    monkeypatch.setattr(index.kinds, "AUTO_APPROXIMATE_FROM", 1500)
    store = VectorStore.create(tmp_path / "ix", DIM, "auto")
    store.add(ids_of(2000), data[:2000])
    built = threading.Event()
    original = store._build

    def slow_build():
        result = original()
        built.set()  # the new index is complete; now writes race the swap
        store.add(ids_of(1000, 2000), data[2000:])  # new items (lock taken: the old index serves them)
        store.delete(["item-0"])
        store.add(["item-1"], data[2500])  # a replaced version: a tombstone in the new index
        return result

    monkeypatch.setattr(store, "_build", slow_build)
    store.save()
    assert built.is_set() and store.built_kind == "hnsw-sq8"
    assert len(store) == 2999
    for i in (2000, 2999, 1500):
        assert store.search(data[i], k=1)[0][0].id == f"item-{i}"
    assert "item-0" not in [h.id for h in store.search(data[0], k=5)[0]]
    assert {h.id for h in store.search(data[2500], k=2)[0]} == {"item-1", "item-2500"}
    store.close()
    reopened = VectorStore.open(tmp_path / "ix")
    assert len(reopened) == 2999 and reopened.search(data[2999], k=1)[0][0].id == "item-2999"
