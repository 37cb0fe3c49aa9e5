"""Training losses: one a file, the formula and its source in the docstring."""

from .triplet import batch_triplet_loss

__all__ = ["batch_triplet_loss"]
