"""Training: the loss, batch construction, the pair readers, leakage, and tiny real training runs."""

from __future__ import annotations

import copy
import json
import math
import random
from collections import Counter

import numpy as np
import pytest
import torch

from retrieval.errors import InputError
from retrieval.pairs import Pair, PairColumns, drop_leaks, read_labelled
from retrieval.training.batches import TripletBatches
from retrieval.training.losses import batch_triplet_loss

VERBS = [("cook", "prepare"), ("fix", "repair"), ("buy", "purchase"), ("clean", "wash"), ("sell", "trade")]
OBJECTS = ["rice", "a bike", "a car", "shoes", "a laptop", "pasta", "a house", "a phone", "fish", "a boat",
           "eggs", "a sofa", "bread", "a watch", "a guitar", "tea", "a lamp", "cheese", "a drone", "soup"]
FORMS = ["how do i {v} {o}?", "what is the best way to {v} {o}?", "how can i {v} {o}?", "tips to {v} {o}"]


def synthetic_pairs(seed: int, n: int) -> list[Pair]:
    """Paraphrases swap a verb for its synonym and the question form; near-misses change the object."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        verbs, obj = rng.choice(VERBS), rng.choice(OBJECTS)
        a = rng.choice(FORMS).format(v=verbs[0], o=obj)
        if rng.random() < 0.5:
            out.append(Pair(a, rng.choice(FORMS).format(v=verbs[1], o=obj), 1))
        else:
            other = rng.choice([o for o in OBJECTS if o != obj])
            out.append(Pair(a, rng.choice(FORMS).format(v=rng.choice(verbs), o=other), 0))
    return out


def test_loss_against_hand_computed_example():
    anchors = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    s = 2 ** -0.5
    candidates = torch.tensor([[s, s], [0.0, 1.0], [1.0, 0.0]])  # positive 0, positive 1, extra negative
    groups_a, groups_c = torch.tensor([0, 1]), torch.tensor([0, 1, 2])
    # anchor 0: pos 0.7071, negatives (0.0, 1.0): hardest 1.0, mean 0.5
    # anchor 1: pos 1.0, negatives (0.7071, 0.0): hardest 0.7071, mean 0.35355
    alpha = 0.3
    hard = (max(1.0 - s + alpha, 0) + max(s - 1.0 + alpha, 0)) / 2
    mean = (max(0.5 - s + alpha, 0) + max(s / 2 - 1.0 + alpha, 0)) / 2
    loss = batch_triplet_loss(anchors, candidates, groups_a, groups_c, alpha)
    assert loss.item() == pytest.approx(hard + mean, abs=1e-6)


def test_loss_masks_candidates_of_the_anchor_group():
    anchors = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    candidates = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    # the extra candidate is identical to anchor 0 but of its own group: no loss from it
    loss = batch_triplet_loss(anchors, candidates, torch.tensor([0, 1]), torch.tensor([0, 1, 0]), 0.3)
    unmasked = batch_triplet_loss(anchors, candidates, torch.tensor([0, 1]), torch.tensor([0, 1, 5]), 0.3)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    assert unmasked.item() == pytest.approx((1.0 - 1.0 + 0.3) / 2, abs=1e-6)  # anchor 0's hardest term


def test_batches_are_aligned_and_guard_false_negatives():
    pairs = [Pair("q a", "q b", 1), Pair("q b", "q c", 1), Pair("q d", "q e", 1), Pair("q f", "q g", 1),
             Pair("q a", "q c", 0), Pair("q a", "q h", 0), Pair("q x", "q y", 1)]
    batches = TripletBatches(pairs, batch_size=3, seed=1, near_miss_rows=True)
    duplicates = {frozenset((p.a, p.b)) for p in pairs if p.label}
    assert batches.group["q a"] == batches.group["q c"]  # duplicates through q b
    assert "q c" not in batches.hard["q a"]  # a labelled "non-duplicate" that is one through q b
    near_misses = {(p.a, p.b) for p in pairs if not p.label} - {("q a", "q c")}  # q a ~ q c through q b
    assert set(batches.near_misses) == near_misses
    seen = 0
    for batch in batches.epoch(0):
        for anchor, positive in zip(batch.anchors, batch.positives):
            # a labelled duplicate pair, or a near-miss's anchor as its own (dropout) positive
            assert frozenset((anchor, positive)) in duplicates or (
                anchor == positive and any(a == anchor for a, _ in near_misses))
        assert len(set(batch.anchor_groups)) == len(batch.anchors)  # never two rows of one group
        own = {batches.group[t] for t in batch.anchors}
        for negative in batch.negatives:  # drawn from labelled non-duplicates of a pair in this batch
            assert any(negative in batches.hard[t] for t in batch.anchors + batch.positives)
            assert batches.group[negative] not in own or negative not in batches.hard.get(negative, [])
        seen += len(batch.anchors)
    assert seen == len(batches.duplicates) + len(batches.near_misses)
    again = TripletBatches(pairs, batch_size=3, seed=1, near_miss_rows=True)
    assert [b.anchors for b in batches.epoch(3)] == [b.anchors for b in again.epoch(3)]
    assert TripletBatches(pairs, batch_size=3).near_misses == []  # near-miss rows are opt-in


def test_topic_batches_hold_neighbouring_anchors():
    pairs = [Pair(f"cats {i}", f"cat question {i}", 1) for i in range(8)]
    pairs += [Pair(f"cars {i}", f"car question {i}", 1) for i in range(8)]

    def embed(texts):  # two far-apart topics, a little spread inside each
        rng = np.random.default_rng(len(texts))
        v = np.array([[1.0, 0.0] if t.startswith("cat") else [0.0, 1.0] for t in texts])
        v = v + 0.01 * rng.standard_normal(v.shape)
        return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)

    batches = list(TripletBatches(pairs, batch_size=8, seed=3).epoch(0, embed))
    assert len(batches) == 2
    for batch in batches:
        assert len({t.startswith("cat") for t in batch.anchors}) == 1  # one topic a batch


def test_silver_duplicates_that_would_chain_large_groups_are_left_out():
    from retrieval.training.teacher import bounded

    gold = [Pair("a1?", "a2?", 1), Pair("a2?", "a3?", 1), Pair("b1?", "b2?", 0)]
    chain = [Pair(f"s{i}?", f"s{i + 1}?", 1) for i in range(10)]  # s0 ~ s1 ~ ... ~ s10: one group of 11
    silver = [Pair("a3?", "a4?", 1), Pair("a4?", "x?", 0), *chain, Pair("a1?", "s0?", 1)]
    kept = bounded(silver, gold, largest=4)
    assert Pair("a3?", "a4?", 1) in kept and Pair("a4?", "x?", 0) in kept  # gold group grows to 4; negatives stay
    assert [p for p in kept if p in chain] == [p for i, p in enumerate(chain) if i not in (3, 7)]  # cut in 4s
    assert Pair("a1?", "s0?", 1) not in kept  # joining two groups of 4 would make 8
    batches = TripletBatches(gold + kept, batch_size=2)
    assert max(Counter(batches.group.values()).values()) <= 4


def test_the_cross_encoder_teacher_depends_on_its_seed_alone():
    from retrieval.encoders import packaged_model_path
    from retrieval.training.teacher import CrossEncoderTeacher

    pairs = [Pair(f"how do I cook {w}?", f"what is the way to cook {w}?", 1) for w in ("rice", "eggs", "beans")]
    pairs += [Pair(f"how do I cook {w}?", f"where does {w} grow?", 0) for w in ("rice", "eggs", "beans")]
    probe = [("how do I boil rice?", "how should rice be boiled?"), ("how do I boil rice?", "who sings opera?")]

    def labels(seed: int) -> np.ndarray:
        torch.rand(7)  # whatever drew random numbers before must not matter
        teacher = CrossEncoderTeacher(packaged_model_path(), seed=seed)
        teacher.train(pairs, epochs=1, batch_size=3, seed=seed)
        return teacher.label(probe)

    first = labels(0)
    assert np.array_equal(first, labels(0))  # the new head's weights and the training: both from the seed
    assert not np.array_equal(first, labels(1))


def test_too_few_duplicate_pairs():
    with pytest.raises(ValueError, match="at least 2 groups"):
        TripletBatches([Pair("a", "b", 1), Pair("a", "c", 0)], batch_size=4)


def test_pair_readers_and_their_errors(tmp_path):
    qqp = tmp_path / "pairs.csv"
    qqp.write_text('id,question1,question2,is_duplicate\n1,"How, now?",Why now?,1\n2,A?,B?,0\n')
    assert [(p.a, p.b, p.label, p.line) for p in read_labelled(qqp).pairs] == [
        ("How, now?", "Why now?", 1, 2), ("A?", "B?", 0, 3)]
    bimpm = tmp_path / "dev.tsv"
    bimpm.write_text('1\tHow do I " quote ?\tHow to quote ?\t77\n0\tA ?\tB ?\t78\n')
    assert [p.label for p in read_labelled(bimpm).pairs] == [1, 0]
    trip = tmp_path / "t.jsonl"
    trip.write_text(json.dumps({"anchor": "a", "positive": "b", "negative": "c"}) + "\n")
    assert read_labelled(trip).triplets == [("a", "b", "c")]
    mrpc = tmp_path / "msr_paraphrase_test.txt"  # MRPC ships TSV with a .txt suffix
    mrpc.write_text("\ufeffQuality\t#1 String\t#2 String\n1\tHe said.\tHe told.\n")
    assert read_labelled(mrpc, PairColumns("#1 String", "#2 String", "Quality")).pairs[0].label == 1

    bad = tmp_path / "bad.csv"
    bad.write_text("question1,question2,is_duplicate\nA?,B?,1\nC?,D?,2\n")
    with pytest.raises(InputError, match=r"bad\.csv:3:3: label '2' in column 'is_duplicate' is not 0 or 1"):
        read_labelled(bad)
    bad.write_text("question1,question2,is_duplicate\nA?, ,1\n")
    with pytest.raises(InputError, match=r"bad\.csv:2:2: empty text in column 'question2'"):
        read_labelled(bad)
    bad.write_text("q1,q2,label\nA?,B?,1\n")
    with pytest.raises(InputError, match=r"bad\.csv:1: no column 'question1'"):
        read_labelled(bad)


def test_leakage_filter_matches_normalised_questions():
    train = [Pair("How do I learn Python?", "Best way to learn Python?", 1), Pair("What is AI?", "Define AI", 1),
             Pair("Is tea healthy ?", "Is coffee healthy?", 0)]
    kept, dropped = drop_leaks(train, {"how do I learn python", "IS TEA HEALTHY?"})
    assert dropped == 2 and [p.a for p in kept] == ["What is AI?"]


def test_metrics_match_scikit_learn():
    from sklearn import metrics

    from retrieval.evaluate import average_precision, pair_metrics, roc_auc

    rng = np.random.default_rng(3)
    labels = rng.random(500) < 0.4
    scores = np.round(rng.normal(labels * 0.4, 0.3), 2)  # ties on purpose
    assert average_precision(scores, labels) == pytest.approx(metrics.average_precision_score(labels, scores))
    assert roc_auc(scores, labels) == pytest.approx(metrics.roc_auc_score(labels, scores))
    at = pair_metrics(scores, labels, 0.2)
    predicted = scores > 0.2
    assert at["accuracy"] == pytest.approx(metrics.accuracy_score(labels, predicted))
    assert at["precision"] == pytest.approx(metrics.precision_score(labels, predicted))
    assert at["recall"] == pytest.approx(metrics.recall_score(labels, predicted))
    assert at["f1"] == pytest.approx(metrics.f1_score(labels, predicted))


def lstm_run(tmp_path, name: str, seed: int = 0, epochs: int = 4, tokens: str = "words", pooling: str = "max",
             teacher=None, distil_weight: float = 1.0, dropout: float = 0.0,  # noqa: ANN001 - EmbeddingTeacher
             weight_average: float = 0.0, dev: bool = True, freeze_embeddings: bool = False):
    from retrieval.training.trainer import LSTMTrainable, TrainConfig, train

    pairs = synthetic_pairs(seed=1, n=600)
    trainable = LSTMTrainable([t for p in pairs for t in (p.a, p.b)], max_seq_length=16, seed=seed, tokens=tokens,
                              pooling=pooling, dropout=dropout, freeze_embeddings=freeze_embeddings)
    config = TrainConfig("lstm", epochs=epochs, batch_size=16, seed=seed, patience=epochs, distil_weight=distil_weight,
                         weight_average=weight_average)
    summary = train(trainable, TripletBatches(pairs, batch_size=16, seed=seed), config, tmp_path / name,
                    dev=synthetic_pairs(seed=2, n=300) if dev else None, teacher=teacher)
    return summary, trainable


def test_tiny_lstm_learns_a_synthetic_paraphrase_task(tmp_path):
    summary, _ = lstm_run(tmp_path, "a")
    losses = [e["mean_loss"] for e in summary["epochs"]]
    assert losses[-1] < losses[0] * 0.7
    assert max(e["dev_accuracy"] for e in summary["epochs"]) >= 0.8  # chance is 0.5
    from retrieval.encoders import load_encoder

    encoder = load_encoder(tmp_path / "a")
    vectors = encoder.encode(["how do i cook rice?", "what is the best way to prepare rice?", "how do i cook fish?"])
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]
    log = (tmp_path / "a" / "train_log.jsonl").read_text().splitlines()
    assert len(log) == summary["steps"] and "loss" in json.loads(log[0])


def test_an_lstm_on_the_packaged_wordpieces_starts_from_minilms_table_and_reloads_with_its_dropout(tmp_path):
    from retrieval.encoders import load_encoder
    from retrieval.training.trainer import LSTMTrainable, packaged_token_embeddings

    tokenizer, table = packaged_token_embeddings()
    fresh = LSTMTrainable(["unused"], 16, tokens="packaged", pooling="max+attention")
    rice = tokenizer.token_to_id("rice")
    assert torch.equal(fresh.module().embed.weight[rice], table[rice])  # MiniLM's row, before training
    summary, trained = lstm_run(tmp_path, "wp", tokens="packaged", pooling="max+attention", dropout=0.2)
    assert max(e["dev_accuracy"] for e in summary["epochs"]) >= 0.8
    assert (tmp_path / "wp" / "tokenizer.json").is_file() and not (tmp_path / "wp" / "vocab.json").exists()
    texts = ["how do i cook rice?", "what is the best way to prepare rice?", ""]
    again = load_encoder(tmp_path / "wp")
    assert again.config["dropout"] == 0.2
    assert np.allclose(again.encode(texts), trained.encoder.encode(texts), atol=1e-6)  # no dropout at inference
    ids = again.ids(texts[:2])
    again.module.train()  # while training, dropout makes two passes differ
    assert not torch.allclose(again.module(ids), again.module(ids))
    with pytest.raises(ValueError, match="unknown pooling"):
        LSTMTrainable(["x"], 16, pooling="mean")


def test_frozen_embeddings_keep_the_table_and_train_the_rest(tmp_path):
    from retrieval.training.trainer import LSTMTrainable

    texts = [t for p in synthetic_pairs(seed=1, n=600) for t in (p.a, p.b)]  # lstm_run's
    start = copy.deepcopy(LSTMTrainable(texts, 16, tokens="words").module().state_dict())
    summary, frozen = lstm_run(tmp_path, "frozen", epochs=2, freeze_embeddings=True)
    assert max(e["dev_accuracy"] for e in summary["epochs"]) >= 0.8
    trained = frozen.module().state_dict()
    assert torch.equal(trained["embed.weight"], start["embed.weight"])  # same seed, same start
    assert not torch.equal(trained["lstm.weight_ih_l0"], start["lstm.weight_ih_l0"])
    _, free = lstm_run(tmp_path, "free", epochs=2)
    assert not torch.equal(free.module().state_dict()["embed.weight"], trained["embed.weight"])


def test_similarity_distillation_against_hand_computed_example():
    from retrieval.training.losses import similarity_distillation_loss

    teacher = torch.nn.functional.normalize(torch.randn(5, 8), dim=1)
    rotation, _ = torch.linalg.qr(torch.randn(8, 8))
    same_geometry = torch.cat([teacher @ rotation, torch.zeros(5, 4)], dim=1)  # 12-d, the same cosines
    assert similarity_distillation_loss(same_geometry, teacher).item() == pytest.approx(0.0, abs=1e-6)
    student = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # cosine 0 where the teacher says 0.6
    teacher = torch.tensor([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0]])
    assert similarity_distillation_loss(student, teacher).item() == pytest.approx(0.36, abs=1e-6)
    assert similarity_distillation_loss(student[:1], teacher[:1]).item() == 0.0


def test_distillation_pulls_the_lstm_toward_the_teachers_cosines(tmp_path):
    from retrieval.encoders import load_encoder
    from retrieval.training.trainer import EmbeddingTeacher

    packaged = load_encoder()
    texts = sorted({t for p in synthetic_pairs(seed=1, n=600) for t in (p.a, p.b)})
    teacher = EmbeddingTeacher(packaged, texts)
    assert teacher(texts[:3]).shape == (3, packaged.dimension)
    unseen = teacher(["a text no batch holds"])  # encoded when asked, and kept
    assert np.allclose(unseen.numpy(), packaged.encode(["a text no batch holds"]), atol=1e-5)

    probe = [t for p in synthetic_pairs(seed=3, n=60) for t in (p.a, p.b)]
    target = packaged.encode(probe) @ packaged.encode(probe).T

    def gap(trained) -> float:  # noqa: ANN001 - LSTMTrainable
        vectors = trained.encoder.encode(probe)
        return float(np.abs(vectors @ vectors.T - target).mean())

    _, plain = lstm_run(tmp_path, "plain", epochs=2)
    summary, distilled = lstm_run(tmp_path, "distilled", epochs=2, teacher=teacher, distil_weight=10.0)
    assert gap(distilled) < 0.7 * gap(plain)  # it learned the teacher's cosines of unseen texts
    assert max(e["dev_accuracy"] for e in summary["epochs"]) >= 0.8  # and still the task


def test_ranking_distillation_against_hand_computed_example():
    from retrieval.training.losses import ranking_distillation_loss

    teacher = torch.nn.functional.normalize(torch.randn(6, 8), dim=1)
    rotation, _ = torch.linalg.qr(torch.randn(8, 8))
    same = torch.cat([teacher @ rotation, torch.zeros(6, 4)], dim=1)  # 12-d, the same cosines
    assert ranking_distillation_loss(same[:2], same[2:], teacher[:2], teacher[2:]).item() == pytest.approx(0, abs=1e-5)
    anchor, student, taught = torch.tensor([[1.0, 0.0]]), torch.eye(2), torch.eye(2).flip(0)  # the order reversed
    expected = (math.e - 1) / (math.e + 1)  # p = softmax(0, 1), q = softmax(1, 0): KL = p1 - p0
    assert ranking_distillation_loss(anchor, student, anchor, taught, scale=1.0).item() == pytest.approx(expected)
    lifted = torch.tensor([[1.0, 0.0, 0.4], [0.0, 1.0, 0.4]])  # against [1, 0, 1]: cosines 1.4 and 0.4
    shifted = ranking_distillation_loss(torch.tensor([[1.0, 0.0, 1.0]]), lifted, anchor, torch.eye(2), scale=1.0)
    assert shifted.item() == pytest.approx(0.0, abs=1e-6)  # each of an anchor's cosines + 0.4: no cost
    assert ranking_distillation_loss(anchor, student[:1], anchor, taught[:1]).item() == 0.0  # one candidate: no order
    candidates = torch.eye(2).requires_grad_()
    ranking_distillation_loss(anchor, candidates, anchor, taught).backward()
    assert candidates.grad[1] @ anchor[0] < 0 < candidates.grad[0] @ anchor[0]  # the teacher's first pulled in


def test_word_variants_change_words_from_the_corpus_and_repeat_with_the_seed():
    from retrieval.training.variants import word_variants

    texts = [p.a for p in synthetic_pairs(seed=4, n=50)] + ["rice"]
    variants = word_variants(texts, seed=0, rate=0.15)
    assert set(variants) == set(texts)
    assert variants == word_variants(list(reversed(texts)), seed=0, rate=0.15)  # order-free, seeded
    assert variants != word_variants(texts, seed=1, rate=0.15)
    corpus = {w for t in texts for w in t.split()}
    for text, variant in variants.items():
        assert variant != text and set(variant.split()) <= corpus
        assert abs(len(variant.split()) - len(text.split())) <= max(1, len(text.split()))
    heavy = word_variants(texts, seed=0, rate=0.5)
    changed = np.mean([len(set(heavy[t].split()) ^ set(t.split())) for t in texts])
    assert changed > np.mean([len(set(variants[t].split()) ^ set(t.split())) for t in texts])


def test_distillation_on_variants_gives_the_teachers_vectors_of_them(tmp_path):
    from retrieval.encoders import load_encoder
    from retrieval.training.trainer import EmbeddingTeacher

    packaged = load_encoder()
    texts = sorted({t for p in synthetic_pairs(seed=1, n=600) for t in (p.a, p.b)})
    teacher = EmbeddingTeacher(packaged, texts, variant_rate=0.2, seed=0)
    variants = teacher.variants_of([texts[0], "a text with none", texts[1]])
    assert len(variants) == 2 and variants[0] != texts[0]
    assert np.allclose(teacher(variants).numpy(), packaged.encode(variants), atol=1e-5)
    assert EmbeddingTeacher(packaged, texts[:5]).variants_of(texts[:5]) == []
    summary, _ = lstm_run(tmp_path, "variants", epochs=2, teacher=teacher, distil_weight=10.0)
    assert max(e["dev_accuracy"] for e in summary["epochs"]) >= 0.8


def test_margin_mse_against_hand_computed_example():
    from retrieval.training.losses import margin_mse_loss

    student, teacher = torch.tensor([0.5, 0.2]), torch.tensor([0.7, 0.2])
    assert margin_mse_loss(student, teacher).item() == pytest.approx(0.02, abs=1e-7)  # (0.2^2 + 0) / 2
    assert margin_mse_loss(student[:0], teacher[:0]).item() == 0.0


def test_a_transformer_student_gets_the_whole_epochs_nearest_to_its_step_budget():
    from retrieval.training.recipe import MAX_STUDENT_EPOCHS, STUDENT_STEPS, student_epochs

    assert student_epochs(92) == 3 and student_epochs(467) == 3  # MRPC, QQP's 20k-pair sample
    assert student_epochs(600) == 2 and student_epochs(1000) == 1  # 1,400 / 600 rounds to 2, 1,400 / 1,000 to 1
    assert student_epochs(1) == MAX_STUDENT_EPOCHS and student_epochs(0) == MAX_STUDENT_EPOCHS  # never more
    assert student_epochs(10 * STUDENT_STEPS) == 1  # never fewer than 1


def test_cosent_against_hand_computed_example_and_its_gradient():
    from retrieval.training.losses import cosent_loss

    cosines = torch.tensor([0.9, 0.2, 0.5, 0.4], requires_grad=True)
    targets = torch.tensor([1.0, 0.0, 0.3, 0.3])  # ordered: 0 > 1, 0 > 2, 0 > 3, 2 > 1, 3 > 1; 2 ~ 3 tie
    expected = math.log(1 + sum(math.exp(20 * d) for d in (0.2 - 0.9, 0.5 - 0.9, 0.4 - 0.9, 0.2 - 0.5, 0.2 - 0.4)))
    loss = cosent_loss(cosines, targets)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    grad = cosines.grad
    assert grad[0] < 0 < grad[1]  # the top-ranked pair's cosine is pulled up, the bottom one's down
    assert grad[2] < 0 and grad[3] < 0  # each is above pair 1 by its target: pushed up from it, and
    assert abs(grad[2]) < abs(grad[3])  # pair 3, nearer pair 1's cosine, harder than pair 2
    assert cosent_loss(cosines, torch.ones(4)).item() == 0.0  # no order, no loss
    assert cosent_loss(cosines[:0], targets[:0]).item() == 0.0


def test_batches_carry_the_scores_of_their_pairs_for_the_cosent_term():
    gold = [Pair("q a", "q b", 1), Pair("q c", "q d", 1), Pair("q e", "q f", 1), Pair("q e", "q z", 0)]
    silver = [Pair("q a", "q x", 0, score=0.3), Pair("q g", "q h", 1, score=0.8)]
    batches = TripletBatches(gold + silver, batch_size=3, seed=0, near_miss_pairs=2)
    for epoch in range(3):
        for batch in batches.epoch(epoch):
            rows = list(zip(batch.anchors, batch.positives)) + batch.near_misses
            assert len(batch.pair_targets) == len(rows)
            for (a, b), target in zip(rows, batch.pair_targets):
                pair = frozenset((a, b))
                silver_score = {frozenset(("q a", "q x")): 0.3, frozenset(("q g", "q h")): 0.8}.get(pair)
                assert target == (silver_score if silver_score is not None else float(pair in {
                    frozenset(("q a", "q b")), frozenset(("q c", "q d")), frozenset(("q e", "q f"))}))
    plain = TripletBatches(gold, batch_size=3, seed=0, near_miss_pairs=1)
    for batch in plain.epoch(0):  # no teacher: the labels alone
        assert batch.pair_targets == [1.0] * len(batch.anchors) + [0.0] * len(batch.near_misses)


def test_training_with_the_cosent_term_learns_and_records_it(tmp_path):
    from retrieval.training.trainer import LSTMTrainable, TrainConfig, train

    pairs = synthetic_pairs(seed=1, n=600)
    trainable = LSTMTrainable([t for p in pairs for t in (p.a, p.b)], max_seq_length=16, tokens="words")
    config = TrainConfig("lstm", epochs=3, batch_size=16, patience=3, cosent=1.0)
    summary = train(trainable, TripletBatches(pairs, batch_size=16, near_miss_pairs=8), config, tmp_path / "c",
                    dev=synthetic_pairs(seed=2, n=300))
    assert max(e["dev_accuracy"] for e in summary["epochs"]) >= 0.8
    assert summary["config"]["cosent"] == 1.0
    plain = train(LSTMTrainable([t for p in pairs for t in (p.a, p.b)], max_seq_length=16, tokens="words"),
                  TripletBatches(pairs, batch_size=16, near_miss_pairs=8),
                  TrainConfig("lstm", epochs=1, batch_size=16), tmp_path / "p")
    assert summary["epochs"][0]["mean_loss"] > plain["epochs"][0]["mean_loss"]  # the term is in the loss


def test_in_batch_ranking_against_hand_computed_example_and_its_mask():
    from retrieval.training.losses import in_batch_ranking_loss

    anchors = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    candidates = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.8, 0.6], [0.0, 1.0]], requires_grad=True)
    anchor_groups, candidate_groups = torch.tensor([0, 1]), torch.tensor([0, 1, 2, 0])  # candidate 3: anchor 0's group
    loss = in_batch_ranking_loss(anchors, candidates, anchor_groups, candidate_groups)
    first = -math.log(math.exp(20) / (math.exp(20) + math.exp(12) + math.exp(16)))  # candidate 3 masked for anchor 0
    second = -math.log(math.exp(16) / (math.exp(0) + math.exp(16) + math.exp(12) + math.exp(20)))  # a negative here
    assert loss.item() == pytest.approx((first + second) / 2, rel=1e-5)
    loss.backward()
    assert candidates.grad[1] @ anchors[1] < 0 < candidates.grad[3] @ anchors[1]  # positive pulled in, negative out
    moved = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.8, 0.6], [1.0, 0.0]])  # anchor 0's group-mate right on it
    alone = in_batch_ranking_loss(anchors[:1], moved, anchor_groups[:1], candidate_groups)
    assert alone.item() == pytest.approx(first, rel=1e-5)  # a duplicate through a third text is never a negative


def test_the_candidate_memory_keeps_the_newest_without_gradient_and_masks_remembered_duplicates():
    from retrieval.training.losses import in_batch_ranking_loss
    from retrieval.training.memory import CandidateMemory

    memory = CandidateMemory(3)
    first = torch.tensor([[1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    assert memory.extended(first, torch.tensor([5, 6]))[0] is first and len(memory) == 0
    memory.remember(first * 1, torch.tensor([5, 6]))
    memory.remember(torch.tensor([[0.6, 0.8], [0.8, 0.6]]), torch.tensor([7, 8]))
    assert len(memory) == 3 and memory.groups.tolist() == [7, 8, 5]  # the oldest row forgotten
    assert not memory.vectors.requires_grad
    anchors, positives = torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0]], requires_grad=True)
    ranked, groups = memory.extended(positives, torch.tensor([5]))
    assert ranked.shape == (4, 2) and groups.tolist() == [5, 7, 8, 5]
    with_memory = in_batch_ranking_loss(anchors, ranked, torch.tensor([5]), groups)
    expected = -math.log(math.exp(20) / (math.exp(20) + math.exp(12) + math.exp(16)))  # row 3: its group, masked
    assert with_memory.item() == pytest.approx(expected, rel=1e-5)
    assert in_batch_ranking_loss(anchors, positives, torch.tensor([5]), torch.tensor([5])).item() < 1e-6
    with_memory.backward()
    assert positives.grad is not None and positives.grad[0] @ anchors[0] < 0  # the positive pulled in


def test_the_candidate_memory_keeps_a_teachers_vectors_row_for_row():
    from retrieval.training.memory import CandidateMemory

    memory = CandidateMemory(3)
    taught = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    assert memory.teacher_extended(taught) is taught  # nothing remembered yet
    memory.remember(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([5, 6]), taught)
    memory.remember(torch.tensor([[0.6, 0.8], [0.8, 0.6]]), torch.tensor([7, 8]),
                    torch.tensor([[0.0, 0.0, 1.0], [0.6, 0.0, 0.8]], requires_grad=True))
    assert memory.teacher.shape == (3, 3) and not memory.teacher.requires_grad
    assert memory.teacher[:, 2].tolist() == pytest.approx([1.0, 0.8, 0.0])  # newest first, the oldest forgotten
    rows = memory.teacher_extended(torch.tensor([[0.0, 1.0, 0.0]]))
    vectors, groups = memory.extended(torch.tensor([[0.0, 1.0]]), torch.tensor([9]))
    assert rows.shape[0] == vectors.shape[0] == 4 and groups.tolist() == [9, 7, 8, 5]
    assert rows[3].tolist() == [1.0, 0.0, 0.0]  # group 5's teacher row, where group 5's vector is


def test_ranking_distillation_teaches_the_teachers_nearest_neighbours(tmp_path):
    from retrieval.encoders import load_encoder
    from retrieval.training.trainer import EmbeddingTeacher, LSTMTrainable, TrainConfig, train

    packaged = load_encoder()
    pairs = synthetic_pairs(seed=1, n=600)
    texts = [t for p in pairs for t in (p.a, p.b)]
    teacher = EmbeddingTeacher(packaged, texts)
    probe = sorted({t for p in synthetic_pairs(seed=3, n=80) for t in (p.a, p.b)})
    wanted = packaged.encode(probe) @ packaged.encode(probe).T
    np.fill_diagonal(wanted, -2)

    def agreement(run: str, **options) -> tuple[float, dict]:  # noqa: ANN003
        trainable = LSTMTrainable(texts, max_seq_length=16, tokens="words")
        config = TrainConfig("lstm", epochs=2, batch_size=16, patience=2, ranking=1.0, ranking_memory=96, **options)
        summary = train(trainable, TripletBatches(pairs, batch_size=16), config, tmp_path / run,
                        dev=synthetic_pairs(seed=2, n=300), teacher=teacher if options else None)
        vectors = trainable.encoder.encode(probe)
        got = vectors @ vectors.T
        np.fill_diagonal(got, -2)
        return float(np.mean(got.argmax(1) == wanted.argmax(1))), summary

    plain, _ = agreement("plain")
    taught, summary = agreement("taught", distil_loss="ranking", distil_weight=5.0)
    assert taught > plain + 0.1  # the probe texts' nearest neighbours are more often the teacher's
    assert max(e["dev_accuracy"] for e in summary["epochs"]) >= 0.8 and summary["config"]["distil_loss"] == "ranking"


def test_training_with_the_in_batch_ranking_term_learns_and_records_it(tmp_path):
    from retrieval.training.trainer import LSTMTrainable, TrainConfig, train

    pairs = synthetic_pairs(seed=1, n=600)
    texts = [t for p in pairs for t in (p.a, p.b)]
    config = TrainConfig("lstm", epochs=3, batch_size=16, patience=3, ranking=1.0)
    summary = train(LSTMTrainable(texts, max_seq_length=16, tokens="words"), TripletBatches(pairs, batch_size=16),
                    config, tmp_path / "r", dev=synthetic_pairs(seed=2, n=300))
    assert max(e["dev_accuracy"] for e in summary["epochs"]) >= 0.8
    assert summary["config"]["ranking"] == 1.0
    plain = train(LSTMTrainable(texts, max_seq_length=16, tokens="words"), TripletBatches(pairs, batch_size=16),
                  TrainConfig("lstm", epochs=1, batch_size=16), tmp_path / "p")
    assert summary["epochs"][0]["mean_loss"] > plain["epochs"][0]["mean_loss"]  # the term is in the loss
    remembered = train(LSTMTrainable(texts, max_seq_length=16, tokens="words"), TripletBatches(pairs, batch_size=16),
                       TrainConfig("lstm", epochs=3, batch_size=16, patience=3, ranking=1.0, ranking_memory=96),
                       tmp_path / "m")
    assert remembered["config"]["ranking_memory"] == 96
    steps = {run: [json.loads(line)["loss"] for line in (tmp_path / run / "train_log.jsonl").open()] for run in "rm"}
    assert steps["m"][0] == pytest.approx(steps["r"][0])  # the memory is empty at the first step
    assert remembered["epochs"][0]["mean_loss"] > summary["epochs"][0]["mean_loss"]  # then more negatives


def test_the_miner_skips_group_mates_and_texts_nearly_as_close_as_the_positive():
    from retrieval.training.mining import NegativeMiner

    def unit(degrees: float) -> list[float]:
        return [math.cos(math.radians(degrees)), math.sin(math.radians(degrees))]

    angles = {"anchor": 0, "positive": 40, "mate": 5, "close": 35, "far": 50, "farther": 90}
    groups = {"anchor": 0, "positive": 0, "mate": 0, "close": 1, "far": 2, "farther": 3}
    miner = NegativeMiner(groups, ratio=0.95)
    assert miner.negative("anchor", "positive") is None  # nothing mined yet
    calls = []

    def embed(texts):
        calls.append(list(texts))
        return np.array([unit(angles[t]) for t in texts], dtype=np.float32)

    miner.refresh(embed)
    assert sorted(calls[0]) == sorted(groups)  # every training text is embedded
    # mate: the anchor's own group; close: cos 35 deg = 0.819 > 0.95 x cos 40 deg = 0.728; far passes
    assert miner.negative("anchor", "positive") == "far"
    angles["positive"] = 10  # a closer positive raises the ceiling: close passes now
    miner.refresh(embed)
    assert miner.negative("anchor", "positive") == "close"
    assert miner.negatives([("anchor", "positive"), ("farther", "farther")]) == ["close", "far"]
    assert NegativeMiner(groups, ratio=0.5).negative("anchor", "positive") is None  # not refreshed


def test_batches_mine_negatives_with_the_model_as_it_stands_and_refresh():
    pairs = [Pair(f"cats {i}", f"cat question {i}", 1) for i in range(8)]
    pairs += [Pair(f"cars {i}", f"car question {i}", 1) for i in range(8)]
    batches = TripletBatches(pairs, batch_size=4, seed=3)
    refreshed = []

    def embed(texts):  # two topics; each text's own direction inside its topic, so a pair is nearest
        refreshed.append(len(texts))
        v = np.array([[1.0 if t.startswith("cat") else 0.0, 0.0 if t.startswith("cat") else 1.0,
                       0.3 * math.sin(int(t.split()[-1])), 0.3 * math.cos(int(t.split()[-1]))] for t in texts])
        return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)

    epoch = list(batches.epoch(0, mine=embed, mine_every=2))
    assert len(refreshed) == -(-len(epoch) // 2) and set(refreshed) == {32}  # every 2 batches, all texts
    for batch in epoch:
        assert len(batch.negatives) == len(batch.anchors)  # one mined negative a row (no labelled ones here)
        for anchor, negative in zip(batch.anchors, batch.negatives):
            assert batches.group[negative] != batches.group[anchor]
            assert negative.startswith(anchor[:3])  # the nearest outside the group: same topic
    plain = list(TripletBatches(pairs, batch_size=4, seed=3).epoch(0))
    assert [b.anchors for b in plain] == [b.anchors for b in epoch] and all(not b.negatives for b in plain)


def test_training_with_mined_negatives_learns_and_records_it(tmp_path):
    from retrieval.training.trainer import LSTMTrainable, TrainConfig, _encoder_of, train

    pairs = synthetic_pairs(seed=1, n=600)
    texts = [t for p in pairs for t in (p.a, p.b)]
    config = TrainConfig("lstm", epochs=3, batch_size=16, patience=3, mined_negatives=True, mine_every=10)
    trainable = LSTMTrainable(texts, max_seq_length=16, tokens="words")
    summary = train(trainable, TripletBatches(pairs, batch_size=16), config, tmp_path / "m",
                    dev=synthetic_pairs(seed=2, n=300))
    assert max(e["dev_accuracy"] for e in summary["epochs"]) >= 0.8
    assert summary["config"]["mined_negatives"] and summary["config"]["mine_every"] == 10
    encode = _encoder_of(trainable)  # what mines in the middle of an epoch: no dropout, the mode left as it was
    for mode in (True, False):
        trainable.module().train(mode)
        assert encode(["how do i cook rice?"]).shape == (1, trainable.encoder.dimension)
        assert trainable.module().training == mode
    plain = train(LSTMTrainable(texts, max_seq_length=16, tokens="words"), TripletBatches(pairs, batch_size=16),
                  TrainConfig("lstm", epochs=1, batch_size=16), tmp_path / "p")
    assert summary["epochs"][0]["mean_loss"] > plain["epochs"][0]["mean_loss"]  # harder negatives, higher loss


def test_margin_term_compares_each_rows_cosine_gap_with_the_teachers():
    from retrieval.training.trainer import _margin_term

    anchors = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    positives = torch.tensor([[0.8, 0.6], [0.0, 1.0]])
    negatives = torch.tensor([[0.6, 0.8], [1.0, 0.0]])
    # row 0: the anchor's negative 0, gap 0.8 - 0.6 = 0.2, teacher 0.5; row 1: the positive's negative 1, gap 1 - 0
    loss = _margin_term(anchors, positives, negatives, [(0, 0, False, 0.5), (1, 1, True, 1.0)])
    assert loss.item() == pytest.approx((0.3**2 + 0.0) / 2, abs=1e-6)


def test_batches_carry_the_teachers_margins_of_their_triplets():
    gold = [Pair("q a", "q b", 1), Pair("q c", "q d", 1), Pair("q e", "q f", 1), Pair("q e", "q z", 0)]
    silver = [Pair("q a", "q x", 0, score=0.3), Pair("q d", "q y", 0, score=0.1), Pair("q c", "q w", 1, score=0.8)]
    batches = TripletBatches(gold + silver, batch_size=3, seed=0)
    seen = 0
    for epoch in range(4):
        for batch in batches.epoch(epoch):
            assert len({row for row, *_ in batch.scored}) == len(batch.scored)
            for row, j, of_positive, margin in batch.scored:
                a, b, n = batch.anchors[row], batch.positives[row], batch.negatives[j]
                x = b if of_positive else a
                assert margin == pytest.approx(batches.scores[frozenset((a, b))] - batches.scores[frozenset((x, n))])
                assert n in batches.hard[x]
                seen += 1
    assert seen >= 4  # every row with a negative has both pairs scored here (gold pairs: their labels)
    assert batches.scores[frozenset(("q c", "q w"))] == 0.8 and batches.scores[frozenset(("q e", "q z"))] == 0.0
    plain = TripletBatches(gold + [Pair(p.a, p.b, p.label) for p in silver], batch_size=3, seed=0)
    assert all(not batch.scored for batch in plain.epoch(0))  # no teacher, no margin term


def test_weight_average_against_hand_computed_example():
    from retrieval.training.averaging import WeightAverage

    layer = torch.nn.Linear(1, 1, bias=False)
    frozen = torch.nn.Parameter(torch.ones(1), requires_grad=False)
    layer.register_parameter("frozen", frozen)
    with torch.no_grad():
        layer.weight.fill_(0.0)
    average = WeightAverage(layer, decay=0.5)
    for value in (1.0, 3.0):
        with torch.no_grad():
            layer.weight.fill_(value)
        average.update()
    # step 1 keeps 2/11 of the start (0) and takes 9/11 of 1; step 2: min(0.5, 3/12) = 1/4 of that, 3/4 of 3
    expected = (9 / 11) / 4 + 3 * 3 / 4
    with average.applied():
        assert layer.weight.item() == pytest.approx(expected)
    assert layer.weight.item() == 3.0  # the training weights are back
    average.copy_to()
    assert layer.weight.item() == pytest.approx(expected) and frozen.item() == 1.0
    with pytest.raises(ValueError, match="strictly between"):
        WeightAverage(layer, decay=1.0)


def test_training_with_weight_average_keeps_and_saves_the_average(tmp_path):
    from retrieval.encoders import load_encoder

    summary, averaged = lstm_run(tmp_path, "avg", epochs=3, weight_average=0.99)
    assert max(e["dev_accuracy"] for e in summary["epochs"]) >= 0.8
    assert json.loads((tmp_path / "avg" / "twin_training.json").read_text())["config"]["weight_average"] == 0.99
    _, plain = lstm_run(tmp_path, "plain", epochs=3)
    probe = ["how do i cook rice?", "what is the best way to prepare rice?", "tips to sell a boat"]
    assert not np.allclose(averaged.encoder.encode(probe), plain.encoder.encode(probe), atol=1e-3)
    # without dev: the same steps as a plain run (averaging changes no step), and the average is saved
    _, last = lstm_run(tmp_path, "last", epochs=3, dev=False)
    lstm_run(tmp_path, "nodev", epochs=3, weight_average=0.99, dev=False)
    saved = load_encoder(tmp_path / "nodev").encode(probe)
    assert np.allclose(load_encoder(tmp_path / "last").encode(probe), last.encoder.encode(probe), atol=1e-6)
    assert not np.allclose(saved, last.encoder.encode(probe), atol=1e-3)


def test_same_seed_same_model(tmp_path):
    _, first = lstm_run(tmp_path, "a", seed=7, epochs=1)
    _, second = lstm_run(tmp_path, "b", seed=7, epochs=1)
    for (name, a), (_, b) in zip(first.module().state_dict().items(), second.module().state_dict().items()):
        assert torch.equal(a, b), name


def test_one_transformer_step_saves_a_sentence_transformers_folder(tmp_path):
    from sentence_transformers import SentenceTransformer

    from retrieval.encoders import load_encoder
    from retrieval.training.trainer import TrainConfig, TransformerTrainable, train

    encoder = load_encoder(backend="torch")  # the shared torch model the trainer must copy, not change
    pairs = synthetic_pairs(seed=4, n=16)
    trainable = TransformerTrainable(None, max_seq_length=16)
    before = trainable.model.encode(["how do i cook rice?"], normalize_embeddings=True)
    summary = train(trainable, TripletBatches(pairs, batch_size=4, seed=0),
                    TrainConfig("transformer", epochs=1, batch_size=4, lr=1e-4), tmp_path / "st")
    assert summary["steps"] >= 1
    loaded = SentenceTransformer(str(tmp_path / "st"), device="cpu")
    after = loaded.encode(["how do i cook rice?"], normalize_embeddings=True)
    assert after.shape == (1, 384) and not np.allclose(before, after)
    assert np.allclose(encoder.encode(["how do i cook rice?"]), before, atol=1e-2)  # the shared model is untouched


def test_layer_decay_gives_each_transformer_layer_its_rate_and_the_lowest_barely_move(tmp_path):
    from retrieval.training.trainer import TrainConfig, TransformerTrainable, train

    trainable = TransformerTrainable(None, max_seq_length=16)
    names = {id(p): n for n, p in trainable.model.named_parameters()}
    groups = trainable.parameter_groups(1e-4, 0.5)
    assert sorted(names[id(p)] for g in groups for p in g["params"]) == sorted(names.values())  # each once
    lrs = {names[id(p)]: g["lr"] for g in groups for p in g["params"]}
    assert lrs["0.model.embeddings.word_embeddings.weight"] == pytest.approx(1e-4 * 0.5**7)
    for layer in range(6):  # six layers; the one at the top steps at half the rate, the pooler above it at lr
        assert lrs[f"0.model.encoder.layer.{layer}.output.dense.weight"] == pytest.approx(1e-4 * 0.5 ** (6 - layer))
    assert lrs["0.model.pooler.dense.weight"] == 1e-4 and len(groups) == 8
    assert [len(g["params"]) for g in trainable.parameter_groups(1e-4, 1.0)] == [len(names)]  # 1: one group
    before = copy.deepcopy(trainable.model.state_dict())
    train(trainable, TripletBatches(synthetic_pairs(seed=4, n=16), batch_size=4, seed=0),
          TrainConfig("transformer", epochs=1, batch_size=4, lr=1e-4, layer_decay=1e-2), tmp_path / "st")
    after = trainable.model.state_dict()
    moved = {n: float((after[n] - before[n]).abs().max()) for n in before}
    assert moved["0.model.embeddings.word_embeddings.weight"] < 1e-12  # lr x 1e-14
    assert moved["0.model.encoder.layer.0.output.dense.weight"] < 1e-12  # lr x 1e-12
    assert moved["0.model.encoder.layer.5.output.dense.weight"] > 1e-7  # lr x 1e-2 (in warm-up): it learns


def test_quadruplet_term_against_hand_computed_example():
    anchors = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    candidates = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # both positives score 1.0, negatives 0.0
    groups = torch.tensor([0, 1])
    base = batch_triplet_loss(anchors, candidates, groups, groups, 0.3)
    assert base.item() == pytest.approx(0.0, abs=1e-6)
    near = torch.tensor([0.95, 0.5])  # the hardest near-miss pair scores 0.95
    loss = batch_triplet_loss(anchors, candidates, groups, groups, 0.3, near, 0.1)
    assert loss.item() == pytest.approx(max(0.95 - 1.0 + 0.1, 0), abs=1e-6)


def test_near_miss_pairs_ride_along_with_batches():
    pairs = synthetic_pairs(seed=5, n=200)
    batches = TripletBatches(pairs, batch_size=8, seed=0, near_miss_pairs=4)
    labelled = {(a, b) for a, b in batches.labelled_near_misses}
    for batch in batches.epoch(0):
        assert len(batch.near_misses) == 4 and set(batch.near_misses) <= labelled
