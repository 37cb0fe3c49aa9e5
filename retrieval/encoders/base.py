"""The encoder interface: items in, L2-normalised float32 vectors out."""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import numpy as np

#: Where a model folder keeps its calibrated threshold and the metrics it was chosen with.
CALIBRATION_FILE = "twin_calibration.json"
#: tau of the packaged all-MiniLM-L6-v2 (whose folder, in site-packages, has no calibration file):
#: its best-accuracy threshold on the 10,000 QQP dev pairs of the BiMPM split, measured for each
#: backend (`python scripts/calibrate_default.py`): torch fp32 accuracy 0.7907, int8 ONNX 0.7887.
PACKAGED_TAUS = {"torch": 0.7512, "onnx": 0.7451}


class Encoder(ABC):
    """Maps items (texts or images) to unit vectors; the same weights for every input."""

    name: str = ""
    path: Path | None = None
    #: What runs the network: ``torch`` or ``onnx`` (int8 ONNX Runtime, ``onnxrt.py``).
    backend: str = "torch"
    #: What its items are: ``text`` (strings) or ``image`` (decoded images, ``images.decode_image``).
    modality: str = "text"

    @property
    @abstractmethod
    def dimension(self) -> int:
        """Length of each vector."""

    @abstractmethod
    def encode(self, items: Sequence, batch_size: int = 64) -> np.ndarray:
        """float32 array (len(items), dimension), each row of unit length."""

    @property
    def tau(self) -> float | None:
        """The calibrated duplicate threshold saved with the model (the packaged model's is built
        in, one a backend), or None."""
        if self.path is None or not (self.path / CALIBRATION_FILE).is_file():
            return PACKAGED_TAUS[self.backend] if self.packaged else None
        return float(json.loads((self.path / CALIBRATION_FILE).read_text())["tau"])

    def fingerprint(self) -> str:
        """A short hash of the model's weights and configuration: same fingerprint, same vectors."""
        return folder_fingerprint(self.path) if self.path else self.name

    def info(self) -> dict:
        """What the index manifest records about the encoder."""
        return {"name": self.name, "path": str(self.path.resolve()) if self.path else None,
                "packaged": self.packaged, "dimension": self.dimension, "fingerprint": self.fingerprint(),
                "backend": self.backend, "modality": self.modality}

    @property
    def packaged(self) -> bool:
        """True for the model shipped with twin (found again wherever twin is installed)."""
        return False


_FINGERPRINTS: dict[tuple, str] = {}
_WEIGHT_SUFFIXES = {".safetensors", ".bin", ".pt", ".pth", ".json", ".txt", ".model"}


def folder_fingerprint(folder: Path) -> str:
    """sha256 over the relative names and contents of a model folder's weight and config files
    (README, calibration files and twin's ONNX export excluded: they do not change the vectors)."""
    folder = Path(folder).resolve()
    files = [p for p in sorted(folder.rglob("*"))
             if p.is_file() and p.suffix in _WEIGHT_SUFFIXES and p.name != CALIBRATION_FILE
             and not _derived(p.relative_to(folder))]
    key = (folder, tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files))
    if key not in _FINGERPRINTS:
        digest = hashlib.sha256()
        for path in files:
            digest.update(str(path.relative_to(folder)).encode())
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
        _FINGERPRINTS[key] = digest.hexdigest()[:16]
    return _FINGERPRINTS[key]


#: Folders twin writes into a model folder from its weights (``onnxrt.CACHE_DIR``).
DERIVED_DIRS = ("twin_onnx",)


def _derived(relative: Path) -> bool:
    return bool(relative.parts) and relative.parts[0] in DERIVED_DIRS
