"""Training losses: one a file, the formula and its source in the docstring."""

from .batch_all import batch_all_triplet_loss
from .batch_hard import batch_hard_triplet_loss
from .cosent import cosent_loss
from .in_batch_ranking import in_batch_ranking_loss
from .margin_mse import margin_mse_loss
from .ranking_distillation import ranking_distillation_loss
from .selective_contrastive import selective_contrastive_loss
from .similarity_distillation import similarity_distillation_loss
from .triplet import batch_triplet_loss

__all__ = ["batch_all_triplet_loss", "batch_hard_triplet_loss", "batch_triplet_loss", "cosent_loss",
           "in_batch_ranking_loss", "margin_mse_loss", "ranking_distillation_loss", "selective_contrastive_loss",
           "similarity_distillation_loss"]
