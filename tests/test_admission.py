"""Dedup on insert: `twin add --on-duplicate` and `POST /items` with `on_duplicate`."""

from __future__ import annotations

import csv
import io
import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from retrieval.retriever import Item, Retriever

from .test_cli import twin
from .test_http import running

NEW = [("n1", "How can I change my password if I forgot it?"),  # a paraphrase of faq-001/002
       ("n2", "What is the best way to learn to juggle three balls?"),
       ("n3", "What's the best way to learn juggling with three balls?"),  # a duplicate of n2, in the batch
       ("faq-003", "How do I change my username?")]  # its own id: a replacement, not a duplicate


def write_csv(path, rows) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "text"])
        w.writerows(rows)


def test_insert_skip_and_report(index_copy):
    with Retriever.open(index_copy) as retriever:
        before = len(retriever)
        report = retriever.insert([Item(i, t) for i, t in NEW], "report")
        assert len(retriever) == before
        assert [o.stored for o in report] == [False] * 4
        assert report[0].duplicate_of in {"faq-001", "faq-002"} and report[0].score > retriever.tau
        assert report[1].duplicate_of is None
        assert report[2].duplicate_of == "n2" and report[2].score > retriever.tau
        assert report[3].duplicate_of is None  # matches only itself (faq-003)
        skip = retriever.insert([Item(i, t) for i, t in NEW], "skip")
        assert [(o.id, o.stored, o.duplicate_of) for o in skip] == [(o.id, o.id in {"n2", "faq-003"}, o.duplicate_of)
                                                                    for o in report]
        assert len(retriever) == before + 1 and retriever.get("n2") and not retriever.get("n3")
        again = retriever.insert([Item("n4", NEW[2][1])], "skip")  # now n2 is stored
        assert again[0].duplicate_of == "n2" and not again[0].stored and len(retriever) == before + 1


def test_cli_add_on_duplicate(index_copy, tmp_path):
    corpus = tmp_path / "new.csv"
    write_csv(corpus, NEW)
    count = json.loads(twin("info", "--index", index_copy, "--json").stdout)["count"]
    report = twin("add", corpus, "--index", index_copy, "--on-duplicate", "report")
    assert report.exit_code == 0, report.output
    listed = list(csv.DictReader(io.StringIO(report.stdout)))
    assert [r["id"] for r in listed] == ["n1", "n3"] and listed[1]["duplicate_of"] == "n2"
    assert "2 would be skipped" in report.stderr and "nothing was written" in report.stderr
    assert json.loads(twin("info", "--index", index_copy, "--json").stdout)["count"] == count
    skip = twin("add", corpus, "--index", index_copy, "--on-duplicate", "skip", "--json")
    assert skip.exit_code == 0, skip.output
    outcomes = [json.loads(line) for line in skip.stdout.splitlines()]
    assert [o["stored"] for o in outcomes] == [False, True, False, True]
    assert "2 skipped as duplicates" in skip.stderr
    assert json.loads(twin("info", "--index", index_copy, "--json").stdout)["count"] == count + 1


def test_http_on_duplicate(index_copy):
    with running(index_copy, api_key="k") as url, httpx.Client(base_url=url, timeout=60) as client:
        auth = {"Authorization": "Bearer k"}
        items = [{"id": i, "text": t} for i, t in NEW]
        report = client.post("/items", json={"items": items, "on_duplicate": "report"}, headers=auth)
        assert report.status_code == 200, report.text
        body = report.json()
        assert body["ids"] == []
        assert [o["duplicate_of"] is not None for o in body["items"]] == [True, False, True, False]
        assert client.get("/items/n2").status_code == 404
        bad = client.post("/items", json={"items": items, "on_duplicate": "maybe"}, headers=auth)
        assert bad.status_code == 422 and "detail" in bad.json()
        added = client.post("/items", json={"items": items[:1]}, headers=auth).json()  # the default: add
        assert added == {"ids": ["n1"], "items": [{"id": "n1", "stored": True, "duplicate_of": None, "score": None}]}

        def post(n: int) -> dict:  # the same new text, from many clients at once: stored once
            body = {"items": [{"id": f"c{n}", "text": "Which wax is best for a snowboard in spring?"}],
                    "on_duplicate": "skip"}
            return client.post("/items", json=body, headers=auth).json()

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(post, range(8)))
        assert sum(a["items"][0]["stored"] for a in answers) == 1


@pytest.mark.parametrize("mode", ["skip", "report"])
def test_report_and_skip_see_earlier_batches_of_one_run(index_copy, tmp_path, mode):
    rows = [(f"x{n}", f"Where can I buy a {word} bicycle near me?") for n, word in enumerate(["red"] * 300)]
    rows += [("y1", "Where can I buy a red bicycle near me ?")]
    corpus = tmp_path / "many.csv"
    write_csv(corpus, rows)
    result = twin("add", corpus, "--index", index_copy, "--on-duplicate", mode, "--batch-size", "4")
    assert result.exit_code == 0, result.output
    listed = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(listed) == 300 and {r["duplicate_of"] for r in listed} == {"x0"}  # chunks of 256: x300 too
