"""CoSENT: a ranking loss over the cosines of labelled pairs, in the order their scores give."""

from __future__ import annotations

import torch
from torch import Tensor


def cosent_loss(cosines: Tensor, targets: Tensor, scale: float = 20.0) -> Tensor:
    """Every pair the targets rank higher must have the higher cosine, smoothly.

    ``cosines`` (n,) are the student's cosines of n text pairs, ``targets`` (n,) their scores (a gold
    label 0/1, or a teacher's P(duplicate) for a silver pair); with lambda = ``scale``:

        L = log(1 + sum_{(i, j): t_i > t_j} exp(lambda (s_j - s_i)))

    Su Jianlin, "CoSENT: a more efficient sentence vector scheme than Sentence-BERT" (2022), as used by
    AnglE (Li & Li, "AnglE-optimized Text Embeddings", 2023) and sentence-transformers' CoSENTLoss.
    Only the order of the targets counts, never their scale: a teacher's probabilities can rank the
    student's cosines without asking a cosine to equal a probability (margin-MSE's mismatch of
    scales). Across the batch, it is what one global tau needs: duplicates above non-duplicates.
    Pairs of equal targets add nothing; with no ordered pair, the loss is 0 (log 1).
    """
    differences = scale * (cosines[None, :] - cosines[:, None])  # [i, j] = lambda (s_j - s_i)
    ordered = targets[:, None] > targets[None, :]
    terms = differences.masked_fill(~ordered, float("-inf")).flatten()
    return torch.logsumexp(torch.cat([terms.new_zeros(1), terms]), dim=0)
