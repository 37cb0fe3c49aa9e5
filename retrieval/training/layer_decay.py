"""Layer-wise learning-rate decay: the lower a transformer layer, the smaller its steps."""

from __future__ import annotations

import re
from collections.abc import Iterable

import torch

_LAYER = re.compile(r"\.layer\.(\d+)\.")


def layer_groups(named: Iterable[tuple[str, torch.nn.Parameter]], lr: float, decay: float) -> list[dict]:
    """Optimizer parameter groups of a BERT-style encoder (``embeddings``, ``encoder.layer.{i}``),
    each layer's learning rate decayed from the top: with L layers, depth 0 the embeddings,
    depth i + 1 layer i, and depth L + 1 everything above them (pooler, dense heads),

        lr(depth) = lr * decay ** (L + 1 - depth)

    so the top keeps ``lr`` and the token embeddings get ``lr * decay ** (L + 1)``. Discriminative
    fine-tuning (Howard & Ruder, "Universal Language Model Fine-tuning for Text Classification",
    ACL 2018); the per-layer decay of Clark et al., "ELECTRA" (ICLR 2020) and Sun et al., "How to
    Fine-Tune BERT for Text Classification?" (2019): lower layers hold the general features, which
    a small task set should move least. ``decay`` 1 gives one group at ``lr``."""
    named = list(named)
    if decay == 1:
        return [{"params": [p for _, p in named], "lr": lr}]
    depths = [int(m.group(1)) + 1 if (m := _LAYER.search(n)) else (0 if ".embeddings." in f".{n}" else None)
              for n, _ in named]
    top = max((d for d in depths if d is not None), default=0) + 1
    groups: dict[int, list[torch.nn.Parameter]] = {}
    for (_, parameter), depth in zip(named, depths):
        groups.setdefault(top if depth is None else depth, []).append(parameter)
    return [{"params": params, "lr": lr * decay ** (top - depth)} for depth, params in sorted(groups.items())]
