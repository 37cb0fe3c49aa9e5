"""Forward passes over inputs of like length.

A batch padded to its longest text spends most of its work on padding: 128 QQP questions average 16
word pieces and pad to about 48. Every text's vector (and a cross-encoder's logit for each pair)
depends on that input alone, so a batch may run as chunks of texts of like length, each padded to
its own longest, and the rows be put back in order: the same result for about half the work
(``BENCHMARKS.md``, round 12).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

#: inputs a chunk: measured on 128 QQP questions (16 was no faster, one chunk twice as slow)
CHUNK = 32


def by_length(lengths: Sequence[int], size: int = CHUNK) -> list[list[int]]:
    """Indices into ``lengths`` in chunks of at most ``size``, each of inputs of like length, shortest
    first (ties in input order, so the chunks are the same on every run)."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    return [order[start:start + size] for start in range(0, len(order), size)]


def forward_by_length(forward: Callable[[list[int]], torch.Tensor], lengths: Sequence[int],
                      size: int = CHUNK) -> torch.Tensor:
    """``forward`` (a chunk of indices -> one row per index) on chunks of like length, the rows
    returned in input order; gradients flow through as through one forward pass."""
    chunks = by_length(lengths, size)
    if len(chunks) == 1:
        return forward(list(range(len(lengths))))
    rows = torch.cat([forward(chunk) for chunk in chunks])
    return rows[torch.argsort(torch.tensor([i for chunk in chunks for i in chunk]))]
