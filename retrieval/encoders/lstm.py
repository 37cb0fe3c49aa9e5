"""The classic siamese BiLSTM: token embedding, a bidirectional LSTM, max pooling, a projection,
L2 normalisation. One network for every input. Its vocabulary is built from the training texts.

Folder format (what ``--model PATH`` accepts): ``twin_lstm.json`` (config), ``vocab.json`` (the
tokens, index = id; 0 is padding, 1 unknown) and ``model.pt`` (the state dict).
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import ModelError
from . import LSTM_CONFIG_FILE as CONFIG_FILE
from .base import Encoder

_TOKEN = re.compile(r"\w+|[^\w\s]")
PAD, UNK = 0, 1


def tokenize(text: str) -> list[str]:
    """Lower-cased words and punctuation marks."""
    return _TOKEN.findall(text.lower())


def build_vocab(texts: Iterable[str], max_size: int = 50_000, min_count: int = 1) -> list[str]:
    """The most frequent tokens (ties by first appearance), after the padding and unknown tokens."""
    counts = Counter(tok for text in texts for tok in tokenize(text))
    kept = [tok for tok, n in counts.most_common(max_size) if n >= min_count]
    return ["<pad>", "<unk>", *kept]


class SiameseLSTM(nn.Module):
    """Texts (as token ids) to unit vectors."""

    def __init__(self, vocab_size: int, embed_dim: int = 200, hidden: int = 256, out_dim: int = 256) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD)
        self.lstm = nn.LSTM(embed_dim, hidden, batch_first=True, bidirectional=True)
        self.project = nn.Linear(2 * hidden, out_dim)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """(batch, length) token ids -> (batch, out_dim) unit vectors."""
        mask = ids != PAD
        states, _ = self.lstm(self.embed(ids))
        pooled = states.masked_fill(~mask[:, :, None], float("-inf")).max(dim=1).values
        pooled = torch.where(torch.isfinite(pooled), pooled, torch.zeros_like(pooled))
        return nn.functional.normalize(self.project(pooled), dim=1)


class LSTMEncoder(Encoder):
    """A trained (or freshly initialised) siamese BiLSTM behind the encoder interface."""

    def __init__(self, vocab: list[str], config: dict, module: SiameseLSTM | None = None,
                 path: Path | None = None) -> None:
        self.vocab, self.config, self.path = vocab, dict(config), path
        self.name = path.name if path else "lstm"
        self.index = {tok: i for i, tok in enumerate(vocab)}
        self.module = module or SiameseLSTM(len(vocab), config["embed_dim"], config["hidden"], config["out_dim"])
        self.max_len = int(config.get("max_seq_length", 64))
        self._lock = threading.Lock()

    @property
    def dimension(self) -> int:
        return int(self.config["out_dim"])

    def ids(self, texts: Sequence[str]) -> torch.Tensor:
        """Padded (batch, length) token ids; an empty text becomes one unknown token."""
        rows = [[self.index.get(t, UNK) for t in tokenize(text)][: self.max_len] or [UNK] for text in texts]
        out = torch.zeros((len(rows), max(len(r) for r in rows)), dtype=torch.long)
        for i, row in enumerate(rows):
            out[i, : len(row)] = torch.tensor(row)
        return out

    def encode(self, items: Sequence[str], batch_size: int = 256) -> np.ndarray:
        if not len(items):
            return np.empty((0, self.dimension), dtype=np.float32)
        order = np.argsort([len(t) for t in items])  # similar lengths together: less padding
        out = np.empty((len(items), self.dimension), dtype=np.float32)
        with self._lock, torch.inference_mode():
            self.module.eval()
            for start in range(0, len(items), batch_size):
                rows = order[start : start + batch_size]
                out[rows] = self.module(self.ids([items[i] for i in rows])).numpy()
        return out

    def save(self, folder: Path) -> None:
        """Write the folder format described in the module docstring."""
        folder.mkdir(parents=True, exist_ok=True)
        (folder / CONFIG_FILE).write_text(json.dumps({"kind": "twin-lstm", **self.config}, indent=2))
        (folder / "vocab.json").write_text(json.dumps(self.vocab, ensure_ascii=False))
        torch.save(self.module.state_dict(), folder / "model.pt")

    @classmethod
    def load(cls, folder: Path) -> LSTMEncoder:
        """Load a saved folder."""
        try:
            config = json.loads((folder / CONFIG_FILE).read_text())
            vocab = json.loads((folder / "vocab.json").read_text())
            encoder = cls(vocab, config, path=folder)
            encoder.module.load_state_dict(torch.load(folder / "model.pt", map_location="cpu", weights_only=True))
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise ModelError(f"{folder}: damaged LSTM model folder ({exc})") from None
        return encoder
