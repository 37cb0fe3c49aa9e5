"""The HTTP service on a real uvicorn server on 127.0.0.1, with the real model and index."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn

from retrieval.api import Settings, create_app
from retrieval.api.server import server_config
from retrieval.retriever import Retriever


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running(folder: Path, groups=None, **settings):  # noqa: ANN001 - GroupBook | None
    """A uvicorn server in a thread, serving ``folder`` (and ``groups`` on its review page);
    yields its base URL."""
    retriever = Retriever.open(folder, read_only=settings.get("read_only", False))
    port = free_port()
    app = create_app(retriever, Settings(**settings), groups)
    server = uvicorn.Server(server_config(app, host="127.0.0.1", port=port))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 60
    while not server.started:
        assert time.time() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        retriever.close()


@pytest.fixture
def url(index_copy):
    with running(index_copy) as base:
        yield base


def test_search_upsert_get_delete_round_trip(url):
    with httpx.Client(base_url=url) as http:
        assert http.get("/health").json() == {"status": "alive"}
        assert http.get("/ready").json() == {"status": "ready"}
        got = http.get("/search", params={"q": "What country are you from?", "k": 2}).json()
        top = got["results"][0]["matches"][0]
        assert got["results"][0]["query"] == "What country are you from?"
        assert top["text"] in {"What country do you come from?", "Where are you from?"} and top["duplicate"]
        assert set(top) == {"id", "score", "duplicate", "text", "payload"}

        body = {"items": [{"id": "pet-1", "text": "How often should I feed my hamster?", "payload": {"src": "t"}}]}
        assert http.post("/items", json=body).json()["ids"] == ["pet-1"]
        found = http.post("/search", json={"texts": ["How many times a day do hamsters eat?"], "k": 1}).json()
        assert found["results"][0]["matches"][0]["id"] == "pet-1"  # found at once, no retraining
        assert http.get("/items/pet-1").json() == {"id": "pet-1", "text": body["items"][0]["text"],
                                                   "payload": {"src": "t"}}
        stats = http.get("/stats").json()
        assert stats["count"] == 259 and stats["built_kind"] == "flat" and stats["model"]["dimension"] == 384
        assert stats["search"] == {}  # exact: nothing to tune

        assert http.delete("/items/pet-1").json() == {"deleted": "pet-1"}
        missing = http.get("/items/pet-1")
        assert missing.status_code == 404 and "pet-1" in missing.json()["detail"]
        assert http.delete("/items/pet-1").status_code == 404
        two = http.post("/search", json={"texts": ["Where are you from?", "How old are you?"], "k": 3,
                                         "threshold": 0.99, "duplicates_only": True}).json()
        assert [len(r["matches"]) for r in two["results"]] == [1, 1]


def test_api_key_and_read_only(index_copy):
    item = {"items": [{"id": "a", "text": "A brand new question?"}]}
    with running(index_copy, api_key="s3cret") as base, httpx.Client(base_url=base) as http:
        assert http.post("/items", json=item).status_code == 401
        wrong = http.post("/items", json=item, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and "API key" in wrong.json()["detail"]
        assert http.delete("/items/faq-001").status_code == 401
        assert http.post("/items", json=item, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert http.get("/search", params={"q": "new question"}).status_code == 200  # reads stay open
    with running(index_copy, read_only=True) as base, httpx.Client(base_url=base) as http:
        refused = http.post("/items", json=item)
        assert refused.status_code == 403 and refused.json()["detail"] == "this server is read-only"
        assert http.delete("/items/a").status_code == 403
        assert http.get("/items/a").status_code == 200


def test_limits_answer_413_and_422_with_detail(index_copy):
    with running(index_copy, max_texts=3, max_chars=50, max_body_bytes=5000) as base, \
            httpx.Client(base_url=base) as http:
        too_many = http.post("/search", json={"texts": ["a", "b", "c", "d"]})
        assert too_many.status_code == 413 and "limit is 3" in too_many.json()["detail"]
        too_long = http.post("/search", json={"texts": ["x" * 51]})
        assert too_long.status_code == 422 and "50" in too_long.json()["detail"]
        big = http.post("/items", json={"items": [{"id": "b", "text": "y" * 6000}]})
        assert big.status_code == 413 and "5000 bytes" in big.json()["detail"]
        blank = http.post("/items", json={"items": [{"id": "c", "text": "   "}]})
        assert blank.status_code == 422 and "text is empty" in blank.json()["detail"][0]["msg"]
        assert http.post("/search", json={"texts": ["ok"], "k": 0}).status_code == 422
        bad_json = http.post("/search", content=b"{not json", headers={"content-type": "application/json"})
        assert bad_json.status_code == 422 and "detail" in bad_json.json()
        assert http.post("/search", json={"texts": []}).status_code == 422


def test_searches_never_see_half_a_batch(url):
    """Writers upsert batches of 10 items sharing one text; a search for that text must find all
    10 or none of them."""
    batches = 12

    def write(j: int) -> None:
        items = [{"id": f"g{j}-{i}", "text": f"Unusual question number {j} about zebras"} for i in range(10)]
        with httpx.Client(base_url=url, timeout=60) as http:
            assert http.post("/items", json={"items": items}).status_code == 200

    def search(j: int) -> list[int]:
        counts = []
        with httpx.Client(base_url=url, timeout=60) as http:
            for _ in range(4):
                answer = http.post("/search", json={"texts": [f"Unusual question number {j} about zebras"],
                                                    "k": 30}).json()
                ids = [m["id"] for m in answer["results"][0]["matches"] if m["score"] > 0.9999]
                counts.append(sum(i.startswith(f"g{j}-") for i in ids))
        return counts

    with ThreadPoolExecutor(16) as pool:
        searches = [pool.submit(search, j) for j in range(batches)]
        writes = [pool.submit(write, j) for j in range(batches)]
        for w in writes:
            w.result()
        seen = [c for s in searches for c in s.result()]
    assert set(seen) <= {0, 10}, seen
    with httpx.Client(base_url=url) as http:
        assert http.get("/stats").json()["count"] == 258 + 10 * batches


def test_concurrent_single_searches_are_micro_batched(url):
    def one(n: int) -> int:
        with httpx.Client(base_url=url, timeout=60) as http:
            return http.get("/search", params={"q": f"How do I reset my password? {n}", "k": 1}).status_code

    with ThreadPoolExecutor(24) as pool:
        assert set(pool.map(one, range(96))) == {200}
    text = httpx.get(f"{url}/metrics").text
    values = {line.split()[0]: float(line.split()[1]) for line in text.splitlines() if not line.startswith("#")}
    assert values["twin_microbatched_searches"] >= 96
    assert values["twin_microbatches"] < values["twin_microbatched_searches"]  # some batches held several
    assert values['twin_http_requests_total{method="GET",route="/search",status="200"}'] == 96
    assert values["twin_index_items"] == 258
    assert 'twin_http_request_seconds_bucket{method="GET",route="/search",le="+Inf"} 96' in text


def test_upsert_verdict_and_tau_survive_sigkill(index_copy):
    port = free_port()
    command = [sys.executable, "-c", "from retrieval.cli import main; main()", "serve", "--index",
               str(index_copy), "--port", str(port)]

    def start() -> subprocess.Popen:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ready").status_code == 200:
                    return proc
            except httpx.TransportError:
                time.sleep(0.2)
        proc.kill()
        raise AssertionError("server did not become ready")

    server = start()
    try:
        item = {"items": [{"id": "durable-1", "text": "Does this survive a crash?", "payload": {"n": 1}}]}
        assert httpx.post(f"http://127.0.0.1:{port}/items", json=item).status_code == 200
        assert httpx.delete(f"http://127.0.0.1:{port}/items/faq-001").status_code == 200
        verdict = {"query_id": "durable-1", "id": "faq-002", "duplicate": False}
        assert httpx.post(f"http://127.0.0.1:{port}/feedback", json=verdict).status_code == 200
        assert httpx.put(f"http://127.0.0.1:{port}/tau", json={"tau": 0.777}).status_code == 200
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait()
    server = start()
    try:
        got = httpx.get(f"http://127.0.0.1:{port}/items/durable-1")
        assert got.status_code == 200 and got.json()["payload"] == {"n": 1}
        found = httpx.get(f"http://127.0.0.1:{port}/search", params={"q": "Does this survive a crash?", "k": 1})
        assert found.json()["results"][0]["matches"][0]["id"] == "durable-1"
        assert httpx.get(f"http://127.0.0.1:{port}/items/faq-001").status_code == 404
        verdicts = httpx.get(f"http://127.0.0.1:{port}/feedback").json()["verdicts"]
        assert [(v["a_id"], v["b_id"], v["duplicate"]) for v in verdicts] == [("durable-1", "faq-002", False)]
        assert httpx.get(f"http://127.0.0.1:{port}/stats").json()["tau"] == 0.777
    finally:
        server.terminate()
        server.wait(30)
    assert json.loads((index_copy / "manifest.json").read_text())["count"] == 258
