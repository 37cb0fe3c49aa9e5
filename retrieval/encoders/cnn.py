"""A siamese convolutional network for images: one network, shared weights, unit vectors out.

The network (``SiameseCNN``) is the four-block embedding of Vinyals et al. 2016 and Snell et al.
2017 (each block: 3x3 convolution, batch norm, ReLU, 2x2 max pooling), then a linear projection
and L2 normalisation, so that cosine is the similarity. Koch, Zemel & Salakhutdinov 2015
("Siamese Neural Networks for One-shot Image Recognition") gave the siamese setting; this smaller
network trains from scratch in minutes on a CPU.

Folder format (what ``--model PATH`` accepts): ``twin_cnn.json`` (config: image size, channels,
width, blocks, out_dim, the pixel mean and std of the training images) and ``model.pt`` (the
state dict). Images of any size and mode are resized to ``image_size`` squared and converted to
the model's channels (grey or RGB) before encoding.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import ModelError
from . import CNN_CONFIG_FILE as CONFIG_FILE
from .base import Encoder

DEFAULT_CONFIG = {"image_size": 28, "channels": 1, "width": 64, "blocks": 4, "out_dim": 128,
                  "mean": 0.0, "std": 1.0}


class SiameseCNN(nn.Module):
    """(batch, channels, size, size) pixels to (batch, out_dim) unit vectors."""

    def __init__(self, image_size: int = 28, channels: int = 1, width: int = 64, blocks: int = 4,
                 out_dim: int = 128) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for n in range(blocks):
            layers += [nn.Conv2d(channels if n == 0 else width, width, 3, padding=1), nn.BatchNorm2d(width),
                       nn.ReLU(inplace=True), nn.MaxPool2d(2)]
        self.features = nn.Sequential(*layers)
        side = image_size // 2**blocks
        if side < 1:
            raise ModelError(f"image size {image_size} is too small for {blocks} pooling blocks")
        self.project = nn.Linear(width * side * side, out_dim)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Unit vectors of a batch of standardised images."""
        return nn.functional.normalize(self.project(self.features(pixels).flatten(1)), dim=1)


def resize(image: np.ndarray, size: int, channels: int) -> np.ndarray:
    """A decoded image (``images.decode_image``) as float32 (channels, size, size) in [0, 1]."""
    from PIL import Image

    picture = Image.fromarray(image)
    picture = picture.convert("L" if channels == 1 else "RGB")
    if picture.size != (size, size):
        picture = picture.resize((size, size), Image.Resampling.BILINEAR)
    array = np.asarray(picture, dtype=np.float32) / 255.0
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


class CNNEncoder(Encoder):
    """A trained (or freshly initialised) siamese CNN behind the encoder interface; items are
    decoded images (uint8 arrays, grey or RGB)."""

    modality = "image"

    def __init__(self, config: dict, module: SiameseCNN | None = None, path: Path | None = None) -> None:
        self.config = {**DEFAULT_CONFIG, **config}
        self.path = path
        self.name = path.name if path else "cnn"
        c = self.config
        self.module = module or SiameseCNN(c["image_size"], c["channels"], c["width"], c["blocks"], c["out_dim"])
        self._lock = threading.Lock()

    @property
    def dimension(self) -> int:
        return int(self.config["out_dim"])

    def pixels(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """Standardised (batch, channels, size, size) pixels of decoded images."""
        c = self.config
        batch = np.stack([resize(image, c["image_size"], c["channels"]) for image in images])
        return (torch.from_numpy(batch) - c["mean"]) / c["std"]

    def encode(self, items: Sequence[np.ndarray], batch_size: int = 256) -> np.ndarray:
        if not len(items):
            return np.empty((0, self.dimension), dtype=np.float32)
        out = np.empty((len(items), self.dimension), dtype=np.float32)
        with self._lock, torch.inference_mode():
            self.module.eval()
            for start in range(0, len(items), batch_size):
                chunk = items[start : start + batch_size]
                out[start : start + len(chunk)] = self.module(self.pixels(chunk)).numpy()
        return out

    def save(self, folder: Path) -> None:
        """Write the folder format described in the module docstring."""
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(self.module.state_dict(), folder / "model.pt")
        (folder / CONFIG_FILE).write_text(json.dumps({"kind": "twin-cnn", **self.config}, indent=2))

    @classmethod
    def load(cls, folder: Path) -> CNNEncoder:
        """Load a saved folder."""
        try:
            config = json.loads((folder / CONFIG_FILE).read_text())
            config.pop("kind", None)
            encoder = cls(config, path=folder)
            encoder.module.load_state_dict(torch.load(folder / "model.pt", map_location="cpu", weights_only=True))
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
            raise ModelError(f"{folder}: damaged CNN model folder ({exc})") from None
        return encoder
