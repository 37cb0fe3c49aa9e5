"""In-batch ranking (InfoNCE, MultipleNegativesRankingLoss): each anchor's positive against every negative."""

from __future__ import annotations

import torch
from torch import Tensor


def in_batch_ranking_loss(anchors: Tensor, candidates: Tensor, anchor_groups: Tensor, candidate_groups: Tensor,
                          scale: float = 20.0) -> Tensor:
    """Cross-entropy of picking each anchor's own positive among the batch's candidates.

    ``anchors`` (B, d) and ``candidates`` (C, d) are L2-normalised, candidate i < B the positive of
    anchor i; candidates of anchor i's group other than its positive are masked (a duplicate through
    a third text is not a negative: the batches' false-negative guard). With s = cosine similarity and
    lambda = ``scale``:

        L = -mean_i log( exp(lambda s(A_i, P_i)) / sum_{c = i or group(c) != group(A_i)} exp(lambda s(A_i, C_c)) )

    InfoNCE (van den Oord, Li & Vinyals, "Representation Learning with Contrastive Predictive
    Coding", 2018) with in-batch negatives (Henderson et al., "Efficient Natural Language Response
    Suggestion for Smart Reply", 2017); sentence-transformers' MultipleNegativesRankingLoss, scale 20,
    the loss all-MiniLM-L6-v2 was trained with. Where the triplet loss stops once the hardest
    negative is ``alpha`` behind, this one keeps ranking the positive first against all of them: it
    is a retrieval objective (recall@1), not a threshold one.
    """
    scores = scale * (anchors @ candidates.T)
    rows = torch.arange(anchors.shape[0])
    same_group = anchor_groups[:, None] == candidate_groups[None, :]
    same_group[rows, rows] = False
    logits = scores.masked_fill(same_group, float("-inf"))
    return torch.nn.functional.cross_entropy(logits, rows)
