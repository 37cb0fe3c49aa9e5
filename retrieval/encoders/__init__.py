"""Encoders: one interface (``Encoder.encode(items) -> (n, d) float32, unit rows``), one class a kind."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..errors import ModelError
from .base import CALIBRATION_FILE, Encoder
from .transformer import TransformerEncoder, is_sentence_transformers_folder, packaged_model_path

__all__ = ["BACKENDS", "CALIBRATION_FILE", "Encoder", "TransformerEncoder", "load_encoder", "packaged_model_path"]

#: What runs a sentence-transformers model: int8 ONNX Runtime (the default: a single search in
#: 2.7 ms against torch's 8.4, batches 2.2x faster than torch bf16 here, QQP accuracy 0.2 points
#: lower; BENCHMARKS.md, "Query speed") or torch (bf16 where the CPU has it, else fp32). LSTM
#: and CNN folders always run in torch.
BACKENDS = ("onnx", "torch")
DEFAULT_BACKEND = "onnx"


#: The file that marks a twin LSTM folder (``lstm.CONFIG_FILE``; named here so that nothing
#: imports torch before an encoder is loaded).
LSTM_CONFIG_FILE = "twin_lstm.json"
#: The file that marks a twin CNN (image) folder (``cnn.CONFIG_FILE``).
CNN_CONFIG_FILE = "twin_cnn.json"


def modality_of(path: str | Path | None) -> str:
    """What a model folder encodes, without loading it: ``image`` (a twin CNN) or ``text``."""
    return "image" if path is not None and (Path(path) / CNN_CONFIG_FILE).is_file() else "text"


def __getattr__(name: str) -> object:
    """``LSTMEncoder`` on first use: it imports torch, which grouping and index work never need."""
    if name == "LSTMEncoder":
        from .lstm import LSTMEncoder

        return LSTMEncoder
    raise AttributeError(name)


def choose_backend(backend: str | None = None, built: dict | None = None) -> str:
    """``backend`` if given, else ``TWIN_BACKEND``, else the one an index was built with (its
    manifest's ``encoder``: torch before backends were recorded), else DEFAULT_BACKEND."""
    recorded = (built.get("backend") or "torch") if built else None
    chosen = (backend or os.environ.get("TWIN_BACKEND") or recorded or DEFAULT_BACKEND).lower()
    if chosen not in BACKENDS:
        raise ModelError(f"backend {chosen!r}: choose {' or '.join(BACKENDS)} (--backend or TWIN_BACKEND)")
    return chosen


def load_encoder(path: str | Path | None = None, backend: str | None = None, built: dict | None = None) -> Encoder:
    """The encoder stored in ``path`` (default: the packaged all-MiniLM-L6-v2), run by ``backend``
    (see ``choose_backend``; ``built``: the encoder an index records). A model the ONNX exporter
    cannot take runs in torch, with one warning."""
    chosen = choose_backend(backend, built)
    if path is None:
        return _transformer(None, chosen)
    folder = Path(path)
    if not folder.exists():
        raise ModelError(f"{folder}: no such model folder")
    if folder.is_dir() and (folder / LSTM_CONFIG_FILE).is_file():
        from .lstm import LSTMEncoder

        return LSTMEncoder.load(folder)
    if folder.is_dir() and (folder / CNN_CONFIG_FILE).is_file():
        from .cnn import CNNEncoder

        return CNNEncoder.load(folder)
    if folder.is_dir() and is_sentence_transformers_folder(folder):
        return _transformer(folder, chosen)
    raise ModelError(f"{folder}: neither a sentence-transformers model folder (modules.json), "
                     "a twin LSTM folder (twin_lstm.json) nor a twin CNN folder (twin_cnn.json)")


def _transformer(folder: Path | None, backend: str) -> Encoder:
    torch_encoder = TransformerEncoder(folder)  # checks the folder; loads nothing yet
    if backend == "torch":
        return torch_encoder
    from .onnxrt import ExportError, OnnxEncoder

    try:
        return OnnxEncoder(torch_encoder.path, torch_encoder.name, torch_encoder.packaged)
    except ExportError as exc:
        print(f"warning: {torch_encoder.path}: {exc}; running it in torch instead", file=sys.stderr)
        return torch_encoder
