"""Encoders: one interface (``Encoder.encode(items) -> (n, d) float32, unit rows``), one class a kind."""

from __future__ import annotations

from pathlib import Path

from ..errors import ModelError
from .base import CALIBRATION_FILE, Encoder
from .lstm import LSTMEncoder, is_lstm_folder
from .transformer import TransformerEncoder, is_sentence_transformers_folder, packaged_model_path

__all__ = ["CALIBRATION_FILE", "Encoder", "LSTMEncoder", "TransformerEncoder", "load_encoder", "packaged_model_path"]


def load_encoder(path: str | Path | None = None) -> Encoder:
    """The encoder stored in ``path`` (default: the packaged all-MiniLM-L6-v2)."""
    if path is None:
        return TransformerEncoder()
    folder = Path(path)
    if not folder.exists():
        raise ModelError(f"{folder}: no such model folder")
    if folder.is_dir() and is_lstm_folder(folder):
        return LSTMEncoder.load(folder)
    if folder.is_dir() and is_sentence_transformers_folder(folder):
        return TransformerEncoder(folder)
    raise ModelError(f"{folder}: neither a sentence-transformers model folder (modules.json) "
                     "nor a twin LSTM folder (twin_lstm.json)")
