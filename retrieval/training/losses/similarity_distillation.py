"""Distillation of a teacher's cosine similarities among the texts of a batch."""

from __future__ import annotations

import torch
from torch import Tensor


def similarity_distillation_loss(student: Tensor, teacher: Tensor) -> Tensor:
    """Mean squared difference between the student's and the teacher's cosine matrices.

    ``student`` (B, d) and ``teacher`` (B, e) are L2-normalised vectors of the same B texts; d and
    e may differ (a 256-d BiLSTM can learn from a 384-d transformer). With S = V V^T:

        L = mean_{i != j} (S_student[i, j] - S_teacher[i, j])^2

    Relational knowledge distillation (Park, Kim, Lu & Cho, "Relational Knowledge Distillation",
    CVPR 2019) with cosines as the relation: the student copies how the teacher ranks every pair
    of the batch, not its coordinates; with the squared error of Tang et al., "Distilling
    Task-Specific Knowledge from BERT into Simple Neural Networks" (2019), who distil a BiLSTM
    from BERT. The diagonal (always 1) is left out.
    """
    n = student.shape[0]
    if n < 2:
        return student.sum() * 0.0
    off = ~torch.eye(n, dtype=torch.bool, device=student.device)
    difference = (student @ student.T - teacher @ teacher.T)[off]
    return (difference**2).mean()
