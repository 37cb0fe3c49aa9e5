"""scripts/bench_index.py on real-vector files: bad files get one line; a small run reports each kind."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from .conftest import clustered

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_index.py"


def bench(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, SCRIPT, *map(str, args)], capture_output=True, text=True, timeout=300)


def saved(path: Path, array: np.ndarray) -> Path:
    np.save(path, array)
    return path


@pytest.mark.parametrize(
    ("make", "extra", "message"),
    [
        (lambda d: d.astype(np.int64), [], "holds int64 values, expected float vectors"),
        (lambda d: np.where(np.arange(len(d))[:, None] == 7, np.nan, d), [], "row 7 contains NaN or infinity"),
        (lambda d: d[0], [], "has shape (16,), expected (rows, dimension)"),
        (lambda d: d, ["--dim", "384"], "vectors of dimension 16, expected 384"),
        (lambda d: np.zeros_like(d), [], "row 0 is all zeros"),
    ],
)
def test_bad_vector_files_are_one_line(tmp_path, make, extra, message):
    path = saved(tmp_path / "v.npy", make(clustered(100, 16)))
    result = bench("--vectors", path, *extra)
    assert result.returncode != 0
    assert result.stderr.strip() == f"{path}: {message}"


def test_queries_of_another_dimension_and_files_that_are_not_npy(tmp_path):
    vectors = saved(tmp_path / "v.npy", clustered(100, 16))
    queries = saved(tmp_path / "q.npy", clustered(10, 8))
    result = bench("--vectors", vectors, "--queries", queries)
    assert result.stderr.strip() == f"{queries}: vectors of dimension 8, expected 16"
    text = tmp_path / "v.txt"
    text.write_text("0.1 0.2\n")
    result = bench("--vectors", text)
    assert result.returncode != 0 and len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith(f"{text}: not a NumPy .npy array")
    assert bench("--vectors", vectors, "--target-recall", "0").returncode == 2


def test_a_small_run_on_real_vector_files(tmp_path):
    data = clustered(2100, 16, seed=4)
    data[5] = data[4]  # an exact repeat is dropped
    vectors = saved(tmp_path / "v.npy", data)
    out = tmp_path / "r.json"
    result = bench("--vectors", vectors, "--n-queries", "100", "--singles", "10", "--kinds", "flat,ivf-sq8",
                   "--target-recall", "0.9", "--json", out)
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["n"] == 1999 and "1 exact repeats dropped" in report["data"]
    flat, tuned, *fixed = report["rows"]
    assert (flat["kind"], flat["knobs"], flat["recall_at_10"]) == ("flat", "exact", 1.0)
    assert tuned["knobs"].startswith("tuned: nprobe=") and tuned["recall_at_10"] >= 0.85
    assert [r["knobs"] for r in fixed] == [f"nprobe={n}" for n in (8, 16, 32, 64, 128, 256)]
