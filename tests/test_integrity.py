"""What opening an index trusts and what it checks: snapshot checksums and contents, manifest
fields, a damaged SQLite file, a model folder that moved; and inputs the CLI must refuse by line."""

from __future__ import annotations

import json
import os
import sqlite3

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from index import IndexFolderError, VectorStore
from retrieval.encoders import LSTMEncoder

from .conftest import clustered
from .test_processes import one_line_error, twin

DIM = 16


def saved_store(folder, n: int = 500, kind: str = "flat") -> np.ndarray:
    data = clustered(n, DIM, seed=3)
    with VectorStore.create(folder, DIM, kind) as store:
        store.add([f"v{i}" for i in range(n)], data)
        store.save()
    return data


def manifest(folder) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def write_manifest(folder, data: dict) -> None:
    (folder / "manifest.json").write_text(json.dumps(data))


@pytest.mark.parametrize("kind", ["flat", "ivf-sq8"])
def test_a_snapshot_with_flipped_bytes_is_detected_and_rebuilt(tmp_path, kind, capfd):
    folder = tmp_path / "ix"
    data = saved_store(folder, 2000, kind)
    snap = folder / manifest(folder)["snapshot"]["file"]
    raw = bytearray(snap.read_bytes())
    for pos in range(len(raw) // 2, len(raw) // 2 + 4000, 7):  # inside the vectors: still a readable index
        raw[pos] ^= 0x5A
    snap.write_bytes(bytes(raw))
    with VectorStore.open(folder, read_only=True) as store:
        assert "checksum mismatch" in capfd.readouterr().err
        found = store.search(data[[5, 900, 1999]], k=1)
        assert [row[0].id for row in found] == ["v5", "v900", "v1999"]


def test_a_snapshot_lacking_committed_rows_is_rebuilt(tmp_path, capfd):
    """What two unlocked writers used to leave: a manifest claiming a seq its snapshot lacks."""
    folder = tmp_path / "ix"
    data = saved_store(folder, 300)
    extra = clustered(50, DIM, seed=9)
    with VectorStore.open(folder) as store:
        store.add([f"late{i}" for i in range(50)], extra)  # committed, not snapshotted
        last = store._meta.last_seq()
    m = manifest(folder)
    m["snapshot"]["seq"] = last  # the snapshot file itself is unchanged (its checksum still matches)
    write_manifest(folder, m)
    with VectorStore.open(folder) as store:
        assert "lacks 50 items" in capfd.readouterr().err
        assert store.search(extra[17], k=1)[0][0].id == "late17"
        assert store.search(data[3], k=1)[0][0].id == "v3"
        assert store.verify()["missing"] == 0


@pytest.mark.parametrize("snapshot", [
    {"file": "../../../../etc/passwd", "seq": 1}, {"file": "/etc/passwd", "seq": 1}, ["index-1.faiss"],
    {"file": "index-1.faiss", "seq": "1"},
])
def test_a_manifest_never_opens_files_elsewhere(tmp_path, snapshot):
    folder = tmp_path / "ix"
    saved_store(folder, 50)
    write_manifest(folder, {**manifest(folder), "snapshot": snapshot})
    with pytest.raises(IndexFolderError, match="damaged manifest"):
        VectorStore.open(folder)
    one_line_error(twin("info", "--index", folder), "damaged manifest")


def test_a_damaged_sqlite_file_is_one_line(tmp_path):
    folder = tmp_path / "ix"
    saved_store(folder, 50)
    (folder / manifest(folder)["meta_file"]).write_bytes(b"this is not a database" * 100)
    for side in ("-wal", "-shm"):
        (folder / (manifest(folder)["meta_file"] + side)).unlink(missing_ok=True)
    err = one_line_error(twin("info", "--index", folder), "the index is damaged", "twin build --force")
    assert "DatabaseError" not in err


def test_the_model_path_is_stored_resolved_and_a_missing_one_is_named(tmp_path, monkeypatch):
    model = tmp_path / "models" / "m-lstm"
    LSTMEncoder(["<pad>", "<unk>", "how", "do", "i"], {"embed_dim": 8, "hidden": 8, "out_dim": 8}).save(model)
    corpus = tmp_path / "c.csv"
    corpus.write_text("id,text\na,How do I cook rice?\nb,How do I boil eggs?\n")
    monkeypatch.chdir(tmp_path / "models")
    assert twin("build", corpus, "--index", tmp_path / "ix", "--model", "m-lstm").exit_code == 0
    assert manifest(tmp_path / "ix")["encoder"]["path"] == str(model.resolve())
    monkeypatch.chdir(tmp_path)  # elsewhere, the index still finds its model
    assert twin("query", "--index", "ix", "How do I cook rice?").exit_code == 0
    os.rename(model, tmp_path / "moved")
    one_line_error(twin("query", "--index", "ix", "rice"), str(model.resolve()), "missing", "--model")


def test_add_without_ids_never_replaces_silently(tmp_path):
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    first.write_text("How do I reset my router?\nWhy is my wifi slow?\n")
    second.write_text("How do I plant tulips?\nWhen do roses bloom?\nDo cats like water?\n")
    folder = tmp_path / "ix"
    assert twin("build", first, "--index", folder).exit_code == 0
    one_line_error(twin("add", second, "--index", folder), "no id column", "--id-prefix", "nothing was added")
    assert json.loads(twin("info", "--index", folder, "--json").stdout)["count"] == 2
    result = twin("add", second, "--index", folder, "--id-prefix", "b-")
    assert result.exit_code == 0, result.output
    found = json.loads(twin("query", "--index", folder, "--json", "-k", "1", "Why is my wifi slow?").stdout)
    assert found["matches"][0]["id"] == "2"  # the first file's item is still there
    assert json.loads(twin("info", "--index", folder, "--json").stdout)["count"] == 5


@pytest.mark.parametrize("content, where", [
    ('{"id": "a", "text": "fine"}\n{"id": "b", "text": "bad \\ud800 text"}\n', ":2:"),
    ('{"id": "a\\nb", "text": "an id with a newline"}\n', ":1:"),
    ('{"id": "   ", "text": "a blank id"}\n', ":1:"),
    ('{"id": "a", "text": "deep", "p": ' + "[" * 40 + "]" * 40 + "}\n", ":1:"),
    ('{"id": "a", "text": "ok", "p": {"\\udc00": 1}}\n', ":1:"),
])
def test_bad_jsonl_items_are_located(tmp_path, content, where):
    path = tmp_path / "c.jsonl"
    path.write_text(content)
    err = one_line_error(twin("build", path, "--index", tmp_path / "ix"), f"c.jsonl{where}")
    assert not (tmp_path / "ix").exists(), err


def test_parquet_timestamps_become_iso_text(tmp_path):
    import datetime as dt

    path = tmp_path / "c.parquet"
    table = pa.table({"id": ["a", "b"], "text": ["How do I bake bread?", "How do I fry fish?"],
                      "when": [dt.datetime(2024, 5, 1, 12, 30), dt.datetime(2025, 1, 2, 3, 4, 5)],
                      "day": [dt.date(2024, 5, 1), None], "score": [float("nan"), 1.5]})
    pq.write_table(table, path)
    assert twin("build", path, "--index", tmp_path / "ix").exit_code == 0
    found = json.loads(twin("query", "--index", tmp_path / "ix", "--json", "-k", "1", "How do I bake bread?").stdout)
    assert found["matches"][0]["payload"] == {"when": "2024-05-01T12:30:00", "day": "2024-05-01", "score": None}


def test_sqlite_rows_survive_a_failed_transaction(tmp_path):
    """A failed write rolls back and the error is the real one (never 'cannot rollback')."""
    folder = tmp_path / "ix"
    saved_store(folder, 10)
    with VectorStore.open(folder) as store:
        store._meta._db.execute("CREATE TRIGGER no_x BEFORE INSERT ON items WHEN NEW.id = 'x' "
                                "BEGIN SELECT RAISE(ABORT, 'refused by trigger'); END")
        with pytest.raises(sqlite3.IntegrityError, match="refused by trigger"):
            store.add(["y", "x"], clustered(2, DIM, seed=4))
        assert len(store) == 10 and store.get("y") is None
        store.add(["z"], clustered(1, DIM, seed=5))
        assert len(store) == 11
