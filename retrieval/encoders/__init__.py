"""Encoders: one interface (``Encoder.encode(items) -> (n, d) float32, unit rows``), one class a kind."""

from __future__ import annotations

from pathlib import Path

from ..errors import ModelError
from .base import CALIBRATION_FILE, Encoder
from .transformer import TransformerEncoder, is_sentence_transformers_folder, packaged_model_path

__all__ = ["CALIBRATION_FILE", "Encoder", "TransformerEncoder", "load_encoder", "packaged_model_path"]


#: The file that marks a twin LSTM folder (``lstm.CONFIG_FILE``; named here so that nothing
#: imports torch before an encoder is loaded).
LSTM_CONFIG_FILE = "twin_lstm.json"


def __getattr__(name: str) -> object:
    """``LSTMEncoder`` on first use: it imports torch, which grouping and index work never need."""
    if name == "LSTMEncoder":
        from .lstm import LSTMEncoder

        return LSTMEncoder
    raise AttributeError(name)


def load_encoder(path: str | Path | None = None) -> Encoder:
    """The encoder stored in ``path`` (default: the packaged all-MiniLM-L6-v2)."""
    if path is None:
        return TransformerEncoder()
    folder = Path(path)
    if not folder.exists():
        raise ModelError(f"{folder}: no such model folder")
    if folder.is_dir() and (folder / LSTM_CONFIG_FILE).is_file():
        from .lstm import LSTMEncoder

        return LSTMEncoder.load(folder)
    if folder.is_dir() and is_sentence_transformers_folder(folder):
        return TransformerEncoder(folder)
    raise ModelError(f"{folder}: neither a sentence-transformers model folder (modules.json) "
                     "nor a twin LSTM folder (twin_lstm.json)")
