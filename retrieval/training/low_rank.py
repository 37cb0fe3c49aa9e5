"""Low-rank adaptation: the base network's weights stay as they are, and each of its linear layers
learns a low-rank update beside them, merged in when the model is saved.

LoRA (Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022): a frozen weight
W (out x in) gets a trainable update B A, with A (r x in) random and B (out x r) zero at the start,

    y = W x + (alpha / r) B A x

so training starts from the base network exactly and can only move it within rank r a layer: the
base's knowledge is kept by construction rather than by a penalty. The saved model is the plain
network with W + (alpha / r) B A in place of W, served like any other."""

from __future__ import annotations

import math

import torch
from torch import nn


class LowRankLinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable rank-``rank`` update scaled by ``alpha / rank``."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float) -> None:
        super().__init__()
        if rank < 1:
            raise ValueError(f"rank {rank}: must be at least 1")
        self.base, self.scale = base, alpha / rank
        base.requires_grad_(False)
        self.down = nn.Parameter(torch.empty(rank, base.in_features))
        self.up = nn.Parameter(torch.zeros(base.out_features, rank))
        nn.init.kaiming_uniform_(self.down, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``W x + b + scale * B A x``."""
        return self.base(x) + (x @ self.down.t().to(x.dtype) @ self.up.t().to(x.dtype)) * self.scale

    @torch.no_grad()
    def merged(self) -> nn.Linear:
        """A plain ``nn.Linear`` computing the same function (``W + scale * B A``), trainable again."""
        linear = nn.Linear(self.base.in_features, self.base.out_features, self.base.bias is not None)
        linear.weight.copy_(self.base.weight + self.scale * (self.up @ self.down))
        if self.base.bias is not None:
            linear.bias.copy_(self.base.bias)
        return linear.to(self.base.weight.device, self.base.weight.dtype)


def attach(network: nn.Module, rank: int, alpha: float) -> int:
    """Freeze every parameter of ``network`` and put a ``LowRankLinear`` around each of its linear
    layers; returns how many. Only the low-rank factors train afterwards."""
    network.requires_grad_(False)
    targets = [(name, module) for name, module in network.named_modules() if isinstance(module, nn.Linear)]
    for name, module in targets:
        _replace(network, name, LowRankLinear(module, rank, alpha))
    return len(targets)


def merge(network: nn.Module) -> None:
    """Replace each ``LowRankLinear`` in ``network`` by its merged ``nn.Linear``, in place."""
    for name, module in [(n, m) for n, m in network.named_modules() if isinstance(m, LowRankLinear)]:
        _replace(network, name, module.merged())


def _replace(network: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(network.get_submodule(parent) if parent else network, child, module)
