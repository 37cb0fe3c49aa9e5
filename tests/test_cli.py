"""The `twin` CLI end to end on the demo corpus, with the real model, FAISS and SQLite."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from retrieval import DEFAULT_TAU
from retrieval.cli import cli

from .conftest import DEMO_CSV


def twin(*args: str, input: str | None = None):
    result = CliRunner().invoke(cli, [str(a) for a in args], input=input)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


@pytest.fixture(scope="module")
def demo_index(tmp_path_factory, encoder) -> Path:
    folder = tmp_path_factory.mktemp("cli") / "demo"
    result = twin("build", DEMO_CSV, "--index", folder)
    assert result.exit_code == 0, result.output
    assert f"built {folder}: 258 items" in result.stderr
    return folder


@pytest.fixture
def own_index(demo_index, tmp_path) -> Path:
    """A copy of the demo index that a test may change."""
    folder = tmp_path / "mine"
    shutil.copytree(demo_index, folder)
    return folder


def test_info_describes_the_index(demo_index):
    result = twin("info", "--index", demo_index, "--json")
    facts = json.loads(result.stdout)
    assert facts["count"] == 258
    assert (facts["kind"], facts["built_kind"], facts["dimension"]) == ("auto", "flat", 384)
    assert facts["encoder"]["name"] == "all-MiniLM-L6-v2" and len(facts["encoder"]["fingerprint"]) == 16
    assert facts["tau"] == pytest.approx(DEFAULT_TAU)
    assert "items      258" in twin("info", "--index", demo_index).stdout


def test_build_tunes_the_approximate_kinds_and_info_shows_it(demo_index, tmp_path):
    assert "search     exact" in twin("info", "--index", demo_index).stdout
    result = twin("build", DEMO_CSV, "--index", tmp_path / "ix", "--index-type", "hnsw", "--target-recall", "0.99")
    assert result.exit_code == 0, result.output
    params = json.loads(twin("info", "--index", tmp_path / "ix", "--json").stdout)["params"]
    assert params["target_recall"] == 0.99 and params["recall_at_10"] >= 0.99 and params["tuned_on"] == 25
    line = next(x for x in twin("info", "--index", tmp_path / "ix").stdout.splitlines() if x.startswith("search"))
    assert line == (f"search     ef_search {params['ef_search']}: recall@10 {params['recall_at_10']:.3f} "
                    "measured on 25 of its own vectors held out (target 0.99)")
    bad = twin("build", DEMO_CSV, "--index", tmp_path / "other", "--target-recall", "1.5")
    assert bad.exit_code == 2 and "'--target-recall': 1.5 is not in the range 0<x<=1" in bad.stderr


def test_query_json_finds_paraphrases_not_near_misses(demo_index):
    result = twin("query", "--index", demo_index, "--json", "-k", "3",
                  "What country are you from?", "Is it safe for dogs to eat chocolate?")
    assert result.exit_code == 0
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["query"] for line in lines] == ["What country are you from?", "Is it safe for dogs to eat chocolate?"]
    first = lines[0]["matches"]
    assert set(first[0]) == {"id", "score", "duplicate", "text", "payload"}
    assert first[0]["text"] in {"What country do you come from?", "Where are you from?"}
    assert first[0]["duplicate"] is True
    assert first[0]["payload"]["topic"] == "general"
    by_text = {m["text"]: m for m in first}
    assert "Where are you going?" not in by_text or by_text["Where are you going?"]["duplicate"] is False
    for line in lines:
        scores = [m["score"] for m in line["matches"]]
        assert scores == sorted(scores, reverse=True)
        assert all(m["duplicate"] == (m["score"] > DEFAULT_TAU) for m in line["matches"])


def test_query_reads_stdin_and_threshold_overrides_tau(demo_index):
    result = twin("query", "--index", demo_index, "--json", "-k", "1", "--threshold", "0.99",
                  input="Where are you from?\n\nHow old are you?\n")
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 2
    assert lines[0]["matches"][0]["score"] > 0.99 and lines[0]["matches"][0]["duplicate"]
    text = twin("query", "--index", demo_index, "-k", "2", "--duplicates-only", "What is your age?").stdout
    assert text.startswith("? What is your age?\n") and "DUPLICATE" in text


def test_dedup_writes_csv_and_jsonl(demo_index, tmp_path):
    incoming = tmp_path / "incoming.csv"
    incoming.write_text("id,text\nn1,What nation are you from?\nn2,How do I bake sourdough bread at home?\n")
    out = tmp_path / "out.csv"
    result = twin("dedup", incoming, "--index", demo_index, "-o", out)
    assert result.exit_code == 0
    rows = list(csv.DictReader(out.open()))
    assert [r["id"] for r in rows] == ["n1", "n2"]
    assert rows[0]["match_text"] in {"What country do you come from?", "Where are you from?"}
    assert rows[0]["duplicate"] == "true" and rows[1]["duplicate"] == "false"  # as in JSONL
    assert "dedup: 2 rows, 1 duplicates, 1 new" in result.stderr
    jsonl = tmp_path / "out.jsonl"
    twin("dedup", incoming, "--index", demo_index, "-o", jsonl, "--threshold", "0.1")
    assert [json.loads(line)["duplicate"] for line in jsonl.read_text().splitlines()] == [True, True]


def test_dedup_of_the_corpus_against_itself_excludes_self(demo_index):
    result = twin("dedup", DEMO_CSV, "--index", demo_index, "--exclude-self")
    rows = list(csv.DictReader(result.stdout.splitlines()))
    assert len(rows) == 258
    assert all(r["id"] != r["match_id"] for r in rows)
    assert "dedup: 258 rows" in result.stderr


def test_add_upserts_without_retraining(own_index, tmp_path):
    extra = tmp_path / "extra.jsonl"
    extra.write_text(json.dumps({"id": "new-1", "text": "How do I adopt a kitten from a shelter?"}) + "\n"
                     + json.dumps({"id": "faq-001", "text": "Which planets have rings?", "topic": "space"}) + "\n")
    result = twin("add", extra, "--index", own_index)
    assert result.exit_code == 0, result.output
    assert "1 new, 259 items in all" in result.stderr
    top = json.loads(twin("query", "--index", own_index, "--json", "-k", "1",
                          "Can I adopt a cat from an animal shelter?").stdout)["matches"][0]
    assert top["id"] == "new-1" and top["duplicate"]
    replaced = json.loads(twin("query", "--index", own_index, "--json", "-k", "1", "Which planets have rings?").stdout)
    assert replaced["matches"][0]["id"] == "faq-001" and replaced["matches"][0]["payload"] == {"topic": "space"}


def test_delete(own_index):
    result = twin("delete", "--index", own_index, "faq-208", "faq-209")
    assert result.exit_code == 0 and "deleted 2 items" in result.stderr
    answer = twin("query", "--index", own_index, "--json", "-k", "5", "Where are you from?")
    matches = json.loads(answer.stdout)["matches"]
    assert not {"faq-208", "faq-209"} & {m["id"] for m in matches}
    missing = twin("delete", "--index", own_index, "faq-001", "nope")
    assert missing.exit_code == 1 and "not in the index: nope" in missing.stderr


def test_build_refuses_to_overwrite_and_force_keeps_old_index_on_bad_input(own_index, tmp_path):
    result = twin("build", DEMO_CSV, "--index", own_index)
    assert result.exit_code == 1
    assert result.stderr.strip() == f"Error: {own_index}: an index already exists (use --force to replace it)"
    bad = tmp_path / "bad.csv"
    bad.write_text("id,text\n1,fine\n2,\n")
    result = twin("build", bad, "--index", own_index, "--force")
    assert result.exit_code == 1
    assert result.stderr.strip() == f"Error: {bad}:3:2: empty text in column 'text'"
    assert json.loads(twin("info", "--index", own_index, "--json").stdout)["count"] == 258


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["query", "--index", "{tmp}/none", "hello"], "no index folder here"),
        (["build", "{tmp}/missing.csv", "--index", "{tmp}/ix"], "missing.csv: no such file"),
        (["build", "{demo}", "--index", "{tmp}/ix", "--text-column", "question"], "faq.csv:1: no column 'question'"),
        (["build", "{demo}", "--index", "{tmp}/ix", "--model", "{tmp}"], "neither a sentence-transformers model"),
        (["query", "--index", "{tmp}/none"], "no query"),
    ],
)
def test_errors_are_one_line(tmp_path, args, message):
    result = twin(*[a.format(tmp=tmp_path, demo=DEMO_CSV) for a in args], input="")
    assert result.exit_code != 0
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert message in result.stderr and "Traceback" not in result.output


def test_installed_twin_script(tmp_path, encoder):
    exe = Path(sys.executable).with_name("twin")
    if not exe.exists():
        pytest.skip("twin is not installed in this environment")
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    build = subprocess.run([exe, "build", DEMO_CSV, "--index", tmp_path / "ix"],
                           capture_output=True, text=True, env=env)
    assert build.returncode == 0, build.stderr
    assert build.stdout == ""  # results only on stdout; no progress bars when not on a terminal
    query = subprocess.run([exe, "query", "--index", tmp_path / "ix", "--json", "-k", "2"],
                           input="Can dogs eat chocolate?\n", capture_output=True, text=True, env=env)
    assert query.returncode == 0, query.stderr
    match = json.loads(query.stdout)["matches"][0]
    assert match["text"] == "Can dogs eat chocolate?" and match["score"] == pytest.approx(1.0, abs=1e-4)
    bad = subprocess.run([exe, "info", "--index", tmp_path / "nothing"], capture_output=True, text=True)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
