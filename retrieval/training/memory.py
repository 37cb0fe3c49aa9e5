"""A cross-batch memory of candidates' vectors: more negatives for the ranking term than a batch holds."""

from __future__ import annotations

import torch
from torch import Tensor


class CandidateMemory:
    """The ``size`` most recent candidates' unit vectors (no gradient) and their duplicate groups.

    The in-batch ranking term ranks each anchor's positive against the batch's other candidates
    (about 2 x 32 here; all-MiniLM-L6-v2 was trained with 1,023 a batch). Kept vectors of the last
    batches join them as negatives at the cost of a matrix product: a cross-batch memory (XBM: Wang,
    Zhang, Huang & Scott, "Cross-Batch Memory for Embedding Learning", CVPR 2020), which shows the
    vectors of a slowly trained network drift little over a few batches. Their groups travel with
    them, so the ranking term's false-negative mask also covers remembered duplicates; so do a
    teacher's vectors of them, where the ranking distillation term is on.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.vectors: Tensor | None = None
        self.groups: Tensor | None = None
        self.teacher: Tensor | None = None

    def __len__(self) -> int:
        return 0 if self.vectors is None else self.vectors.shape[0]

    def extended(self, candidates: Tensor, groups: Tensor) -> tuple[Tensor, Tensor]:
        """``candidates`` (with their gradients) followed by the remembered vectors, and the groups of both."""
        if self.vectors is None:
            return candidates, groups
        return torch.cat([candidates, self.vectors]), torch.cat([groups, self.groups])

    def teacher_extended(self, teacher: Tensor) -> Tensor:
        """A teacher's vectors of the candidates followed by its remembered ones, row for row as ``extended``."""
        return teacher if self.teacher is None else torch.cat([teacher, self.teacher])

    def remember(self, candidates: Tensor, groups: Tensor, teacher: Tensor | None = None) -> None:
        """Keep ``candidates`` (detached), and a teacher's vectors of them where given, as the newest
        rows, forgetting the oldest beyond ``size``."""
        vectors, groups = candidates.detach(), groups.detach()
        if self.vectors is not None:
            vectors, groups = torch.cat([vectors, self.vectors]), torch.cat([groups, self.groups])
        self.vectors, self.groups = vectors[: self.size], groups[: self.size]
        if teacher is not None:
            kept = teacher.detach() if self.teacher is None else torch.cat([teacher.detach(), self.teacher])
            self.teacher = kept[: self.size]
