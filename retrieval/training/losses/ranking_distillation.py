"""Distillation of a teacher's ranking of each anchor's candidates (listwise, by KL divergence)."""

from __future__ import annotations

import torch
from torch import Tensor


def ranking_distillation_loss(student_anchors: Tensor, student_candidates: Tensor, teacher_anchors: Tensor,
                              teacher_candidates: Tensor, scale: float = 20.0) -> Tensor:
    """KL divergence from the teacher's to the student's distribution over each anchor's candidates.

    Student vectors (B, d) and (C, d), teacher vectors (B, e) and (C, e) of the same texts, all
    L2-normalised; d and e may differ. With s and t the two models' cosines and lambda = ``scale``:

        p_i(c) = softmax_c(lambda t(A_i, C_c)),  q_i(c) = softmax_c(lambda s(A_i, C_c))
        L = mean_i KL(p_i || q_i) = mean_i sum_c p_i(c) (log p_i(c) - log q_i(c))

    Listwise knowledge distillation for dense retrieval (the KL form of Hofstaetter et al.,
    "Efficiently Teaching an Effective Dense Retriever with Balanced Topic Aware Sampling", SIGIR
    2021; Lin, Yang & Lin, "In-Batch Negatives for Knowledge Distillation with Tightly-Coupled
    Teachers", RepL4NLP 2021). Unlike ``similarity_distillation_loss``, which asks every cosine to
    equal the teacher's, this asks only that each anchor rank its candidates as the teacher does:
    a shift of one anchor's cosines, all by the same amount, costs nothing, so a threshold learned
    from labels and a ranking kept from the teacher need not fight. At lambda = 20 (the scale the
    packaged model was trained at) the mass sits on each anchor's few nearest candidates.
    """
    if student_anchors.shape[0] == 0 or student_candidates.shape[0] < 2:
        return student_anchors.sum() * 0.0
    log_q = torch.log_softmax(scale * student_anchors @ student_candidates.T, dim=1)
    log_p = torch.log_softmax(scale * teacher_anchors @ teacher_candidates.T, dim=1)
    return torch.nn.functional.kl_div(log_q, log_p, log_target=True, reduction="batchmean")
