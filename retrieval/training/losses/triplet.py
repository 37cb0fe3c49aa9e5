"""Batch triplet loss on cosine similarity, with the hardest and the mean negative."""

from __future__ import annotations

import torch
from torch import Tensor


def batch_triplet_loss(
    anchors: Tensor, candidates: Tensor, anchor_groups: Tensor, candidate_groups: Tensor, margin: float = 0.3,
    near_miss_scores: Tensor | None = None, near_miss_margin: float = 0.1,
) -> Tensor:
    """Triplet loss over an aligned batch.

    ``anchors`` (B, d) and ``candidates`` (C, d) are L2-normalised; candidate i < B is the positive
    of anchor i, every candidate of another group is a negative (same group: masked, so duplicates
    through a third question are never pushed apart). With s = cosine similarity:

        L = mean_i max(max_n s(A_i, N) - s(A_i, P_i) + alpha, 0)
          + mean_i max(mean_n s(A_i, N) - s(A_i, P_i) + alpha, 0)

    The first term is the triplet loss of Schroff, Kalenichenko & Philbin, "FaceNet" (CVPR 2015),
    ``max(d(A,P) - d(A,N) + alpha, 0)``, written with similarities and the hardest negative in the
    batch ("batch hard": Hermans, Beyer & Leibe, "In Defense of the Triplet Loss for Person
    Re-Identification", 2017); the second uses the mean negative, which keeps every negative in the
    gradient. Anchors without any negative are left out.

    With ``near_miss_scores`` (the cosines of labelled non-duplicate pairs (C_j, N_j) in the batch),
    a third term asks every duplicate pair to score above the hardest near-miss pair:

          + mean_i max(max_j s(C_j, N_j) - s(A_i, P_i) + beta, 0)

    the extra term of the quadruplet loss (Chen, Chen, Zhang & Huang, "Beyond triplet loss: a deep
    quadruplet network for person re-identification", CVPR 2017). The triplet terms compare
    negatives of the same anchor; this one compares across anchors, which is what a single global
    tau needs.
    """
    scores = anchors @ candidates.T
    batch = anchors.shape[0]
    positive = scores[torch.arange(batch), torch.arange(batch)]
    negative = anchor_groups[:, None] != candidate_groups[None, :]
    has_negative = negative.any(dim=1)
    if not has_negative.any():
        return scores.sum() * 0.0
    hardest = scores.masked_fill(~negative, float("-inf")).max(dim=1).values
    mean = (scores * negative).sum(dim=1) / negative.sum(dim=1).clamp(min=1)
    hard_term = torch.relu(hardest - positive + margin)[has_negative].mean()
    mean_term = torch.relu(mean - positive + margin)[has_negative].mean()
    loss = hard_term + mean_term
    if near_miss_scores is not None and len(near_miss_scores):
        loss = loss + torch.relu(near_miss_scores.max() - positive + near_miss_margin).mean()
    return loss
