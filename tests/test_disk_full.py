"""A full disk, for real: a small tmpfs filled to the last byte. Writes fail with "disk full"
and keep nothing, the index stays as it was, snapshots are retried and recover. Skipped where
this process may not mount a tmpfs (not root)."""

from __future__ import annotations

import errno
import json
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from .conftest import DEMO_CSV
from .test_http import running
from .test_processes import one_line_error, twin


@pytest.fixture
def small_disk(tmp_path) -> Path:
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Write until the disk refuses; the file that filled it."""
    filler = disk / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def many(path: Path, n: int = 800) -> Path:
    path.write_text("id,text\n" + "".join(f"m{i},Is this question number {i} about full disks?\n" for i in range(n)))
    return path


def count(folder: Path) -> int:
    return json.loads(twin("info", "--index", folder, "--json").stdout)["count"]


def test_add_and_build_on_a_full_disk_say_so_and_lose_nothing(small_disk, demo_index_dir, tmp_path):
    folder = small_disk / "ix"
    shutil.copytree(demo_index_dir, folder)
    extra = many(tmp_path / "extra.csv")
    filler = fill(small_disk)
    one_line_error(twin("add", extra, "--index", folder), "disk full")
    one_line_error(twin("build", extra, "--index", folder, "--force"), "disk full")
    one_line_error(twin("delete", "faq-001", "--index", folder), "disk full")
    filler.unlink()
    assert count(folder) == 258
    assert not list(folder.glob(".building-*")) and not list(folder.glob(".*.tmp"))
    result = twin("add", extra, "--index", folder)
    assert result.exit_code == 0, result.output
    assert count(folder) == 258 + 800


def test_a_new_build_on_a_full_disk_leaves_no_folder(small_disk, tmp_path):
    filler = fill(small_disk)
    one_line_error(twin("build", DEMO_CSV, "--index", small_disk / "new"), "disk full")
    assert not (small_disk / "new").exists()
    filler.unlink()


def test_the_server_retries_snapshots_and_answers_507_while_the_disk_is_full(small_disk, demo_index_dir):
    folder = small_disk / "ix"
    shutil.copytree(demo_index_dir, folder)
    with running(folder, snapshot_every_s=1) as base, httpx.Client(base_url=base, timeout=60) as http:
        item = {"items": [{"id": "before-full", "text": "Written before the disk filled up"}]}
        assert http.post("/items", json=item).status_code == 200
        verdict = {"query_id": "faq-001", "id": "faq-002", "duplicate": True}
        assert http.post("/feedback", json=verdict).status_code == 200
        filler = fill(small_disk)
        for answer in (http.post("/feedback", json={**verdict, "id": "faq-003"}), http.put("/tau", json={"tau": 0.5})):
            assert answer.status_code == 507 and "disk full" in answer.json()["detail"], answer.text
        assert http.get("/feedback").json()["counts"] == {"duplicate": 1, "not_duplicate": 0}
        assert http.get("/stats").json()["tau"] != 0.5
        deadline = time.monotonic() + 30
        while http.get("/stats").json()["snapshot"]["failures"] < 2:
            assert time.monotonic() < deadline, http.get("/stats").json()
            time.sleep(0.2)
        snapshot = http.get("/stats").json()["snapshot"]
        assert "disk full" in snapshot["last_error"] and snapshot["pending"]
        assert not list(folder.glob(".*.tmp"))
        big = {"items": [{"id": f"full-{i}", "text": f"Is number {i} written to a full disk?"} for i in range(500)]}
        refused = http.post("/items", json=big)
        assert refused.status_code == 507 and "disk full" in refused.json()["detail"]
        assert http.get("/items/full-0").status_code == 404
        found = http.get("/search", params={"q": "Written before the disk filled up", "k": 1}).json()
        assert found["results"][0]["matches"][0]["id"] == "before-full"  # searches go on
        filler.unlink()
        while http.get("/stats").json()["snapshot"]["failures"]:
            assert time.monotonic() < deadline + 30
            time.sleep(0.2)
        snapshot = http.get("/stats").json()["snapshot"]
        assert snapshot["last_saved_at"] and not snapshot["pending"]
        assert http.post("/items", json=big).status_code == 200
    assert count(folder) == 258 + 1 + 500
