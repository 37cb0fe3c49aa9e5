"""Batch-all triplet loss on cosine, averaged over the triplets that still violate the margin."""

from __future__ import annotations

import torch
from torch import Tensor


def batch_all_triplet_loss(vectors: Tensor, labels: Tensor, margin: float = 0.3) -> Tensor:
    """Every (anchor, positive, negative) triplet of the batch, averaged over the active ones.

    ``vectors`` (B, d) are L2-normalised, ``labels`` (B,) their classes; with s = cosine and
    T = {(a, p, n): y_p = y_a, p != a, y_n != y_a}:

        l(a, p, n) = max(s(a, n) - s(a, p) + alpha, 0)
        L = sum_T l / |{t in T: l(t) > 0}|

    "Batch all" with the non-zero average (BA≠0) of Hermans, Beyer & Leibe, "In Defense of the
    Triplet Loss for Person Re-Identification" (2017). Trained from scratch on cosine, the
    batch-hard loss collapses every vector onto one (its loss then sits at alpha); batch-all
    sees every triplet and does not, so it starts the training (``training/images.py``).
    """
    scores = vectors @ vectors.T
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=vectors.device)
    valid = (same & ~eye)[:, :, None] & (~same)[:, None, :]
    losses = torch.relu(scores[:, None, :] - scores[:, :, None] + margin)[valid]
    return losses.sum() / (losses > 1e-12).sum().clamp(min=1)
