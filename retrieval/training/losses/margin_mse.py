"""Margin-MSE: distillation of a cross-encoder's score margins into a bi-encoder."""

from __future__ import annotations

from torch import Tensor


def margin_mse_loss(student_margins: Tensor, teacher_margins: Tensor) -> Tensor:
    """Mean squared difference between the student's and the teacher's margins.

    For triplets (x, p, n) of an anchor, its positive and a hard negative, with s the student's
    cosine and t the teacher's P(duplicate):

        L = mean ((s(x, p) - s(x, n)) - (t(x, p) - t(x, n)))^2

    Hofstätter, Althammer, Schröder, Sertkan & Hanbury, "Improving Efficient Neural Ranking Models
    with Cross-Architecture Knowledge Distillation" (2020). Only the margin is copied, so the
    student keeps its own scale of cosines; a pair the teacher is unsure of asks for a small gap, a
    clear one for a wide gap, where the triplet loss asks the same gap of every triplet.
    """
    if not len(student_margins):
        return student_margins.sum() * 0.0
    return ((student_margins - teacher_margins) ** 2).mean()
