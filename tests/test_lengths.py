"""Training's forward passes in chunks of like length give what one padded pass gives."""

from __future__ import annotations

import numpy as np
import torch

from retrieval.training.lengths import by_length, forward_by_length

TEXTS = ["why?", "how do I cook rice on a gas stove without burning the bottom of the pot?", "who sings opera",
         "what is the fastest way to learn to play the piano as an adult with little free time each week?",
         "is coffee bad", "where does rice grow?", "how can I become a better writer of short stories?"]


def test_chunks_hold_each_index_once_shortest_first():
    lengths = [5, 1, 9, 1, 7, 3, 2]
    chunks = by_length(lengths, 3)
    assert [len(c) for c in chunks] == [3, 3, 1]
    assert sorted(i for c in chunks for i in c) == list(range(7))
    flat = [lengths[i] for c in chunks for i in c]
    assert flat == sorted(lengths) and chunks[0][:2] == [1, 3]  # ties in input order


def test_rows_come_back_in_input_order_with_their_gradients():
    weights = torch.arange(7.0, requires_grad=True)
    lengths = [5, 1, 9, 1, 7, 3, 2]
    out = forward_by_length(lambda rows: weights[rows] * 2, lengths, 2)
    assert torch.equal(out, torch.arange(7.0) * 2)
    (out * torch.arange(7.0)).sum().backward()
    assert torch.equal(weights.grad, torch.arange(7.0) * 2)


def test_the_transformer_student_embeds_alike_in_chunks_and_in_one_pass():
    from retrieval.training.trainer import TransformerTrainable

    trainable = TransformerTrainable(None, max_seq_length=64)
    trainable.module().eval()
    with torch.no_grad():
        chunked = torch.cat([trainable.embed(TEXTS[:5]), trainable.embed(TEXTS[5:])])
        whole = trainable._embed(TEXTS)
    assert torch.allclose(chunked, whole, atol=2e-2)
    assert (chunked * whole).sum(dim=1).min() > 0.999


def test_the_teacher_labels_a_pair_alike_whatever_its_neighbours():
    from retrieval.encoders import packaged_model_path
    from retrieval.training.teacher import CrossEncoderTeacher

    teacher = CrossEncoderTeacher(packaged_model_path(), seed=0)
    pairs = [(TEXTS[i], TEXTS[(i + 3) % len(TEXTS)]) for i in range(len(TEXTS))]
    forward = teacher.label(pairs, batch_size=2)
    backward = teacher.label(pairs[::-1], batch_size=3)[::-1]
    assert np.allclose(forward, backward, atol=2e-3)
    assert np.ptp(forward) > 1e-3  # distinct pairs, distinct labels: the rows were not mixed up
    with torch.no_grad():
        logits = teacher._logits([a for a, _ in pairs], [b for _, b in pairs], chunk=2)
        whole = teacher._forward([a for a, _ in pairs], [b for _, b in pairs])
    assert torch.allclose(logits, whole, atol=5e-2)
