"""The float16 re-rank copy: the approximate kinds read only a shortlist from SQLite, with the same
results as re-ranking every candidate from SQLite; the copy survives reopening, is replaced by a
rebuild, and a damaged one is skipped. Real FAISS, real SQLite, real files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from index import VectorStore
from index.errors import IndexFolderError

from .conftest import clustered

DIM, K = 32, 10


@pytest.fixture
def built(tmp_path):
    """An ivf-pq store (the kind that re-ranks the most candidates) of 4,000 rows, saved."""
    vectors = clustered(4000, DIM)
    store = VectorStore.create(tmp_path / "ix", DIM, "ivf-pq")
    store.add([str(i) for i in range(len(vectors))], vectors, [f"t{i}" for i in range(len(vectors))])
    store.save()
    yield store, vectors
    store.close()


def answers(store: VectorStore, queries: np.ndarray) -> list[list[tuple[str, float]]]:
    return [[(h.id, round(h.score, 6)) for h in row] for row in store.search(queries, K)]


def test_the_copy_is_written_named_and_gives_the_same_answers(built, tmp_path):
    store, _ = built
    name = json.loads((tmp_path / "ix" / "manifest.json").read_text())["snapshot"]["rerank"]
    assert (tmp_path / "ix" / name).is_file() and store._copy is not None and len(store._copy) == 4000
    queries = clustered(60, DIM, seed=5)
    with_copy = answers(store, queries)
    copy, store._copy = store._copy, None
    from_sqlite = answers(store, queries)
    store._copy = copy
    # the same hits but where float16 rounding reorders candidates at the shortlist's edge, and
    # every score exact (read from SQLite for the shortlist)
    same = [len(set(a) & set(b)) / K for a, b in zip(with_copy, from_sqlite)]
    assert np.mean(same) >= 0.99 and min(same) >= 0.9
    for mine, theirs in zip(with_copy, from_sqlite):
        exact = dict(theirs)
        assert all(exact.get(h, s) == s for h, s in mine)


def test_only_a_shortlist_is_read_from_sqlite(built, monkeypatch):
    store, _ = built
    read: list[int] = []
    records = store._meta.records
    monkeypatch.setattr(store._meta, "records", lambda seqs, **kw: (read.append(len(seqs)), records(seqs, **kw))[1])
    store.search(clustered(1, DIM, seed=6), K)
    assert read == [K + K // 2]  # a shortlist, not the k * 16 candidates ivf-pq fetches
    assert store.search(np.empty((0, DIM), np.float32), K) == []


def test_rows_written_after_the_build_and_deletes_are_answered_right(built):
    store, vectors = built
    query = clustered(1, DIM, seed=7)
    store.add(["new"], query + 0.001)  # not in the copy: re-ranked from SQLite
    hits = store.search(query, K)
    assert hits[0][0].id == "new" and hits[0][0].score > 0.99
    store.delete(["new", hits[0][1].id])
    again = [h.id for h in store.search(query, K)[0]]
    assert "new" not in again and hits[0][1].id not in again and len(again) == K


def test_the_copy_survives_reopening_and_a_rebuild_replaces_it(built, tmp_path):
    store, _ = built
    queries = clustered(20, DIM, seed=8)
    before, old = answers(store, queries), store._copy.name
    store.close()
    with VectorStore.open(tmp_path / "ix", read_only=True) as reader:
        assert reader._copy is not None and reader._copy.name == old
        assert answers(reader, queries) == before
    with VectorStore.open(tmp_path / "ix") as writer:
        assert writer._copy.name == old
        writer.rebuild()
        writer.save()
        assert writer._copy.name != old and not (tmp_path / "ix" / old).exists()
        assert answers(writer, queries) == before


def test_a_damaged_copy_is_skipped_with_a_warning(built, tmp_path, capfd):
    store, _ = built
    queries = clustered(20, DIM, seed=9)
    before, path = answers(store, queries), store._copy.path
    store.close()
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size - 100)
    with VectorStore.open(tmp_path / "ix", read_only=True) as reader:
        assert "unusable re-rank copy" in capfd.readouterr().err
        assert reader._copy is None and answers(reader, queries) == before


def test_a_copy_name_outside_the_folder_is_a_damaged_manifest(built, tmp_path):
    store, _ = built
    store.close()
    manifest = json.loads((tmp_path / "ix" / "manifest.json").read_text())
    manifest["snapshot"]["rerank"] = "../../etc/passwd"
    (tmp_path / "ix" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexFolderError, match="not a re-rank copy name"):
        VectorStore.open(tmp_path / "ix", read_only=True)


def test_exact_kinds_write_no_copy(tmp_path):
    with VectorStore.create(tmp_path / "ix", DIM, "flat") as store:
        store.add(["a", "b"], clustered(2, DIM))
        store.save()
    assert not list((tmp_path / "ix").glob("rerank-*.bin"))


def test_a_cli_build_installs_its_copy_and_a_forced_rebuild_replaces_it(tmp_path, encoder):
    from click.testing import CliRunner

    from retrieval.cli import cli

    from .conftest import DEMO_CSV

    def build(*extra: str) -> str:
        result = CliRunner().invoke(cli, ["build", str(DEMO_CSV), "--index", str(tmp_path / "ix"),
                                          "--index-type", "hnsw-sq8", *extra])
        assert result.exit_code == 0, result.output
        return json.loads((tmp_path / "ix" / "manifest.json").read_text())["snapshot"]["rerank"]

    first = build()
    assert [p.name for p in (tmp_path / "ix").glob("rerank-*.bin")] == [first]
    second = build("--force")
    assert second != first and [p.name for p in (tmp_path / "ix").glob("rerank-*.bin")] == [second]
    answer = CliRunner().invoke(cli, ["query", "How do I reset my password?", "--index", str(tmp_path / "ix"),
                                      "--json"])
    assert answer.exit_code == 0 and json.loads(answer.stdout)["matches"][0]["id"] in {"faq-001", "faq-002"}


def test_a_disk_that_refuses_the_copy_costs_only_the_copy(tmp_path, monkeypatch, capfd):
    import errno

    from index import rerank

    real = rerank.RerankWriter.__init__

    def failing(self, folder, dim):  # noqa: ANN001
        real(self, folder, dim)

        class Full:
            def write(self, _data):  # noqa: ANN001
                raise OSError(errno.ENOSPC, "No space left on device")

            def __getattr__(self, name):  # noqa: ANN001
                return getattr(inner, name)

        inner, self._file = self._file, Full()

    monkeypatch.setattr(rerank.RerankWriter, "__init__", failing)
    vectors = clustered(3000, DIM)
    with VectorStore.create(tmp_path / "ix", DIM, "ivf-pq") as store:
        store.add([str(i) for i in range(len(vectors))], vectors)
        store.save()
        assert store._copy is None and "cannot write a re-rank copy" in capfd.readouterr().err
        assert store.search(vectors[:1], K)[0][0].id == "0"
    assert not list((tmp_path / "ix").glob("*rerank*"))
