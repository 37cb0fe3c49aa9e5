"""The one-shot retrieval evaluation: groups, queries and rankings with the real packaged model, the
metrics computed from them, and scripts/compare_retrieval.py's query-by-query comparison."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from retrieval.evaluate import RetrievalRun, retrieval_metrics, retrieval_run
from retrieval.pairs import Pair

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "compare_retrieval.py"
sys.path.insert(0, str(SCRIPT.parent))

from compare_retrieval import differences, summary  # noqa: E402

PAIRS = [
    Pair("How do I learn Python quickly?", "What is the fastest way to learn Python?", 1),
    Pair("What is the fastest way to learn Python?", "How can I learn Python fast?", 1),  # a chain: one group of 3
    Pair("How do I bake bread at home?", "What is the capital of France?", 0),
    Pair("How do I lose weight fast?", "What is the quickest way to lose weight?", 1),
    Pair("How do I lose weight fast?", "How do I gain weight fast?", 0),  # a labelled near-miss
]


def test_groups_queries_and_rankings(encoder):
    run = retrieval_run(encoder, PAIRS, depth=3)
    assert len(run.questions) == 8 and run.n_groups == 5  # {3 python}, {bread}, {france}, {2 lose}, {gain}
    assert len(run.questions) == len(set(run.questions))
    python = {i for i, q in enumerate(run.questions) if "python" in q.lower()}
    assert {run.questions[q] for q in run.queries} == {run.questions[i] for i in python} | {
        "How do I lose weight fast?", "What is the quickest way to lose weight?"}
    vectors = encoder.encode(run.questions)
    for query, relevant, ranked, scores in zip(run.queries, run.relevant, run.ranked, run.scores):
        assert query not in relevant and query not in ranked and len(ranked) == 3 == len(set(ranked))
        assert scores == sorted(scores, reverse=True)
        assert np.allclose(scores, vectors[ranked] @ vectors[query], atol=1e-5)  # each hit's cosine
        if query in python:
            assert relevant == python - {query}
            assert set(ranked[:2]) == relevant  # the packaged model puts both paraphrases first
        else:
            assert len(relevant) == 1


def test_metrics_follow_the_rankings(encoder):
    metrics = retrieval_metrics(encoder, PAIRS, ks=(1, 2))
    run = retrieval_run(encoder, PAIRS, depth=10)
    expected = sum(len(r & set(k[:1])) / len(r) for r, k in zip(run.relevant, run.ranked)) / len(run.queries)
    assert metrics["recall@1"] == pytest.approx(expected)
    assert metrics["n_queries"] == 5 and metrics["n_groups"] == 5 and metrics["n_questions"] == 8
    assert metrics["recall@1"] <= metrics["recall@2"] <= 1 and metrics["recall@1"] <= 0.5 * 3 / 5 + 2 / 5


def test_compare_counts_where_two_runs_differ():
    questions = ["a", "a2", "b", "b2", "c"]
    relevant = [{1}, {0}, {3}, {2}]
    first = RetrievalRun(questions, 3, [0, 1, 2, 3], relevant, [[1], [0], [3], [4]])
    other = RetrievalRun(questions, 3, [0, 1, 2, 3], relevant, [[4], [0], [1], [4]])
    near_misses = {("a", "c"), ("c", "a")}
    assert summary(other, near_misses) == {"hit@1": 0.25, "wrong": 3, "wrong_labelled_non_duplicate": 1 / 3,
                                           "wrong_distinct": 2, "wrong_most_often": 2}
    found = differences(first, other, examples=5, seed=0)
    assert (found["both"], found["neither"], found["first_only"], found["other_only"]) == (1, 1, 2, 0)
    assert found["examples"] == [{"query": "a", "first_top": "a2", "other_top": "c"},
                                 {"query": "b", "first_top": "b2", "other_top": "a2"}]


def test_the_script_compares_two_models(tmp_path):
    pairs = tmp_path / "pairs.tsv"
    rows = ["question1\tquestion2\tis_duplicate"] + [f"{p.a}\t{p.b}\t{p.label}" for p in PAIRS]
    pairs.write_text("\n".join(rows) + "\n")
    done = subprocess.run([sys.executable, str(SCRIPT), str(pairs), "--model", "packaged", "--model", "packaged",
                           "--json", str(tmp_path / "out.json")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = json.loads((tmp_path / "out.json").read_text())
    same = out["against_first"]["packaged"]
    assert same["first_only"] == same["other_only"] == 0 and same["both"] + same["neither"] == 5
    assert 0 < out["models"]["packaged"]["hit@1"] <= 1
    missing = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "nope.tsv"), "--model", "packaged"],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1 and missing.stderr.startswith("Error: ")
    assert "nope.tsv" in missing.stderr  # one line that names the file


def test_mixing_models_scores_the_weighted_cosine_and_each_alone_at_the_ends(encoder, tmp_path):
    from mix_models import Mixed, mix_metrics, parse_mixes

    from retrieval.encoders import LSTMEncoder
    from retrieval.evaluate import pair_metrics, pair_scores
    from retrieval.text import normalize

    words = sorted({w.strip("?,.").lower() for p in PAIRS for t in (p.a, p.b) for w in t.split()})
    other = LSTMEncoder(["<pad>", "<unk>", *words], {"embed_dim": 16, "hidden": 32, "out_dim": 32})
    labels = [p.label for p in PAIRS]
    rows = mix_metrics(PAIRS, [encoder, other], parse_mixes("1,0.3,0", 2))
    for row, alone in ((rows[0], encoder), (rows[2], other)):  # the ends are each model alone
        pair, ranked = pair_metrics(pair_scores(alone, PAIRS), labels, 0.5), retrieval_metrics(alone, PAIRS)
        assert row["accuracy"] == pytest.approx(pair["best_accuracy"]) and row["recall@1"] == ranked["recall@1"]
        assert row["average_precision"] == pytest.approx(pair["average_precision"], abs=1e-6)
    texts = sorted({normalize(t) for p in PAIRS for t in (p.a, p.b)})
    mixed = Mixed(texts, [encoder.encode(texts), other.encode(texts)], [0.3, 0.7])
    expected = 0.3 * pair_scores(encoder, PAIRS) + 0.7 * pair_scores(other, PAIRS)
    assert np.allclose(pair_scores(mixed, PAIRS), expected, atol=1e-5)  # the weighted cosine
    assert np.allclose(np.linalg.norm(mixed.vectors, axis=1), 1, atol=1e-5)  # unit vectors: FAISS ranks by it
    third = LSTMEncoder(["<pad>", "<unk>", *words], {"embed_dim": 8, "hidden": 16, "out_dim": 16})
    weights = parse_mixes("0.2/0.3/0.5", 3)[0]
    mixed = Mixed(texts, [m.encode(texts) for m in (encoder, other, third)], weights)
    expected = sum(w * pair_scores(m, PAIRS) for w, m in zip(weights, (encoder, other, third)))
    assert np.allclose(pair_scores(mixed, PAIRS), expected, atol=1e-5)  # three models: the same
    with pytest.raises(SystemExit, match="each mix needs 3 weights"):
        parse_mixes("0.5/0.5", 3)
    with pytest.raises(SystemExit, match="that sum to 1"):
        parse_mixes("0.5/0.6", 2)
    bad = subprocess.run([sys.executable, str(SCRIPT.parent / "mix_models.py"), str(tmp_path / "p.tsv"), "--model",
                          "packaged", "--model", "packaged", "--weights", "0,x"], capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 1
    assert bad.stderr.strip() == "Error: --weights 0,x: numbers between 0 and 1, comma-separated"


def test_reranking_follows_the_scores_it_is_given():
    from rerank_retrieval import reranked

    run = RetrievalRun(["a", "a2", "b", "b2", "c"], 3, [0, 2], [{1}, {3}], [[4, 1], [3, 4]])
    cosines = [np.array([0.9, 0.8]), np.array([0.9, 0.5])]
    probs = [np.array([0.3, 0.95]), np.array([0.2, 0.9])]  # the cross-encoder prefers the wrong one for "b"
    out = reranked(run, 2, cosines, probs, [0.0, 0.01, 1.0], threshold=0.5)
    assert out["cosine + 0.0 logit"] == 0.5  # the bi-encoder's order: "a" wrong, "b" right
    assert out["cosine + 0.01 logit"] == 0.5  # too light a weight to reorder either
    assert out["cosine + 1.0 logit"] == 0.5 and out["cross-encoder alone"] == 0.5  # "a" right, "b" wrong
    assert out["wrong top hits it calls duplicates"] == 0.0  # "c" for "a": P 0.3
    assert out["top hit labelled or called a duplicate"] == 0.5
    out = reranked(run, 1, [c[:1] for c in cosines], [p[:1] for p in probs], [1.0], threshold=0.25)
    assert out["cosine + 1.0 logit"] == out["cross-encoder alone"] == 0.5  # one answer: nothing to reorder
    assert out["wrong top hits it calls duplicates"] == 1.0
    assert out["top hit labelled or called a duplicate"] == 1.0


def test_the_rerank_script_trains_saves_and_reloads_its_cross_encoder(encoder, tmp_path):
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("question1\tquestion2\tis_duplicate\n" + "".join(f"{p.a}\t{p.b}\t{p.label}\n" for p in PAIRS))
    train = tmp_path / "train.tsv"  # its last row shares a question with pairs.tsv: left out
    train.write_text("question1\tquestion2\tis_duplicate\n"
                     "How do I cook rice?\tWhat is the way to cook rice?\t1\n"
                     "How do I cook rice?\tHow do I fry rice?\t0\n"
                     "How do I learn Python quickly?\tWhy is the sky blue?\t0\n")
    script = str(SCRIPT.parent / "rerank_retrieval.py")
    common = [str(pairs), "--model", "packaged", "--depth", "3", "--weights", "0.5"]
    first = subprocess.run([sys.executable, script, *common, "--train", str(train), "--save-teacher",
                            str(tmp_path / "ce"), "--json", str(tmp_path / "a.json")],
                           capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    assert "2 pairs of" in first.stderr and "1 dropped" in first.stderr
    again = subprocess.run([sys.executable, script, *common, "--teacher", str(tmp_path / "ce"), "--json",
                            str(tmp_path / "b.json")], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    a, b = (json.loads((tmp_path / name).read_text()) for name in ("a.json", "b.json"))
    assert a == b  # the saved cross-encoder scores as the trained one did
    model = a["models"]["packaged"]
    assert model["queries"] == 5 and set(model) >= {"cosine + 0.0 logit", "cosine + 0.5 logit", "cross-encoder alone"}
    own = retrieval_metrics(encoder, PAIRS)["recall@1"]
    assert model["cosine + 0.0 logit"] == pytest.approx(own)  # w = 0: eval-retrieval's own order
    bad = subprocess.run([sys.executable, script, *common, "--teacher", str(tmp_path / "nope")],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr and bad.stderr.startswith("Error: ")
    assert len(bad.stderr.strip().splitlines()) == 1 and "nope" in bad.stderr
    shallow = subprocess.run([sys.executable, script, str(pairs), "--model", "packaged", "--depth", "0",
                              "--teacher", str(tmp_path / "ce")], capture_output=True, text=True, timeout=300)
    assert shallow.returncode == 1 and shallow.stderr.startswith("Error: --depth 0")
