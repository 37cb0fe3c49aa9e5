"""One index, many processes: one writer at a time (an OS lock naming its holder), readers beside
it, nothing lost when writers race, and builds that replace only the index's own files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from click.testing import CliRunner

from index import VectorStore
from retrieval.cli import cli
from retrieval.retriever import Retriever

from .conftest import DEMO_CSV

TWIN = [sys.executable, "-m", "retrieval.cli"]

HOLD = textwrap.dedent("""
    import sys, time
    from index import VectorStore
    store = VectorStore.open(sys.argv[1])
    print("held", flush=True)
    time.sleep(600)
""")


def twin(*args: object, input: str | None = None):
    return CliRunner().invoke(cli, [str(a) for a in args], input=input)


def run_twin(*args: object, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*TWIN, *map(str, args)], capture_output=True, text=True, timeout=timeout)


def corpus(path: Path, prefix: str, n: int) -> Path:
    lines = ["id,text"] + [f"{prefix}-{i},Question {i} of batch {prefix}: how do {prefix} systems handle case {i}?"
                           for i in range(n)]
    path.write_text("\n".join(lines) + "\n")
    return path


def one_line_error(result, *needles: str) -> str:
    assert result.exit_code != 0 if hasattr(result, "exit_code") else result.returncode != 0
    err = result.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err and "internal error" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


def test_a_second_writer_is_refused_naming_the_holder_while_readers_go_on(index_copy, tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(index_copy)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        extra = corpus(tmp_path / "extra.csv", "x", 3)
        one_line_error(twin("add", extra, "--index", index_copy), f"pid {holder.pid}", "one writer at a time")
        one_line_error(twin("delete", "faq-001", "--index", index_copy), f"pid {holder.pid}")
        one_line_error(twin("build", DEMO_CSV, "--index", index_copy, "--force"), f"pid {holder.pid}")
        query = twin("query", "--index", index_copy, "--json", "-k", "1", "Where are you from?")
        assert query.exit_code == 0 and json.loads(query.stdout)["matches"][0]["id"] == "faq-208"
        assert json.loads(twin("info", "--index", index_copy, "--json").stdout)["count"] == 258
        started = time.monotonic()
        one_line_error(twin("add", extra, "--index", index_copy, "--wait", "1.5"), f"pid {holder.pid}")
        assert time.monotonic() - started >= 1.5  # it waited before giving up
        opened: list = []
        waiter = threading.Thread(target=lambda: opened.append(VectorStore.open(index_copy, wait_s=60)))
        waiter.start()
        time.sleep(1)
        assert waiter.is_alive() and not opened  # still waiting for the lock
        holder.kill()  # the kernel drops a dead holder's lock, even after SIGKILL
        waiter.join(60)
        assert opened and len(opened[0]) == 258
        opened[0].close()
        assert twin("add", extra, "--index", index_copy).exit_code == 0
    finally:
        holder.kill()
        holder.wait()
    assert json.loads(twin("info", "--index", index_copy, "--json").stdout)["count"] == 261


def test_two_adds_at_once_lose_nothing(index_copy, tmp_path):
    """The reported loss: two `twin add` of 1,500 new ids each into one index at the same time."""
    a, b = corpus(tmp_path / "a.csv", "a", 1500), corpus(tmp_path / "b.csv", "b", 1500)
    procs = [subprocess.Popen([*TWIN, "add", str(f), "--index", str(index_copy), "--wait", "300"],
                              stderr=subprocess.PIPE, text=True) for f in (a, b)]
    for proc in procs:
        assert proc.wait(300) == 0, proc.stderr.read()
    with Retriever.open(index_copy, read_only=True) as retriever:
        assert len(retriever) == 258 + 3000
        assert retriever.store.verify()["missing"] == 0
        texts = [f"Question {i} of batch {p}: how do {p} systems handle case {i}?"
                 for p in "ab" for i in (0, 777, 1499)]
        for text, result in zip(texts, retriever.search(texts, k=1)):
            assert result.matches[0].text == text and result.matches[0].score > 0.999
    # restarted as a writer, the index holds them too (the snapshot is not trusted blindly)
    with VectorStore.open(index_copy) as store:
        check = store.verify()
        assert (check["missing"], check["rows"], check["live_entries"]) == (0, 3258, 3258)


def test_two_builds_into_one_new_folder(tmp_path):
    target = tmp_path / "fresh"
    procs = [subprocess.Popen([*TWIN, "build", str(DEMO_CSV), "--index", str(target)], stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    codes = [p.wait(300) for p in procs]
    errors = [p.stderr.read() for p in procs]
    assert sorted(codes) == [0, 1], errors
    loser = errors[codes.index(1)].strip()
    assert len(loser.splitlines()) == 1 and "internal error" not in loser, loser
    assert "another process is writing" in loser or "already exists" in loser, loser
    assert json.loads(twin("info", "--index", target, "--json").stdout)["count"] == 258


def test_build_force_replaces_only_the_index_own_files(tmp_path):
    real = tmp_path / "real"
    link = tmp_path / "link"
    assert twin("build", DEMO_CSV, "--index", real).exit_code == 0
    link.symlink_to(real, target_is_directory=True)
    (real / "notes.txt").write_text("mine")
    (real / "keep").mkdir()
    (real / "keep" / "a.txt").write_text("also mine")
    small = tmp_path / "small.csv"
    small.write_text("id,text\ns1,How do I repot a cactus?\ns2,What soil do succulents need?\n")
    result = twin("build", small, "--index", link, "--force")
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and link.resolve() == real.resolve()
    assert (real / "notes.txt").read_text() == "mine" and (real / "keep" / "a.txt").read_text() == "also mine"
    assert json.loads(twin("info", "--index", link, "--json").stdout)["count"] == 2
    leftovers = [p.name for p in real.iterdir()]
    assert sum(n.endswith(".faiss") for n in leftovers) == 1 and sum(n.endswith(".sqlite") for n in leftovers) == 1
    assert not [n for n in leftovers if n.startswith(".building")]


def test_build_refuses_a_folder_that_is_not_an_index(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    one_line_error(twin("build", DEMO_CSV, "--index", folder, "--force"), "not an index")
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]


def test_a_build_killed_midway_leaves_the_old_index(tmp_path):
    folder = tmp_path / "ix"
    assert twin("build", DEMO_CSV, "--index", folder).exit_code == 0
    big = tmp_path / "big.csv"
    big.write_text("id,text\n" + "".join(f"q{i},Is question {i} a duplicate of another?\n" for i in range(20000)))
    proc = subprocess.Popen([*TWIN, "build", str(big), "--index", str(folder), "--force"], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list(folder.glob(".building-*/meta.sqlite")) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1)
    proc.kill()
    proc.wait()
    assert json.loads(twin("info", "--index", folder, "--json").stdout)["count"] == 258
    assert twin("add", DEMO_CSV, "--index", folder).exit_code == 0  # the next writer clears the staging folder
    assert not list(folder.glob(".building-*")) and os.listdir(folder)


def serve(folder: Path, *options: str) -> tuple[subprocess.Popen, str]:
    """`twin serve` in a child process on a free port, once ready."""
    import httpx

    from .test_http import free_port

    port = free_port()
    proc = subprocess.Popen([*TWIN, "serve", "--index", str(folder), "--port", str(port), *options],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/ready").status_code == 200:
                return proc, base
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("server did not become ready")


def test_a_served_index_sends_writers_to_the_server_and_readers_see_its_writes(index_copy, tmp_path):
    import httpx

    server, base = serve(index_copy)
    try:
        extra = corpus(tmp_path / "extra.csv", "x", 2)
        one_line_error(twin("add", extra, "--index", index_copy), "POST /items", base, f"pid {server.pid}")
        item = {"items": [{"id": "via-http", "text": "How do I water a bonsai tree in winter?"}]}
        assert httpx.post(f"{base}/items", json=item).status_code == 200
        query = twin("query", "--index", index_copy, "--json", "-k", "1", "How do I water a bonsai tree in winter?")
        assert query.exit_code == 0 and json.loads(query.stdout)["matches"][0]["id"] == "via-http"
    finally:
        server.terminate()
        server.wait(60)


def test_a_read_only_server_runs_beside_the_writer_and_follows_it(index_copy, tmp_path):
    import httpx

    server, base = serve(index_copy, "--read-only")
    try:
        extra = corpus(tmp_path / "extra.csv", "ro", 5)
        assert twin("add", extra, "--index", index_copy).exit_code == 0  # the read-only server holds no lock
        text = "Question 3 of batch ro: how do ro systems handle case 3?"
        deadline = time.monotonic() + 30
        while True:
            top = httpx.get(f"{base}/search", params={"q": text, "k": 1}).json()["results"][0]["matches"][0]
            if top["id"] == "ro-3":
                break
            assert time.monotonic() < deadline, top
            time.sleep(0.5)
        small = tmp_path / "small.csv"
        small.write_text("id,text\nnew-1,How do I tune a guitar by ear?\n")
        assert twin("build", small, "--index", index_copy, "--force").exit_code == 0  # a new index: reloaded
        while httpx.get(f"{base}/stats").json()["count"] != 1:
            assert time.monotonic() < deadline + 30
            time.sleep(0.5)
        assert httpx.post(f"{base}/items", json={"items": [{"id": "a", "text": "b"}]}).status_code == 403
    finally:
        server.terminate()
        server.wait(60)
