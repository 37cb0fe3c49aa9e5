"""The HTTP service under hostile input: each fault a clear 4xx with a JSON detail, a failure
kept to the request that caused it, bounded metrics, an honest OpenAPI document, offline docs."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from retrieval.api.batcher import MicroBatcher

from .test_http import running


@pytest.fixture
def url(index_copy):
    with running(index_copy, max_body_bytes=20_000) as base:
        yield base


def raw(url: str, request: bytes) -> tuple[int, dict, bytes]:
    """Send raw bytes to the server; (status, headers, body) of its answer."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        try:
            sock.sendall(request)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before reading it all
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = re.search(rb"(?i)content-length: *(\d+)", head)
            if length and len(body) >= int(length.group(1)):
                break
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


def post_raw_json(url: str, path: str, body: bytes) -> httpx.Response:
    return httpx.post(f"{url}{path}", content=body, headers={"content-type": "application/json"}, timeout=60)


def test_a_poison_text_fails_alone(url):
    def ordinary(n: int) -> int:
        body = {"texts": [f"How do I change my password? {n}"]}
        return httpx.post(f"{url}/search", json=body, timeout=60).status_code

    def poison(_: int) -> httpx.Response:
        return post_raw_json(url, "/search", b'{"texts": ["poison \\ud800"]}')

    with ThreadPoolExecutor(24) as pool:
        for _ in range(3):
            goods = [pool.submit(ordinary, n) for n in range(20)]
            bads = [pool.submit(poison, n) for n in range(3)]
            assert {g.result() for g in goods} == {200}
            for bad in bads:
                answer = bad.result()
                assert answer.status_code == 422 and answer.json()["detail"][0]["loc"] == ["body", "texts", 0]


def test_the_micro_batcher_gives_each_error_to_its_own_request():
    """Behind validation, a request that breaks its batch is retried alone; the others answer."""
    def process(batch: list[str]) -> list[str]:
        if "poison" in batch:
            raise ValueError("poisoned")
        return [text.upper() for text in batch]

    async def scenario() -> list:
        batcher = MicroBatcher(process, max_batch=64, max_wait_s=0.05)
        await batcher.start()
        try:
            return await asyncio.gather(*(batcher.submit(t) for t in ["a", "b", "poison", "c"]),
                                        return_exceptions=True)
        finally:
            await batcher.stop()

    a, b, bad, c = asyncio.run(scenario())
    assert (a, b, c) == ("A", "B", "C") and isinstance(bad, ValueError)


@pytest.mark.parametrize("body", [
    b'{"texts": ["a"], "threshold": NaN}', b'{"texts": ["a"], "threshold": Infinity}',
    b'{"texts": ["a"], "threshold": -Infinity}', b'{"texts": ["a"], "threshold": 1e400}',
    b'{"texts": ["a"], "k": "5"}', b'{"texts": ["a"], "k": true}', b'{"texts": ["a"], "k": 2.5}',
    b'{"texts": ["a"], "threshold": "0.5"}', b'{"texts": ["a \\udfff b"]}',
])
def test_bad_search_values_are_422(url, body):
    answer = post_raw_json(url, "/search", body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"]


@pytest.mark.parametrize("item, why", [
    ({"id": "a\nb", "text": "x"}, "control character"), ({"id": "   ", "text": "x"}, "blank"),
    ({"id": "a\u0000", "text": "x"}, "control character"), ({"id": "\ud800", "text": "x"}, "unicode"),
    ({"id": "a", "text": "x", "payload": {"\ud800": 1}}, "surrogate"),
    ({"id": "a", "text": "x", "payload": {"k": "v\udc00"}}, "surrogate"),
    ({"id": "a", "text": "x", "payload": {"deep": json.loads("[" * 256 + "]" * 256)}}, "deeper than 32"),
])
def test_bad_items_are_422_naming_why(url, item, why):
    answer = post_raw_json(url, "/items", json.dumps({"items": [item]}).encode())
    assert answer.status_code == 422 and why in json.dumps(answer.json()["detail"]), answer.text
    assert httpx.get(f"{url}/stats").json()["count"] == 258


def test_a_deep_payload_never_breaks_search(url):
    ok = {"items": [{"id": "deep-ok", "text": "A question with a deep payload", "payload": {"a": [[[[1]]]]}}]}
    assert httpx.post(f"{url}/items", json=ok).status_code == 200
    found = httpx.get(f"{url}/search", params={"q": "A question with a deep payload", "k": 3})
    assert found.status_code == 200 and found.json()["results"][0]["matches"][0]["payload"] == {"a": [[[[1]]]]}


def test_oversized_chunked_body_is_413_and_bad_length_400_both_json(url):
    chunk = b"x" * 4000
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(8)) + b"0\r\n\r\n"
    status, headers, answer = raw(url, b"POST /items HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                                       b"Transfer-Encoding: chunked\r\n\r\n" + body)
    assert status == 413 and "20000 bytes" in json.loads(answer)["detail"]
    status, headers, answer = raw(url, b"POST /search HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                                       b"Content-Length: abc\r\n\r\n{}")
    assert status == 400 and headers["content-type"] == "application/json" and json.loads(answer)["detail"]
    small = b'{"texts": ["Where are you from?"]}'
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(small), small)
    status, _, answer = raw(url, b"POST /search HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                                 b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + chunked)
    assert status == 200 and json.loads(answer)["results"][0]["matches"]


def test_metrics_labels_stay_bounded(url):
    before = len(httpx.get(f"{url}/metrics").text)
    with httpx.Client(base_url=url) as http:
        for n in range(300):
            http.request(f"M{n}X", "/search")
            http.get(f"/no/such/path/{n}")
    text = httpx.get(f"{url}/metrics").text
    assert 'method="other"' in text and "M17X" not in text and "/no/such/path" not in text
    assert len(text) < before + 4000


def test_405_lists_every_allowed_method(url):
    answer = httpx.request("OPTIONS", f"{url}/items/faq-001")
    assert answer.status_code == 405 and answer.json()["detail"]
    assert answer.headers["allow"] == "DELETE, GET"
    assert httpx.put(f"{url}/search").headers["allow"] == "GET, POST"


def test_openapi_documents_every_error_answer(index_copy):
    with running(index_copy, api_key="k") as base:
        spec = httpx.get(f"{base}/openapi.json").json()
    paths = spec["paths"]
    assert {"401", "403", "413", "422"} <= set(paths["/items"]["post"]["responses"])
    assert {"401", "403", "404", "422"} <= set(paths["/items/{item_id}"]["delete"]["responses"])
    assert "404" in paths["/items/{item_id}"]["get"]["responses"]
    for code in ("401", "413", "422"):
        schema = paths["/items"]["post"]["responses"][code]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/ErrorOut"}
    assert paths["/items"]["post"].get("security")  # a key is asked for only when the server has one
    assert "pattern" in spec["components"]["schemas"]["ItemIn"]["properties"]["id"]


def test_docs_load_nothing_from_another_host(url):
    page = httpx.get(f"{url}/docs")
    assert page.status_code == 200
    refs = re.findall(r"""(?:src|href|url)\s*[:=]\s*['"]([^'"]+)""", page.text)
    assert refs and all(r.startswith("/") and not r.startswith("//") for r in refs), refs
    assert not re.search(r"https?://", page.text)
    for ref in refs:
        assert httpx.get(f"{url}{ref}").status_code == 200, ref


def test_the_micro_batcher_waits_for_company_only_when_requests_come_together():
    """A lone request is not held for the batching window; concurrent ones are batched."""
    sizes: list[int] = []

    def process(batch: list[str]) -> list[str]:
        sizes.append(len(batch))
        return batch

    async def scenario() -> float:
        batcher = MicroBatcher(process, max_batch=64, max_wait_s=1.0)
        await batcher.start()
        try:
            loop = asyncio.get_running_loop()
            start = loop.time()
            await batcher.submit("alone")
            alone = loop.time() - start
            await asyncio.gather(*(batcher.submit(str(n)) for n in range(8)))
            return alone
        finally:
            await batcher.stop()

    alone = asyncio.run(scenario())
    assert alone < 0.5  # far below the 1 s window it would have waited
    assert sizes[0] == 1 and sum(sizes) == 9 and max(sizes[1:]) > 1
