"""A store killed with SIGKILL at any moment, saves included, opens with every acknowledged write."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from index import VectorStore

WRITER = textwrap.dedent("""
    import sys
    import numpy as np
    from index import VectorStore
    folder, kind = sys.argv[1], sys.argv[2]
    store = VectorStore.create(folder, 64, kind) if sys.argv[3] == "new" else VectorStore.open(folder)
    rng = np.random.default_rng(int(sys.argv[4]))
    batch = 0
    while True:
        ids = [f"b{sys.argv[4]}-{batch}-{i}" for i in range(500)]
        store.add(ids, rng.standard_normal((500, 64)).astype("float32"))
        print(f"acked {batch}", flush=True)
        store.save()  # snapshot writes are where a kill is most likely to land
        print(f"saved {batch}", flush=True)
        batch += 1
""")


def run_and_kill(folder, kind: str, mode: str, seed: int, after_acks: int, extra_delay: float) -> list[int]:
    """Start a writer, SIGKILL it after ``after_acks`` acknowledged batches plus a delay."""
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(folder), kind, mode, str(seed)],
        stdout=subprocess.PIPE, text=True, cwd=os.getcwd(),
    )
    acked: list[int] = []
    for line in proc.stdout:
        if line.startswith("acked"):
            acked.append(int(line.split()[1]))
            if len(acked) >= after_acks:
                break
    time.sleep(extra_delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    for line in proc.stdout.read().splitlines():  # lines written before the kill still count
        if line.startswith("acked"):
            acked.append(int(line.split()[1]))
    return acked


@pytest.mark.parametrize("kind", ["flat", "hnsw", "hnsw-sq8", "ivf-sq8"])
def test_sigkill_mid_write_leaves_a_readable_index(tmp_path, kind):
    folder = tmp_path / "ix"
    rng = np.random.default_rng(0)
    expected: list[str] = []
    for round_, delay in enumerate([0.0, 0.003, 0.01, 0.03]):
        mode = "new" if round_ == 0 else "open"
        acked = run_and_kill(folder, kind, mode, round_, after_acks=int(rng.integers(2, 5)), extra_delay=delay)
        assert acked, "the writer acknowledged nothing"
        expected += [f"b{round_}-{b}-{i}" for b in acked for i in (0, 499)]
        store = VectorStore.open(folder)
        for item_id in expected:
            record = store.get(item_id)
            assert record is not None, f"acknowledged {item_id} lost after SIGKILL (round {round_})"
            assert store.search(record.vector, k=1)[0][0].id == item_id
        assert len(store) >= 500 * len(expected) // 2
        store.close()


def test_no_temp_files_survive_the_next_save(tmp_path):
    folder = tmp_path / "ix"
    run_and_kill(folder, "flat", "new", 0, after_acks=3, extra_delay=0.002)
    (folder / ".index-999.faiss.tmp").write_bytes(b"half a snapshot")
    store = VectorStore.open(folder)
    store.save()
    assert not list(folder.glob(".index-*.tmp"))
    assert len(list(folder.glob("index-*.faiss"))) == 1
