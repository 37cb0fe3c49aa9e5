"""The classic siamese BiLSTM: token embedding, a bidirectional LSTM, pooling (max, attention, or
both), a projection, L2 normalisation. One network for every input.

Tokens: either words and punctuation with a vocabulary built from the training texts
(``tokenizer: words``), or the packaged MiniLM's WordPiece tokenizer (``tokenizer: wordpiece``),
whose token embedding table can start the LSTM's (``trainer.LSTMTrainable``).

Folder format (what ``--model PATH`` accepts): ``twin_lstm.json`` (config), ``vocab.json`` (words:
the tokens, index = id; 0 is padding, 1 unknown) or ``tokenizer.json`` (wordpiece), and
``model.pt`` (the state dict).
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
from tokenizers import Tokenizer
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


POOLINGS = ("max", "attention", "max+attention")


class SiameseLSTM(nn.Module):
    """Texts (as token ids) to unit vectors. ``pooling``: the max over time of the LSTM states,
    an attention-weighted mean of them (a learned score a state, softmax over the text; Lin et
    al., 2017, with one head), or both side by side. ``dropout``: the share of token embeddings'
    and pooled features' units zeroed while training (Srivastava et al., 2014); none at inference."""

    def __init__(self, vocab_size: int, embed_dim: int = 200, hidden: int = 256, out_dim: int = 256,
                 pooling: str = "max", dropout: float = 0.0) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}")
        self.pooling = pooling
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD)
        self.lstm = nn.LSTM(embed_dim, hidden, batch_first=True, bidirectional=True)
        if "attention" in pooling:
            self.attend = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.Tanh(), nn.Linear(hidden, 1))
        self.project = nn.Linear(2 * hidden * len(pooling.split("+")), out_dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """(batch, length) token ids -> (batch, out_dim) unit vectors."""
        mask = ids != PAD
        states, _ = self.lstm(self.drop(self.embed(ids)))
        pooled = []
        if "max" in self.pooling:
            top = states.masked_fill(~mask[:, :, None], float("-inf")).max(dim=1).values
            pooled.append(torch.where(torch.isfinite(top), top, torch.zeros_like(top)))
        if "attention" in self.pooling:
            weights = torch.softmax(self.attend(states).squeeze(-1).masked_fill(~mask, float("-inf")), dim=1)
            pooled.append((torch.nan_to_num(weights)[:, :, None] * states).sum(dim=1))
        return nn.functional.normalize(self.project(self.drop(torch.cat(pooled, dim=1))), dim=1)


class LSTMEncoder(Encoder):
    """A trained (or freshly initialised) siamese BiLSTM behind the encoder interface."""

    def __init__(self, vocab: list[str] | Tokenizer, config: dict, module: SiameseLSTM | None = None,
                 path: Path | None = None) -> None:
        self.config, self.path = dict(config), path
        self.name = path.name if path else "lstm"
        if isinstance(vocab, list):
            self.vocab, self.wordpiece = vocab, None
            self.index = {tok: i for i, tok in enumerate(vocab)}
            size, self.unknown = len(vocab), UNK
        else:
            self.vocab, self.wordpiece = [], vocab
            vocab.no_padding()
            vocab.no_truncation()
            size, self.unknown = vocab.get_vocab_size(), vocab.token_to_id("[UNK]")
        self.config["tokenizer"] = "words" if self.wordpiece is None else "wordpiece"
        self.module = module or SiameseLSTM(size, config["embed_dim"], config["hidden"], config["out_dim"],
                                            config.get("pooling", "max"), config.get("dropout", 0.0))
        self.max_len = int(config.get("max_seq_length", 64))
        self._lock = threading.Lock()

    @property
    def dimension(self) -> int:
        return int(self.config["out_dim"])

    def ids(self, texts: Sequence[str]) -> torch.Tensor:
        """Padded (batch, length) token ids; an empty text becomes one unknown token."""
        if self.wordpiece is None:
            tokens = [[self.index.get(t, UNK) for t in tokenize(text)] for text in texts]
        else:
            tokens = [e.ids for e in self.wordpiece.encode_batch(list(texts), add_special_tokens=False)]
        rows = [row[: self.max_len] or [self.unknown] for row in tokens]
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
        if self.wordpiece is None:
            (folder / "vocab.json").write_text(json.dumps(self.vocab, ensure_ascii=False))
        else:
            self.wordpiece.save(str(folder / "tokenizer.json"))
        torch.save(self.module.state_dict(), folder / "model.pt")

    @classmethod
    def load(cls, folder: Path) -> LSTMEncoder:
        """Load a saved folder."""
        try:
            config = json.loads((folder / CONFIG_FILE).read_text())
            if config.get("tokenizer") == "wordpiece":
                vocab = Tokenizer.from_file(str(folder / "tokenizer.json"))
            else:
                vocab = json.loads((folder / "vocab.json").read_text())
            encoder = cls(vocab, config, path=folder)
            encoder.module.load_state_dict(torch.load(folder / "model.pt", map_location="cpu", weights_only=True))
        except Exception as exc:  # noqa: BLE001 - OSError, JSON, state dict, or the tokenizers library's own
            raise ModelError(f"{folder}: damaged LSTM model folder ({exc})") from None
        return encoder
