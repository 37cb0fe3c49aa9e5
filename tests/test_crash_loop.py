"""A writer killed with SIGKILL again and again, in adds, replacements, deletes, snapshots and
rebuilds aside; after every kill the index opens whole and holds exactly what was acknowledged.

Two runs: ``auto`` crossing 30,000 items (so its flat index is rebuilt aside as hnsw-sq8) and
``hnsw`` taking enough replacements and deletes to pass 1,000 tombstones (a compaction rebuild).
The encoder is a siamese LSTM saved untrained: real encoding of real texts, fast enough for
dozens of restarts. ``TWIN_CRASH_ROUNDS`` sets the kills per run (default 20: each kind of write
is the target of at least three, and up to 10 more rounds aim at any kind no kill landed in; set 50
or more for a longer soak)."""

from __future__ import annotations

import json
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import faiss
import numpy as np
import pytest

from retrieval.encoders import LSTMEncoder
from retrieval.retriever import Retriever

from .conftest import ROOT
from .crash_worker import WORDS, text_of

ROUNDS = int(os.environ.get("TWIN_CRASH_ROUNDS", "20"))
TARGETS = ["add", "replace", "delete", "save", "rebuild", "any"]
#: How long after an operation begins the kill may come, seconds: within the time each one takes
#: here, so that the kill lands inside it (a delete commits in a few ms, a rebuild takes seconds).
KILL_WITHIN = {"add": 0.25, "replace": 0.03, "delete": 0.002, "save": 0.005, "rebuild": 1.5}
#: Rounds at most, after ``ROUNDS``, aimed at the kinds of write no kill has landed in yet.
EXTRA_ROUNDS = 10
#: Items the last check searches for by their text (every item's FAISS vector is compared directly).
FINAL_SAMPLE = 2_000


class Expected:
    """What the acknowledged writes say the index holds; ids an unacknowledged write touched are
    uncertain (either outcome is right) until a later acknowledged write settles them."""

    def __init__(self) -> None:
        self.present: dict[str, int] = {}
        self.deleted: set[str] = set()
        self.uncertain: set[str] = set()

    def apply(self, op: str, version: int, ids: list[str], acked: bool) -> None:
        if not acked:
            self.uncertain |= set(ids)
            for i in ids:
                self.present.pop(i, None)
            return
        for i in ids:
            self.uncertain.discard(i)
            if op == "delete":
                self.present.pop(i, None)
                self.deleted.add(i)
            else:
                self.present[i] = version


def parse(line: str) -> tuple[str, str, int, list[str]]:
    """('begin'|'ack', op, version, ids) of a worker line."""
    stage, op, *rest = line.split(" ", 2)
    version, ids = 0, []
    if op == "replace":
        version_text, payload = rest[0].split(" ", 1)
        version, ids = int(version_text), json.loads(payload)
    elif op in ("add", "delete"):
        ids = json.loads(rest[0])
    return stage, op, version, ids


def run_round(folder: Path, model: Path, kind: str, round_: int, expected: Expected, target_items: int,
              tmp: Path, seen: dict[str, int], target: str | None = None) -> None:
    """Start the worker, kill it at a chosen kind of moment (``target``; by default the round's turn
    in ``TARGETS``), fold its output into ``expected``."""
    state = tmp / "state.json"
    state.write_text(json.dumps({"present": expected.present, "target_items": target_items}))
    proc = subprocess.Popen([sys.executable, "-m", "tests.crash_worker", str(folder), str(model), kind, str(round_),
                             str(state)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x.rstrip("\n")) for x in proc.stdout] + [lines.put(None)],
                     daemon=True).start()
    rng = random.Random(round_ * 7 + len(kind))
    target = target or TARGETS[round_ % len(TARGETS)]
    deadline = time.monotonic() + 20
    in_flight: tuple[str, str, int, list[str]] | None = None  # (what, op, version, ids)

    def fold(line: str, current: tuple | None) -> tuple[str, str, int, list[str]] | None:
        try:
            stage, op, version, ids = parse(line)
        except (ValueError, IndexError):  # a line cut by the kill: a "begin" means the write had not
            return current  # started; an "ack" leaves the write in flight, unknown either way

        if stage == "ack":
            expected.apply(op, version, ids, acked=True)
            if op == "save":
                seen[f"saved as {line.split()[-1]}"] = seen.get(f"saved as {line.split()[-1]}", 0) + 1
            return None
        return ("rebuild" if op == "save" and line.endswith("rebuild") else op), op, version, ids

    while True:
        try:
            line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            line = ""
        if line is None:
            raise AssertionError(f"round {round_}: the worker died by itself")
        if line.startswith("ready"):
            seen["most items"] = max(seen.get("most items", 0), int(line.split()[1]))
        if line.startswith(("begin", "ack")):
            in_flight = fold(line, in_flight)
            if in_flight and (target in (in_flight[0], "any") or time.monotonic() > deadline):
                time.sleep(rng.uniform(0, KILL_WITHIN[in_flight[0]]))
                break
        elif time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    while (line := lines.get()) is not None:  # lines printed before the kill landed
        if line.startswith(("begin", "ack")):
            in_flight = fold(line, in_flight)
    what = "nothing"
    if in_flight is not None:
        what, op, version, ids = in_flight
        expected.apply(op, version, ids, acked=False)
    seen[what] = seen.get(what, 0) + 1


def check(folder: Path, model: Path, expected: Expected, sample: int, rng: random.Random,
          every_vector: bool = False) -> None:
    """The index opens; FAISS holds every SQLite row; acknowledged items are there with their
    text and a sample of them found by it at rank 1; acknowledged deletes stay deleted. With
    ``every_vector``, FAISS holds for every acknowledged item the vector SQLite holds (as its
    storage encodes it)."""
    with Retriever.open(folder, model, read_only=True) as retriever:
        health = retriever.store.verify()
        assert health["missing"] == 0 and health["live_entries"] == health["rows"] == len(retriever), health
        present = list(expected.present)
        assert sorted(retriever.existing(present)) == sorted(present)
        assert retriever.existing(sorted(expected.deleted - expected.uncertain)) == []
        if every_vector:
            differ = held_otherwise(retriever.store, present)
            assert not differ, f"FAISS holds other vectors for {differ[:5]}"
        picked = present if sample >= len(present) else rng.sample(present, sample)
        for item_id in picked[:300]:
            assert retriever.get(item_id).text == text_of(item_id, expected.present[item_id]), item_id
        texts = [text_of(i, expected.present[i]) for i in picked]
        # nprobe: the query is the stored vector, so its own list is the first probed; ef_search past
        # the item count makes the graph search all but exhaustive in this dense cloud (an untrained
        # LSTM puts texts at cosine 0.86 on average).
        results = retriever.search(texts, k=1, nprobe=64, ef_search=8192, batch_size=512)
        wrong = [i for i, r in zip(picked, results) if not r.matches or r.matches[0].id != i]
        # HNSW can leave a node no link leads to (in this dense cloud, about 1 in 5,000): the item
        # is in FAISS yet no graph search reaches it. That is the kind's approximation, not a lost
        # write, so each miss must show its entry intact: FAISS holds, under the item's row, the
        # vector SQLite holds for it. The exact-candidate kinds get no misses at all.
        hnsw = retriever.store.built_kind.startswith("hnsw")
        allowed = max(3, len(picked) // 100) if hnsw else 0
        assert len(wrong) <= allowed, f"{len(wrong)} acknowledged items not at rank 1 for their own text: {wrong[:5]}"
        differ = held_otherwise(retriever.store, wrong)
        assert not differ, f"FAISS holds other vectors for {differ[:5]}"


def held_otherwise(store, ids: list[str]) -> list[str]:  # noqa: ANN001 - VectorStore
    """Those of ``ids`` whose row FAISS holds with another vector than SQLite's (as the index's
    storage encodes it)."""
    if not ids:
        return []
    held = held_vectors(store)
    records = [store.get(i) for i in ids]
    stored = requantised(store, np.stack([r.vector for r in records]))
    faiss_side = np.stack([held[r.seq] for r in records])
    return [ids[i] for i in np.flatnonzero(np.abs(stored - faiss_side).max(axis=1) > 1e-5)]


def requantised(store, vectors: np.ndarray) -> np.ndarray:  # noqa: ANN001 - VectorStore
    """``vectors`` as the index's storage encodes and decodes them (SQ8 rounds, and clips what
    lies outside the range it was trained on: a vector's own cosine can fall to 0.98)."""
    inner = faiss.downcast_index(store._index.index)
    codec = faiss.downcast_index(inner.storage) if isinstance(inner, faiss.IndexHNSW) else inner
    return codec.sa_decode(codec.sa_encode(np.ascontiguousarray(vectors, dtype=np.float32)))


def held_vectors(store) -> dict[int, np.ndarray]:  # noqa: ANN001 - VectorStore
    """Row seq -> the vector an IDMap-wrapped FAISS index holds for it, as its storage gives it back
    (SQ8: quantised); a seq held twice is an error."""
    index = store._index
    seqs = faiss.vector_to_array(index.id_map)
    values, counts = np.unique(seqs, return_counts=True)
    assert (counts == 1).all(), f"rows held more than once in FAISS: {values[counts > 1][:5]}"
    return dict(zip(seqs.tolist(), index.index.reconstruct_n(0, index.ntotal)))


@pytest.mark.parametrize("kind, start_items, target_items", [("auto", 0, 33_000), ("hnsw", 3_000, 5_000)])
def test_sigkill_loop_keeps_every_acknowledged_write(tmp_path, kind, start_items, target_items):
    model = tmp_path / "lstm"
    LSTMEncoder(["<pad>", "<unk>", *WORDS], {"embed_dim": 32, "hidden": 64, "out_dim": 64}).save(model)
    folder = tmp_path / "ix"
    expected = Expected()
    seen: dict[str, int] = {}
    rng = random.Random(0)
    if start_items:
        with Retriever.create(folder, model, kind) as retriever:
            from retrieval.retriever import Item

            ids = [f"seed-{i}" for i in range(start_items)]
            retriever.upsert([Item(i, text_of(i, 0)) for i in ids], batch_size=512)
            retriever.save()
            expected.present.update(dict.fromkeys(ids, 0))
    for round_ in range(ROUNDS):
        run_round(folder, model, kind, round_, expected, target_items, tmp_path, seen)
        check(folder, model, expected, sample=200, rng=rng)
    # A kill aimed at a write that ends within a few ms can land after it (a delete commits in ~2 ms):
    # extra rounds aim again at each kind of write no kill has landed in yet, so that every kind is
    # covered without a flaky count.
    extra = EXTRA_ROUNDS if ROUNDS >= len(TARGETS) else 0
    for round_ in range(ROUNDS, ROUNDS + extra):
        missing = [t for t in ("add", "replace", "delete", "save") if t not in seen]
        if not missing:
            break
        run_round(folder, model, kind, round_, expected, target_items, tmp_path, seen, target=missing[0])
        check(folder, model, expected, sample=200, rng=rng)
    with Retriever.open(folder, model) as retriever:  # the next writer finishes what the kills left
        retriever.save()
        built = retriever.store.built_kind
    assert len(expected.present) >= 1_000, len(expected.present)  # the last check has acknowledged items to find
    check(folder, model, expected, sample=FINAL_SAMPLE, rng=rng, every_vector=True)
    if kind == "auto" and ROUNDS >= 20:  # it crossed 30,000 items and was rebuilt as hnsw-sq8
        assert seen["most items"] >= 30_000 and (built == "hnsw-sq8" or seen.get("saved as hnsw-sq8")), (built, seen)
    if ROUNDS >= len(TARGETS):
        assert {"add", "replace", "delete", "save"} <= set(seen), seen  # killed in each kind of write
    assert seen.get("rebuild", 0) >= 1 or ROUNDS < len(TARGETS), seen
