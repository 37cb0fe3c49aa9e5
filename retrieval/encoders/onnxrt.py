"""A sentence-transformers model run by ONNX Runtime with int8 weights.

The model (transformer, pooling, normalisation: whatever modules the folder lists) is traced once
with ``torch.onnx.export`` and quantised with ONNX Runtime's dynamic quantisation (int8 weights,
one scale per output channel; activations quantised on the fly). Measured on QQP (BENCHMARKS.md,
"Query speed"): one text in 0.93 ms, batches 4.6x faster than sentence-transformers fp32 (2.2x
faster than torch bf16), its vectors at cosine >= 0.97 (mean 0.995) to fp32.

The export is cached in the model folder, ``twin_onnx/`` (or, where the folder is read-only, in
``$TWIN_CACHE`` / ``~/.cache/twin/onnx/<fingerprint>``): ``model-int8.onnx`` and
``twin_onnx.json``, which records the source folder's fingerprint and the file's sha256. A cache
whose checksum or fingerprint does not match is exported again. Running needs neither torch nor
transformers: the tokenizer is ``tokenizer.json`` (the ``tokenizers`` package).

Each text runs alone, on one thread. Dynamic quantisation scales activations per call, so a text
encoded in a batch would get a vector that depends on its companions (cosine 0.98 to itself alone,
measured); alone, a text always gets the same vector. Batches are spread over every core, one text
at a time on each, which encodes as fast as padded batches on all cores did (no padding to pay
for), and no thread is left spinning after a call: FAISS gets the cores the moment encoding ends.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from index.store import CORES

from ..errors import ModelError
from .base import DERIVED_DIRS, Encoder, folder_fingerprint

CACHE_DIR = DERIVED_DIRS[0]
CACHE_FILE = "twin_onnx.json"
LOCK_FILE = ".export.lock"
MODEL_FILE = "model-int8.onnx"
QUANTIZATION = "dynamic int8, per-channel weights"
OPSET = 17


class ExportError(ModelError):
    """The model could not be exported to ONNX (the caller falls back to torch)."""


class OnnxEncoder(Encoder):
    """The int8 ONNX form of a sentence-transformers folder; the same interface as the torch one."""

    backend = "onnx"

    def __init__(self, path: Path, name: str, packaged: bool = False, model_file: Path | None = None) -> None:
        self.path, self.name, self._packaged = Path(path), name, packaged
        self.spec = cached_export(self.path)
        self.model_file = model_file or cache_folder(self.path) / MODEL_FILE  # another file: benchmarks
        try:
            self._tokenizer = _tokenizer(self.path, self.spec)
            self._session = _session(self.model_file)
        except Exception as exc:  # noqa: BLE001 - a runtime that cannot take the file: run it in torch
            raise ExportError(f"cannot load the ONNX export: {type(exc).__name__}: {str(exc)[:200]}") from None

    @property
    def dimension(self) -> int:
        return int(self.spec["dimension"])

    @property
    def packaged(self) -> bool:
        return self._packaged

    def encode(self, items: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Unit vectors, each text run alone (``batch_size`` is not used: see the module's docstring)."""
        out = np.empty((len(items), self.dimension), dtype=np.float32)
        encodings = self._tokenizer.encode_batch(list(items)) if len(items) else []
        if len(items) == 1:
            out[0] = self._run(encodings[0])
        elif len(items) > 1:
            workers = min(CORES, len(items))
            list(_pool().map(lambda w: self._some(encodings, out, w, workers), range(workers)))
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms > 0, norms, 1.0)

    def _some(self, encodings: list, out: np.ndarray, first: int, step: int) -> None:
        for i in range(first, len(encodings), step):
            out[i] = self._run(encodings[i])

    def _run(self, encoding) -> np.ndarray:  # noqa: ANN001 - tokenizers.Encoding
        feeds = {"input_ids": encoding.ids, "attention_mask": encoding.attention_mask,
                 "token_type_ids": encoding.type_ids}
        return self._session.run(None, {n: np.array([feeds[n]], dtype=np.int64) for n in self.spec["inputs"]})[0][0]


_POOL: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    """One worker a core, shared by every encoder of the process (ONNX Runtime runs without the GIL)."""
    global _POOL
    if _POOL is None:
        with _EXPORTING:
            _POOL = _POOL or ThreadPoolExecutor(CORES, thread_name_prefix="twin-onnx")
    return _POOL


def _session(path: Path):  # noqa: ANN202 - ort.InferenceSession
    """One thread a run; concurrent runs (one a core) share it."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # free the cores for FAISS
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _tokenizer(folder: Path, spec: dict):  # noqa: ANN202 - tokenizers.Tokenizer
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.enable_truncation(int(spec["max_seq_length"]))
    tokenizer.no_padding()  # one text a run: nothing to pad to
    return tokenizer


# -- the cache --------------------------------------------------------------------------------
_EXPORTING = threading.Lock()


def cache_folder(model: Path) -> Path:
    """Where the export of ``model`` lives: inside it when writable, else in the user's cache."""
    inside = Path(model) / CACHE_DIR
    if inside.is_dir() or os.access(model, os.W_OK):
        return inside
    base = Path(os.environ.get("TWIN_CACHE") or Path.home() / ".cache" / "twin") / "onnx"
    return base / folder_fingerprint(Path(model))


def cached_export(model: Path) -> dict:
    """The export's description (``twin_onnx.json``), exporting first if it is missing, made from
    other weights, or fails its checksum. One process exports at a time (a file lock); the others
    wait and use its result."""
    folder = cache_folder(model)
    if cache_problem(model, folder) is None:
        return json.loads((folder / CACHE_FILE).read_text())
    folder.mkdir(parents=True, exist_ok=True)
    with _EXPORTING, open(folder / LOCK_FILE, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        problem = cache_problem(model, folder)
        if problem is None:  # another process exported it meanwhile
            return json.loads((folder / CACHE_FILE).read_text())
        if problem != "missing":
            print(f"warning: {folder}: {problem}; exporting the model to ONNX again", file=sys.stderr)
        for stale in folder.glob(".export-*"):  # left by a killed export
            shutil.rmtree(stale, ignore_errors=True)
        return export(model, folder)


def cache_problem(model: Path, folder: Path) -> str | None:
    """Why the cached export cannot be used (None: it can)."""
    if not (folder / CACHE_FILE).is_file():
        return "missing"
    try:
        spec = json.loads((folder / CACHE_FILE).read_text())
        digest, source = spec["sha256"], spec["source_fingerprint"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"{CACHE_FILE} is damaged"
    if source != folder_fingerprint(model):
        return "the cached ONNX file was made from other weights"
    if not (folder / MODEL_FILE).is_file() or _sha256(folder / MODEL_FILE) != digest:
        return f"{MODEL_FILE} fails its checksum"
    return None


def export(model: Path, folder: Path) -> dict:
    """Trace the sentence-transformers folder ``model`` to ONNX, quantise it to int8 into
    ``folder`` (files written aside and moved in; the description last) and describe it."""
    with tempfile.TemporaryDirectory(dir=folder, prefix=".export-") as tmp:
        plain, quantised = Path(tmp) / "model.onnx", Path(tmp) / MODEL_FILE
        st, inputs = trace(model, plain)
        _quantise(plain, quantised)
        os.replace(quantised, folder / MODEL_FILE)
    tokenizer = st[0].tokenizer
    spec = {"inputs": inputs, "dimension": int(st.get_embedding_dimension()),
            "max_seq_length": int(st.max_seq_length or tokenizer.model_max_length),
            "quantization": QUANTIZATION, "opset": OPSET,
            "source_fingerprint": folder_fingerprint(model), "sha256": _sha256(folder / MODEL_FILE)}
    _write_atomic(folder / CACHE_FILE, json.dumps(spec, indent=2))
    return spec


def trace(model: Path, path: Path) -> tuple:
    """Trace the sentence-transformers folder ``model`` to an fp32 ONNX file ``path``; returns the
    loaded model and the names of the ONNX inputs."""
    import torch

    from .transformer import _load

    if not (Path(model) / "tokenizer.json").is_file():
        raise ExportError(f"{model}: no tokenizer.json (a fast tokenizer is needed to run it in ONNX Runtime)")
    st = _load(Path(model), "cpu")
    tokenizer = st[0].tokenizer
    inputs = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in tokenizer.model_input_names]

    class Wrapped(torch.nn.Module):
        """Token tensors in, the model's sentence embedding out (pooling and normalisation traced)."""

        def __init__(self) -> None:
            super().__init__()
            self.st = st

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            return self.st(dict(zip(inputs, tensors)))["sentence_embedding"]

    sample = tokenizer(["a sentence", "and a somewhat longer one to pad the first"], padding=True, return_tensors="pt")
    axes = {name: {0: "batch", 1: "tokens"} for name in inputs}
    try:
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")
            torch.onnx.export(Wrapped().eval(), tuple(sample[n] for n in inputs), str(path), input_names=inputs,
                              output_names=["sentence_embedding"],
                              dynamic_axes={**axes, "sentence_embedding": {0: "batch"}},
                              opset_version=OPSET, dynamo=False)
    except Exception as exc:  # noqa: BLE001 - any tracing failure means: run it in torch
        raise ExportError(f"cannot export to ONNX: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}") from None
    return st, inputs


def _quantise(plain: Path, quantised: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # its advice to pre-process is logged on the root logger
    try:
        quantize_dynamic(str(plain), str(quantised), per_channel=True, weight_type=QuantType.QInt8)
    except Exception as exc:  # noqa: BLE001
        raise ExportError(f"cannot quantise the ONNX model: {type(exc).__name__}: {exc}") from None
    finally:
        root.setLevel(level)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
