"""Verdicts on pairs, tau learned from them, and groups for the review page: the Reviewer, the
CLI (`twin feedback export`, `twin calibrate --index`) and the HTTP routes on a real server."""

from __future__ import annotations

import base64
import json
import time

import httpx
import numpy as np
import pytest

from index.manifest import Manifest
from retrieval.calibrate import best_threshold
from retrieval.errors import InputError, TwinError
from retrieval.pairs import read_labelled
from retrieval.retriever import Retriever
from retrieval.review import FeedbackStore, GroupBook, Reviewer, UnknownItem, Verdict

from .conftest import DEMO_CSV
from .test_cli import twin
from .test_http import running


def seed(reviewer: Reviewer, items: int = 60) -> int:
    """Verdicts as a careful person would give them on the demo corpus: each of the first
    ``items`` items against its 3 nearest others, a duplicate when the demo says they are one
    question (the same ``group`` in their payloads)."""
    retriever = reviewer.retriever
    given = 0
    for record in list(retriever.store.scan())[:items]:
        for match in retriever.search([record.text], 4)[0].matches:
            if match.id != record.id:
                reviewer.judge(match.id, match.payload["group"] == record.payload["group"], query_id=record.id)
                given += 1
    return given


@pytest.fixture
def reviewer(index_copy):
    with Retriever.open(index_copy) as retriever, Reviewer(retriever) as reviewer:
        yield reviewer


def test_a_verdict_is_scored_as_a_search_scores_it_and_a_second_one_replaces_it(reviewer, index_copy):
    query = "I can't remember my password"
    top = reviewer.retriever.search([query], 2)[0].matches
    verdict = reviewer.judge(top[0].id, True, query=query)
    assert verdict.score == pytest.approx(top[0].score, abs=1e-5) and verdict.b_text == top[0].text
    assert verdict.a_id is None and verdict.a_text == query and verdict.at
    reviewer.judge(top[0].id, False, query=query + "  ")  # the same query once normalised: the same pair
    pair = reviewer.judge(top[0].id, True, query_id=top[1].id)
    assert reviewer.judge(top[1].id, False, query_id=top[0].id).score == pytest.approx(pair.score, abs=1e-6)
    found = reviewer.feedback.find(query=query)
    assert [(v.b_id, v.duplicate) for v in found] == [(top[0].id, False)]
    assert reviewer.feedback.counts() == {"duplicate": 0, "not_duplicate": 2}
    with pytest.raises(UnknownItem, match="no item 'nope'"):
        reviewer.judge("nope", True, query=query)
    with pytest.raises(UnknownItem):
        reviewer.judge(top[0].id, True, query_id="nope")
    with pytest.raises(TwinError, match="with itself"):
        reviewer.judge(top[0].id, True, query_id=top[0].id)
    assert reviewer.feedback.counts() == {"duplicate": 0, "not_duplicate": 2}  # nothing stored by those
    reviewer.close()
    with FeedbackStore(index_copy, read_only=True) as again:  # durable: another process sees it
        assert len(list(again.all())) == 2


def test_tau_from_verdicts_maximises_the_objective_and_refuses_too_few(reviewer):
    with pytest.raises(TwinError, match=r"0 duplicate and 0 not duplicate; at least 10 of each"):
        reviewer.choose_tau()
    seed(reviewer)
    counts = reviewer.feedback.counts()
    assert counts["duplicate"] >= 10 and counts["not_duplicate"] >= 10
    choice = reviewer.choose_tau()
    verdicts = list(reviewer.feedback.all())
    scores = np.array([v.score for v in verdicts])
    labels = np.array([v.duplicate for v in verdicts])
    assert choice.tau == pytest.approx(best_threshold(scores, labels, "accuracy")[0])
    assert choice.tau_before == reviewer.retriever.tau
    assert choice.after["accuracy"] >= choice.before["accuracy"]
    assert choice.after["accuracy"] == pytest.approx(np.mean((scores > choice.tau) == labels))
    f1 = reviewer.choose_tau("f1")
    assert f1.objective_value == pytest.approx(f1.after["f1"])
    with pytest.raises(TwinError, match="unknown objective"):
        reviewer.choose_tau("recall")
    with pytest.raises(TwinError, match="at least 1000 of each"):
        reviewer.choose_tau(min_each=1000)
    # A verdict scored by another model is of another space: set aside, and said so.
    reviewer.feedback.record(Verdict(None, "q", "faq-001", "t", 0.99, False, "another-model"))
    assert reviewer.choose_tau().verdicts["set_aside"] == 1
    assert reviewer.choose_tau().tau == choice.tau
    assert reviewer.choose_tau().plot_png()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_exports_verdicts_as_pairs_and_calibrates_the_index(index_copy, tmp_path):
    with Retriever.open(index_copy) as retriever, Reviewer(retriever) as reviewer:
        seed(reviewer)
        verdicts = list(reviewer.feedback.all())
        tau_now = retriever.tau
    out = tmp_path / "pairs.csv"
    result = twin("feedback", "export", "--index", index_copy, "-o", out)
    assert result.exit_code == 0 and f"{len(verdicts)} verdicts" in result.stderr
    pairs = read_labelled(out).pairs  # the columns `twin eval`, `calibrate` and `train` read
    assert [(p.a, p.b, p.label) for p in pairs] == [(v.a_text, v.b_text, int(v.duplicate)) for v in verdicts]

    shown = twin("calibrate", "--index", index_copy, "--from-feedback", "--json", "--plot", tmp_path / "pr.png")
    assert shown.exit_code == 0, shown.output
    choice = json.loads(shown.stdout)
    assert choice["applied"] is False and choice["tau_before"] == pytest.approx(tau_now)
    assert Manifest.load(index_copy).tau == pytest.approx(tau_now)  # only shown, not written
    assert (tmp_path / "pr.png").read_bytes()[:4] == b"\x89PNG"
    applied = twin("calibrate", "--index", index_copy, "--from-feedback", "--apply")
    assert applied.exit_code == 0 and f"tau {choice['tau']:.4f} written" in applied.stderr
    assert "accuracy" in applied.stdout and Manifest.load(index_copy).tau == pytest.approx(choice["tau"])

    from_pairs = twin("calibrate", out, "--index", index_copy, "--json")  # the exported file, re-scored
    assert from_pairs.exit_code == 0 and json.loads(from_pairs.stdout)["tau"] == pytest.approx(choice["tau"], abs=1e-4)
    assert twin("calibrate", "--index", index_copy, "--tau", "0.9").exit_code == 0
    assert Manifest.load(index_copy).tau == 0.9
    with Retriever.open(index_copy, read_only=True) as retriever:
        assert retriever.tau == 0.9 and retriever.search(["How do I reset my password?"], 1)[0].matches[0].duplicate


@pytest.mark.parametrize("args, message", [
    (["--index", "IX"], "exactly one of PAIRS, --from-feedback and --tau"),
    (["--index", "IX", "--from-feedback", "--tau", "0.5"], "(got --from-feedback, --tau)"),
    (["--index", "IX", "--tau", "0.5", "--apply"], "leave out --apply"),
    (["--index", "IX", "--from-feedback", "--model", "m"], "leave out --model"),
    (["--from-feedback"], "go with --index"),
    (["--index", "IX", "--from-feedback", "--min-verdicts", "1000"], "at least 1000 of each"),
    (["--index", "IX", "--from-feedback", "--objective", "recall"], "unknown objective"),
])
def test_calibrate_index_refuses_in_one_line(index_copy, args, message):
    result = twin("calibrate", *[str(index_copy) if a == "IX" else a for a in args])
    assert result.exit_code != 0 and message in result.output and len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_feedback_survives_a_rebuild_of_the_index(index_copy):
    with Retriever.open(index_copy) as retriever, Reviewer(retriever) as reviewer:
        reviewer.judge("faq-002", True, query_id="faq-001")
    assert twin("build", DEMO_CSV, "--index", index_copy, "--force").exit_code == 0
    with FeedbackStore(index_copy) as store:
        assert [(v.a_id, v.b_id) for v in store.all()] == [("faq-001", "faq-002")]


def test_groups_file_is_read_with_lines_named(tmp_path, demo_index_dir):
    good = tmp_path / "g.csv"
    good.write_text("id,group,representative,score,keep\na,1,a,1.0,true\nb,1,a,0.91,false\nc,,,,true\n"
                    "d,2,e,0.88,false\ne,2,e,1.0,true\n")
    book = GroupBook.read(good)
    assert [(g.number, g.representative, [m.id for m in g.members]) for g in book.groups] == [
        (1, "a", ["a", "b"]), (2, "e", ["e", "d"])]
    bad = tmp_path / "bad.csv"
    bad.write_text("id,group,representative,score,keep\na,1,a,1.0,true\nb,one,a,x,false\n")
    with pytest.raises(InputError, match=r"bad.csv:3: group 'one'"):
        GroupBook.read(bad)
    other = tmp_path / "other.csv"
    other.write_text("id,text\na,b\n")
    with pytest.raises(InputError, match="not a `twin groups` output file"):
        GroupBook.read(other)
    served = twin("serve", "--index", demo_index_dir, "--groups", other, "--port", "0")  # refused before serving
    assert served.exit_code == 1 and served.output.strip().startswith(f"Error: {other}:1: no column 'group'")


def test_http_feedback_tau_and_groups(index_copy, tmp_path):
    groups_file = tmp_path / "groups.jsonl"
    assert twin("groups", DEMO_CSV, "-o", groups_file, "--index", index_copy).exit_code == 0
    book = GroupBook.read(groups_file)
    key = {"Authorization": "Bearer k3y"}
    with running(index_copy, groups=book, api_key="k3y") as base, httpx.Client(base_url=base, timeout=60) as http:
        page = http.get("/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert http.get("/page-assets/review.js").status_code == 200
        assert http.get("/stats").json()["writes_need_key"] is True

        verdict = {"query": "I can't remember my password", "id": "faq-001", "duplicate": True}
        assert http.post("/feedback", json=verdict).status_code == 401  # the key guards writes
        refused = [http.post("/feedback", json={**verdict, "id": "nope"}, headers=key),
                   http.post("/feedback", json={**verdict, "duplicate": "yes"}, headers=key),
                   http.post("/feedback", json={**verdict, "query_id": "faq-002"}, headers=key),
                   http.post("/feedback", json={"id": "faq-001", "duplicate": True}, headers=key),
                   http.post("/feedback", content=b'{"id": "faq-001", "dupl', headers={**key, "content-type":
                                                                                      "application/json"}),
                   http.post("/feedback", json={**verdict, "score": 0.99}, headers=key)]
        assert [r.status_code for r in refused] == [404, 422, 422, 422, 422, 422]
        assert all(r.json()["detail"] for r in refused)
        assert http.get("/feedback").json()["counts"] == {"duplicate": 0, "not_duplicate": 0}  # nothing stored
        stored = http.post("/feedback", json=verdict, headers=key).json()
        assert stored["b_text"] == "How do I reset my password?" and -1 <= stored["score"] <= 1
        listed = http.get("/feedback", params={"query": verdict["query"]}).json()
        assert [v["b_id"] for v in listed["verdicts"]] == ["faq-001"] and listed["counts"]["duplicate"] == 1

        too_few = http.post("/tau/calibrate", json={})
        assert too_few.status_code == 409 and "too few verdicts" in too_few.json()["detail"]
        _seed_over_http(http, key)
        choice = http.post("/tau/calibrate", json={"objective": "f1"}).json()
        assert base64.b64decode(choice["plot_png"])[:4] == b"\x89PNG" and choice["objective"] == "f1"
        assert choice["tau_before"] == http.get("/stats").json()["tau"]
        assert http.put("/tau", json={"tau": choice["tau"]}).status_code == 401
        assert http.put("/tau", json={"tau": 2}, headers=key).status_code == 422
        assert http.put("/tau", json={"tau": choice["tau"]}, headers=key).json()["tau"] == choice["tau"]
        assert http.get("/stats").json()["tau"] == choice["tau"] == Manifest.load(index_copy).tau

        shown = http.get("/groups", params={"limit": 2}).json()
        assert shown["total"] == len(book) and shown["source"] == f"read from {groups_file.name}"
        first = shown["groups"][0]
        assert first["members"][0]["representative"] and first["members"][0]["id"] == first["representative"]
        assert all(m["stored"] and m["text"] for g in shown["groups"] for m in g["members"])
        computed = http.post("/groups/compute", json={"threshold": 0.8}).json()
        assert computed["total"] > 0 and "cosine > 0.8000" in computed["source"]
        assert http.get("/groups").json()["total"] == computed["total"]


def test_a_read_only_server_refuses_verdicts_and_follows_the_writers_tau(index_copy):
    with running(index_copy, read_only=True, snapshot_every_s=1.0) as base, httpx.Client(base_url=base) as http:
        refused = http.post("/feedback", json={"query": "x", "id": "faq-001", "duplicate": True})
        assert refused.status_code == 403
        assert http.get("/feedback").json()["verdicts"] == []  # no file yet: nothing, not an error
        assert twin("calibrate", "--index", index_copy, "--tau", "0.66").exit_code == 0
        deadline = time.time() + 20
        while http.get("/stats").json()["tau"] != 0.66:
            assert time.time() < deadline, "the reader never picked up the new tau"
            time.sleep(0.2)


def _seed_over_http(http: httpx.Client, key: dict) -> None:
    """The verdicts of ``seed``, given through POST /feedback."""
    for n in range(1, 61):
        own = http.get(f"/items/faq-{n:03d}")
        if own.status_code != 200:
            continue
        item = own.json()
        found = http.post("/search", json={"texts": [item["text"]], "k": 4}).json()["results"][0]["matches"]
        for match in found:
            if match["id"] != item["id"]:
                body = {"query_id": item["id"], "id": match["id"],
                        "duplicate": match["payload"]["group"] == item["payload"]["group"]}
                assert http.post("/feedback", json=body, headers=key).status_code == 200
