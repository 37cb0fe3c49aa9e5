"""Selectively contrastive batch-hard triplet loss on cosine over P classes x K images a batch."""

from __future__ import annotations

import torch
from torch import Tensor

from .batch_hard import hardest_pairs


def selective_contrastive_loss(vectors: Tensor, labels: Tensor, margin: float = 0.3) -> Tensor:
    """Batch-hard triplets, where a triplet whose negative is nearer than its positive only pushes
    the negative away.

    ``vectors`` (B, d) are L2-normalised, ``labels`` (B,) their classes; for each anchor a, p its
    hardest positive and n its hardest negative in the batch (as in ``batch_hard_triplet_loss``),
    with s = cosine:

        l(a) = s(a, n)                          if s(a, n) > s(a, p)
        l(a) = max(s(a, n) - s(a, p) + alpha, 0) otherwise
        L = mean_a l(a)

    Xuan, Stylianou, Liu & Pless, "Hard negative examples are hard, but useful" (ECCV 2020): the
    gradient of the plain triplet term on such a triplet pulls a and p toward n, which collapses
    every vector onto one; pushing n alone keeps the hardest negatives useful. Anchors without a
    positive or a negative in the batch are left out.
    """
    hardest_positive, hardest_negative, usable = hardest_pairs(vectors, labels)
    if not usable.any():
        return vectors.sum() * 0.0
    triplet = torch.relu(hardest_negative - hardest_positive + margin)
    return torch.where(hardest_negative > hardest_positive, hardest_negative, triplet)[usable].mean()
