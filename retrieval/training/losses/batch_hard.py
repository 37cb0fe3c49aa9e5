"""Batch-hard triplet loss on cosine over P classes x K images a batch."""

from __future__ import annotations

import torch
from torch import Tensor


def batch_hard_triplet_loss(vectors: Tensor, labels: Tensor, margin: float = 0.3) -> Tensor:
    """Triplet loss with the hardest positive and the hardest negative of each anchor in the batch.

    ``vectors`` (B, d) are L2-normalised, ``labels`` (B,) their classes; with s = cosine:

        L = mean_a max(max_{n: y_n != y_a} s(a, n) - min_{p != a: y_p = y_a} s(a, p) + alpha, 0)

    "Batch hard" of Hermans, Beyer & Leibe, "In Defense of the Triplet Loss for Person
    Re-Identification" (2017), on batches of P classes x K images, with the similarity form of
    the FaceNet triplet loss (Schroff, Kalenichenko & Philbin, CVPR 2015). Anchors without a
    positive or a negative in the batch are left out.
    """
    hardest_positive, hardest_negative, usable = hardest_pairs(vectors, labels)
    if not usable.any():
        return vectors.sum() * 0.0
    return torch.relu(hardest_negative - hardest_positive + margin)[usable].mean()


def hardest_pairs(vectors: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Each anchor's lowest cosine to an image of its class and highest to an image of another
    class in the batch, and whether it has both."""
    scores = vectors @ vectors.T
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=vectors.device)
    positive = same & ~eye
    negative = ~same
    hardest_positive = scores.masked_fill(~positive, float("inf")).min(dim=1).values
    hardest_negative = scores.masked_fill(~negative, float("-inf")).max(dim=1).values
    return hardest_positive, hardest_negative, positive.any(dim=1) & negative.any(dim=1)
