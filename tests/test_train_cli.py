"""`twin train / calibrate / eval / eval-retrieval` end to end with a small siamese LSTM."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest
import torch

from retrieval.encoders import load_encoder, packaged_model_path
from retrieval.pairs import read_labelled
from retrieval.training.recipe import (
    LSTM_LR,
    STUDENT_DISTIL_WEIGHT,
    STUDENT_RANKING,
    STUDENT_RANKING_MEMORY,
    TRANSFORMER_LR,
)

from .conftest import DEMO_CSV
from .test_cli import twin
from .test_training import synthetic_pairs

EVAL_KEYS = {"n_pairs", "threshold", "accuracy", "precision", "recall", "f1", "best_threshold", "best_accuracy",
             "average_precision", "roc_auc"}


def write_pairs(path, pairs) -> None:
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["question1", "question2", "is_duplicate"])
        out.writerows((p.a, p.b, p.label) for p in pairs)


@pytest.fixture(scope="module")
def lstm_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("train")
    train, dev = folder / "train.csv", folder / "dev.csv"
    train_pairs, dev_pairs = synthetic_pairs(1, 600), synthetic_pairs(2, 300)
    write_pairs(train, train_pairs)
    write_pairs(dev, dev_pairs)
    dev_keys = {t.lower() for p in dev_pairs for t in (p.a, p.b)}
    leaking = sum(1 for p in train_pairs if p.a.lower() in dev_keys or p.b.lower() in dev_keys)
    result = twin("train", train, "--out", folder / "model", "--encoder", "lstm", "--dev", dev, "--epochs", "3",
                  "--batch-size", "16", "--max-seq-length", "16")
    assert result.exit_code == 0, result.output
    assert f"{len(train_pairs) - leaking} rows of {train} kept, {leaking} dropped" in result.stderr
    assert "distillation: encoding" in result.stderr and "silver" not in result.stderr  # the LSTM's defaults
    return folder / "model", dev, result


def test_train_writes_a_calibrated_model(lstm_model):
    model, dev, result = lstm_model
    calibration = json.loads((model / "twin_calibration.json").read_text())
    assert "calibrated on" in result.stderr and calibration["objective"] == "accuracy"
    assert calibration["metrics"]["accuracy"] > 0.5
    assert {"twin_lstm.json", "tokenizer.json", "model.pt", "train_log.jsonl", "twin_training.json"} <= {
        p.name for p in model.iterdir()}  # the default: the packaged WordPiece tokenizer
    assert json.loads((model / "twin_lstm.json").read_text())["pooling"] == "max"
    assert json.loads((model / "twin_training.json").read_text())["config"]["freeze_embeddings"]  # MiniLM's table
    again = twin("train", dev, "--out", model, "--encoder", "lstm")
    assert again.exit_code == 1 and "use --force" in again.stderr


def test_eval_json_and_plot(lstm_model, tmp_path):
    model, dev, _ = lstm_model
    metrics = json.loads(twin("eval", dev, "--model", model, "--json", "--plot", tmp_path / "p.png").stdout)
    assert set(metrics) == EVAL_KEYS and metrics["n_pairs"] == 300
    tau = json.loads((model / "twin_calibration.json").read_text())["tau"]
    assert metrics["threshold"] == pytest.approx(tau)
    assert all(0 <= metrics[k] <= 1 for k in EVAL_KEYS - {"n_pairs", "threshold", "best_threshold"})
    assert metrics["accuracy"] == pytest.approx(metrics["best_accuracy"])  # tau was chosen on these pairs
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    retrieval = json.loads(twin("eval-retrieval", dev, "--model", model, "--json").stdout)
    assert retrieval["n_queries"] > 0 and 0 < retrieval["recall@1"] <= retrieval["recall@10"] <= 1
    assert 0 < retrieval["mrr@10"] <= 1


def test_calibrate_objectives(lstm_model, tmp_path):
    model, dev, _ = lstm_model
    f1 = json.loads(twin("calibrate", dev, "--model", model, "--objective", "f1", "--json").stdout)
    strict = json.loads(twin("calibrate", dev, "--model", model, "--objective", "precision@0.5", "--json").stdout)
    assert strict["metrics"]["recall"] >= 0.5
    assert strict["metrics"]["precision"] >= f1["metrics"]["precision"] - 1e-9
    bad = twin("calibrate", dev, "--model", model, "--objective", "recall")
    assert bad.exit_code == 1 and "unknown objective" in bad.stderr
    twin("calibrate", dev, "--model", model)  # back to accuracy for the other tests


def test_an_lstm_model_serves_build_and_query(lstm_model, tmp_path):
    model, _, _ = lstm_model
    assert twin("build", DEMO_CSV, "--index", tmp_path / "ix", "--model", model).exit_code == 0
    info = json.loads(twin("info", "--index", tmp_path / "ix", "--json").stdout)
    assert info["dimension"] == 256 and info["encoder"]["name"] == "model"
    tau = json.loads((model / "twin_calibration.json").read_text())["tau"]
    assert info["tau"] == pytest.approx(tau)
    answer = twin("query", "--index", tmp_path / "ix", "--json", "-k", "1", "Can dogs eat chocolate?")
    answer = json.loads(answer.stdout)
    assert answer["matches"][0]["text"] == "Can dogs eat chocolate?"
    wrong = twin("query", "--index", tmp_path / "ix", "--model", DEMO_CSV.parent, "hello")
    assert wrong.exit_code == 1 and "neither" in wrong.stderr
    grouped = twin("groups", DEMO_CSV, "--index", tmp_path / "ix", "-o", tmp_path / "g.csv", "--json")
    assert grouped.exit_code == 0 and json.loads(grouped.stdout)["reused_vectors"] == 258
    other = twin("groups", DEMO_CSV, "--index", tmp_path / "ix", "--model", packaged_model_path(),
                 "-o", tmp_path / "g2.csv")
    assert other.exit_code == 1 and "encoder" in other.stderr and not (tmp_path / "g2.csv").exists()


def test_training_input_errors(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("question1,question2,is_duplicate\nA?,B?,1\nC?,D?,yes\n")
    result = twin("train", bad, "--out", tmp_path / "m", "--encoder", "lstm")
    assert result.exit_code == 1
    assert result.stderr.strip() == f"Error: {bad}:3:3: label 'yes' in column 'is_duplicate' is not 0 or 1"
    few = tmp_path / "few.csv"
    few.write_text("question1,question2,is_duplicate\nA?,B?,1\nA?,C?,0\n")
    result = twin("train", few, "--out", tmp_path / "m", "--encoder", "lstm")
    assert result.exit_code == 1 and "at least 2 groups" in result.stderr
    assert not (tmp_path / "m").exists()
    scored = tmp_path / "silver.jsonl"
    scored.write_text('{"question1": "A?", "question2": "B?", "is_duplicate": 1, "teacher_p": 0.9}\n'
                      '{"question1": "C?", "question2": "D?", "is_duplicate": 0, "teacher_p": 1.5}\n')
    result = twin("train", few, "--out", tmp_path / "m", "--encoder", "lstm", "--silver", scored)
    assert result.exit_code == 1
    assert result.stderr.strip() == (f"Error: {scored}:2:4: teacher score 1.5 in column 'teacher_p' is not a "
                                     f"probability in [0, 1]")
    result = twin("train", few, "--out", tmp_path / "m", "--silver", tmp_path / "none.jsonl")
    assert result.exit_code == 1 and result.stderr.strip().startswith(f"Error: {tmp_path / 'none.jsonl'}")
    assert not (tmp_path / "m").exists()


def test_a_cross_encoder_teacher_adds_silver_pairs_mined_among_the_training_texts(tmp_path):
    from retrieval.text import normalize
    from retrieval.training.teacher import CrossEncoderTeacher, mine

    train_pairs = synthetic_pairs(1, 120)
    mined = mine(train_pairs, load_encoder(), neighbours=2)
    texts = {normalize(t) for p in train_pairs for t in (p.a, p.b)}
    gold = {frozenset((normalize(p.a), normalize(p.b))) for p in train_pairs}
    assert mined and all(a in texts and b in texts and a != b for a, b in mined)  # training texts only
    assert not {frozenset(m) for m in mined} & gold and len({frozenset(m) for m in mined}) == len(mined)

    teacher = CrossEncoderTeacher(packaged_model_path())
    teacher.train(train_pairs, epochs=1, batch_size=16)
    probabilities = teacher.label([(p.a, p.b) for p in train_pairs])
    assert ((probabilities >= 0) & (probabilities <= 1)).all()
    labels = np.array([p.label for p in train_pairs])
    assert probabilities[labels == 1].mean() > probabilities[labels == 0].mean()  # it learned

    train = tmp_path / "train.csv"
    write_pairs(train, train_pairs)
    dev = tmp_path / "dev.csv"
    write_pairs(dev, synthetic_pairs(2, 60))
    result = twin("train", train, "--out", tmp_path / "m", "--batch-size", "16", "--max-seq-length", "16",
                  "--dev", dev, "--teacher-epochs", "1", "--teacher-lr", "3e-5", "--margin-mse", "1",
                  "--layer-decay", "0.9")  # teacher: auto
    assert result.exit_code == 0, result.output
    trained = json.loads((tmp_path / "m" / "twin_training.json").read_text())
    config = trained["config"]
    assert config["margin_mse"] == 1.0 and not config["freeze_embeddings"]  # an LSTM option only
    assert config["layer_decay"] == 0.9
    assert (config["ranking"], config["ranking_memory"]) == (STUDENT_RANKING, STUDENT_RANKING_MEMORY)  # a student's
    assert config["epochs"] == 3  # a student of silver pairs, in ~10-step epochs: 3 by default (at most)
    assert config["lr"] is None and trained["learning_rate"] == TRANSFORMER_LR  # the transformer's rate
    assert (config["distil_loss"], config["distil_weight"]) == ("ranking", STUDENT_DISTIL_WEIGHT)  # a student's
    assert "silver pairs mined among the training texts" in result.stderr
    assert "distillation: encoding" in result.stderr and "with packaged" in result.stderr  # --distil-from auto
    assert "chosen on --dev, where the teacher scores" in result.stderr  # its own threshold, not a blind 0.5
    silver = read_labelled(tmp_path / "m" / "silver_pairs.jsonl").pairs  # what the teacher labelled is kept
    said = re.search(r"teacher: (\d+) silver pairs .* (\d+) of them called duplicates \(P > ([0-9.]+)", result.stderr)
    assert len(silver) == int(said[1]) and sum(p.label for p in silver) == int(said[2])
    clear = [p for p in silver if abs(p.score - float(said[3])) > 1e-3]  # (the threshold is printed rounded)
    assert clear and all(p.label == (p.score > float(said[3])) for p in clear)  # labels follow the scores
    taught = trained["teacher"]  # the teacher's settings and outcome are recorded beside the student's
    assert (taught["epochs"], taught["learning_rate"], taught["silver_pairs"]) == (1, 3e-5, len(silver))
    assert abs(taught["threshold"] - float(said[3])) < 1e-3 and f"teacher scores {taught['dev_accuracy']:.4f}" in (
        result.stderr) and taught["seconds"] > 0
    assert all(p.a in texts and p.b in texts and frozenset((p.a, p.b)) not in gold for p in silver)  # mined ones
    reused = twin("train", train, "--out", tmp_path / "lstm", "--encoder", "lstm", "--silver",
                  tmp_path / "m" / "silver_pairs.jsonl", "--margin-mse", "1", "--cosent", "0.5", "--ranking", "0.5",
                  "--ranking-memory", "64", "--mined-negatives", "--mine-every", "3", "--batch-size", "16",
                  "--max-seq-length", "16", "--distil-from", "none", "--dev", dev)
    assert reused.exit_code == 0, reused.output
    assert f"silver: {len(silver)} pairs" in reused.stderr and "teacher:" not in reused.stderr  # no teacher again
    summary = json.loads((tmp_path / "lstm" / "twin_training.json").read_text())
    assert summary["config"]["cosent"] == summary["config"]["ranking"] == 0.5
    assert summary["config"]["ranking_memory"] == 64
    assert summary["config"]["mined_negatives"] and summary["config"]["mine_every"] == 3
    assert summary["config"]["epochs"] == 1 and summary["learning_rate"] == LSTM_LR  # an LSTM: its own defaults
    assert summary["pairs"] == json.loads((tmp_path / "m" / "twin_training.json").read_text())["pairs"]
    assert "teacher" not in summary  # reused silver: no teacher trained, none recorded
    refused = twin("train", train, "--out", tmp_path / "m2", "--teacher", "cross-encoder", "--model", tmp_path)
    error = refused.output.strip().splitlines()[-1]  # a teacher base that is no model: one line
    assert refused.exit_code == 1 and error.startswith(f"Error: {tmp_path}") and "Traceback" not in refused.output


def test_train_distils_a_models_cosines_into_the_lstm(tmp_path):
    train = tmp_path / "train.csv"
    write_pairs(train, synthetic_pairs(1, 120))
    result = twin("train", train, "--out", tmp_path / "m", "--encoder", "lstm", "--distil-from", "packaged",
                  "--distil-weight", "5", "--distil-variants", "0.2", "--lstm-hidden", "32", "--batch-size", "16",
                  "--max-seq-length", "16", "--weight-average", "0.99")
    assert result.exit_code == 0, result.output
    assert "training texts and a variant of each (--distil-variants 0.2)" in result.stderr
    config = json.loads((tmp_path / "m" / "twin_training.json").read_text())["config"]
    assert (config["distil_weight"], config["distil_variants"], config["weight_average"]) == (5.0, 0.2, 0.99)
    assert config["distil_loss"] == "cosines"  # the LSTM's default, at 10 unless told
    assert load_encoder(tmp_path / "m").encode(["how do i cook rice?"]).shape == (1, 32)  # --lstm-hidden
    assert config["freeze_embeddings"]
    assert config["ranking"] == config["ranking_memory"] == 0  # no student of silver pairs: no ranking term
    from retrieval.training.trainer import packaged_token_embeddings

    table = torch.load(tmp_path / "m" / "model.pt", weights_only=True)["embed.weight"]
    assert torch.equal(table, packaged_token_embeddings()[1])  # --lstm-embeddings auto: MiniLM's, untouched
    words = twin("train", train, "--out", tmp_path / "w", "--encoder", "lstm", "--lstm-tokens", "words",
                 "--distil-from", "none", "--batch-size", "16", "--max-seq-length", "16")
    assert words.exit_code == 0, words.output
    assert not json.loads((tmp_path / "w" / "twin_training.json").read_text())["config"]["freeze_embeddings"]
    missing = twin("train", train, "--out", tmp_path / "m2", "--encoder", "lstm", "--distil-from", tmp_path / "nope")
    assert missing.exit_code == 1
    assert missing.stderr.strip() == f"Error: --distil-from {tmp_path / 'nope'}: no such model folder"
    assert not (tmp_path / "m2").exists()
    both = twin("train", train, "--out", tmp_path / "m2", "--encoder", "lstm", "--distil-loss", "ranking",
                "--distil-variants", "0.2")
    assert both.exit_code == 1 and both.stderr.strip().splitlines()[-1].startswith("Error: --distil-variants adds")
    alone = twin("train", train, "--out", tmp_path / "m2", "--distil-loss", "ranking", "--teacher", "none")
    assert alone.exit_code == 1 and alone.stderr.strip().splitlines()[-1].startswith("Error: --distil-loss ranking")
    assert not (tmp_path / "m2").exists()
    cnn = twin("train", train, "--out", tmp_path / "m3", "--encoder", "cnn", "--distil-from", "packaged")
    assert cnn.exit_code == 1 and cnn.stderr.strip().endswith("they do not apply to --encoder cnn")
    cnn = twin("train", train, "--out", tmp_path / "m3", "--encoder", "cnn", "--weight-average", "0.99")
    assert cnn.exit_code == 1 and "--weight-average work on text pairs" in cnn.stderr
    cnn = twin("train", train, "--out", tmp_path / "m3", "--encoder", "cnn", "--ranking", "1")
    assert cnn.exit_code == 1 and "--ranking(-memory), --mined" in cnn.stderr and "Traceback" not in cnn.output
    cnn = twin("train", train, "--out", tmp_path / "m3", "--encoder", "cnn", "--ranking-memory", "64")
    assert cnn.exit_code == 1 and "--ranking(-memory)" in cnn.stderr
    for kind in ("lstm", "cnn"):
        decayed = twin("train", train, "--out", tmp_path / "m3", "--encoder", kind, "--layer-decay", "0.8")
        assert decayed.exit_code == 1 and decayed.stderr.strip() == ("Error: --layer-decay scales a transformer's "
                                                                     f"layers' learning rates; it does not apply "
                                                                     f"to --encoder {kind}")
    lonely = twin("train", train, "--out", tmp_path / "m3", "--encoder", "lstm", "--ranking-memory", "64")
    assert lonely.exit_code == 1 and "give --ranking a weight too" in lonely.stderr and not (tmp_path / "m3").exists()
    cnn = twin("train", train, "--out", tmp_path / "m3", "--encoder", "cnn", "--mined-negatives")
    assert cnn.exit_code == 1 and "--mined-negatives, --distil-from" in cnn.stderr
    alone = twin("train", train, "--out", tmp_path / "m3", "--encoder", "lstm", "--mine-every", "10")
    assert alone.exit_code == 1 and alone.stderr.strip() == ("Error: --mine-every sets how often --mined-negatives "
                                                             "mines: give --mined-negatives too")
    for option in (["--hard-loss", "selective"], ["--composed-classes", "0.5"], ["--no-mirror-classes"],
                   ["--cnn-width", "32"]):
        text = twin("train", train, "--out", tmp_path / "m5", "--encoder", "lstm", *option)
        assert text.exit_code == 1 and text.stderr.strip().endswith("they do not apply to --encoder lstm")
        assert not (tmp_path / "m5").exists()
    lone = twin("train", train, "--out", tmp_path / "m4", "--encoder", "lstm", "--margin-mse", "1")
    assert lone.exit_code == 1 and lone.stderr.strip().endswith("or --silver pairs that carry them")
    assert not (tmp_path / "m4").exists()
