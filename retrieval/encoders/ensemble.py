"""Several encoders as one whose inner product is the mean of their cosines."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .base import Encoder


class MeanCosineEncoder(Encoder):
    """k encoders of the same items as one: each item's vector is the concatenation
    [v_1, ..., v_k] / sqrt(k) of their unit vectors, itself of unit length, so the inner product
    of two items' vectors is (1/k) sum_j cos_j, the mean of the k models' cosines (an output-space
    ensemble, at the cost of every encoder). A teacher for distillation, not a model to serve."""

    def __init__(self, encoders: Sequence[Encoder]) -> None:
        if not encoders:
            raise ValueError("an ensemble needs at least one encoder")
        self.encoders = list(encoders)
        self.name = " + ".join(e.name for e in self.encoders)
        self.backend = self.encoders[0].backend
        self.modality = self.encoders[0].modality

    @property
    def dimension(self) -> int:
        """The sum of the encoders' dimensions."""
        return sum(e.dimension for e in self.encoders)

    def encode(self, items: Sequence, batch_size: int = 64) -> np.ndarray:
        """float32 (len(items), dimension): the encoders' unit vectors side by side, scaled by 1/sqrt(k)."""
        parts = [e.encode(items, batch_size) for e in self.encoders]
        return (np.hstack(parts) / np.sqrt(len(parts))).astype(np.float32)
