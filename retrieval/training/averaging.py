"""An exponential moving average of a network's weights, evaluated and saved in place of the last
step's weights (Polyak & Juditsky 1992; for LSTMs, the averaged iterates of Merity et al. 2018,
"Regularizing and Optimizing LSTM Language Models").

After step t: ``shadow = d_t * shadow + (1 - d_t) * weights`` with ``d_t = min(decay, (1 + t) / (10 + t))``,
so the first steps are not pulled towards the initial weights (TensorFlow's ExponentialMovingAverage
with ``num_updates``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


class WeightAverage:
    """The moving average of ``module``'s trainable parameters, updated by ``update`` after each
    optimiser step; ``applied()`` swaps it into the module for a while (an evaluation, a save)."""

    def __init__(self, module: torch.nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay {decay}: must lie strictly between 0 and 1")
        self.decay, self.updates = decay, 0
        self.params = [p for p in module.parameters() if p.requires_grad]
        self.shadow = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def update(self) -> None:
        """Fold the module's current weights into the average."""
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for shadow, param in zip(self.shadow, self.params, strict=True):
            shadow.lerp_(param.detach(), 1.0 - decay)

    @contextmanager
    def applied(self) -> Iterator[None]:
        """The averaged weights in the module inside the block; the training weights again after it."""
        backup = [p.detach().clone() for p in self.params]
        self.copy_to()
        try:
            yield
        finally:
            with torch.no_grad():
                for param, saved in zip(self.params, backup, strict=True):
                    param.copy_(saved)

    @torch.no_grad()
    def copy_to(self) -> None:
        """Put the averaged weights into the module for good."""
        for param, shadow in zip(self.params, self.shadow, strict=True):
            param.copy_(shadow)
