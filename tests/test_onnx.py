"""The int8 ONNX backend: its vectors against torch's, its cache in the model folder, and what
happens when the export fails or the cache is damaged. Real model, real export, real ONNX Runtime."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from retrieval.encoders import load_encoder, packaged_model_path
from retrieval.encoders.base import PACKAGED_TAUS, folder_fingerprint
from retrieval.encoders.onnxrt import CACHE_DIR, CACHE_FILE, MODEL_FILE, OnnxEncoder

TEXTS = ["How do I learn Python quickly?", "What is the best way to learn Python fast?",
         "Why is the sky blue?", "x", "A much longer question about the history of the Roman empire " * 8]


@pytest.fixture
def model_copy(tmp_path):
    """A copy of the packaged model folder without its ONNX cache."""
    folder = tmp_path / "model"
    shutil.copytree(packaged_model_path(), folder, ignore=shutil.ignore_patterns(CACHE_DIR))
    return folder


@pytest.fixture(scope="module")
def torch_encoder():
    return load_encoder(backend="torch")


def test_onnx_is_the_default_and_close_to_torch(encoder, torch_encoder):
    assert isinstance(encoder, OnnxEncoder) and encoder.info()["backend"] == "onnx"
    a, b = encoder.encode(TEXTS), torch_encoder.encode(TEXTS)
    assert a.shape == b.shape == (len(TEXTS), 384) and a.dtype == np.float32
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    cosines = (a * b).sum(axis=1)
    assert cosines.min() > 0.95 and cosines.mean() > 0.98
    # a text's vector does not depend on its companions (int8 activations are scaled per run, so
    # each text runs alone): alone, in a batch, in another order, the same vector
    for text, row in zip(TEXTS, a):
        assert np.allclose(encoder.encode([text])[0], row, atol=1e-6)
    assert np.allclose(encoder.encode(TEXTS[::-1])[::-1], a, atol=1e-6)
    # the ranking the product relies on: a duplicate scores above an unrelated question
    assert a[0] @ a[1] > a[0] @ a[2] + 0.2
    assert encoder.encode([]).shape == (0, 384)
    # the packaged model's built-in tau is the one calibrated for each backend's vectors
    assert (encoder.tau, torch_encoder.tau) == (PACKAGED_TAUS["onnx"], PACKAGED_TAUS["torch"])


def test_the_export_is_cached_in_the_model_folder_once(model_copy):
    before = folder_fingerprint(model_copy)
    encoder = load_encoder(model_copy, "onnx")
    assert isinstance(encoder, OnnxEncoder)
    cached = model_copy / CACHE_DIR / MODEL_FILE
    spec = json.loads((model_copy / CACHE_DIR / CACHE_FILE).read_text())
    assert cached.is_file() and spec["source_fingerprint"] == before
    assert folder_fingerprint(model_copy) == before  # the cache does not change the model's identity
    stamp = cached.stat().st_mtime_ns
    again = load_encoder(model_copy, "onnx")
    assert cached.stat().st_mtime_ns == stamp  # not exported again
    assert np.allclose(again.encode(TEXTS[:2]), encoder.encode(TEXTS[:2]), atol=1e-6)


def test_a_corrupt_cached_file_is_detected_and_exported_again(model_copy, capfd):
    first = load_encoder(model_copy, "onnx").encode(TEXTS[:3])
    cached = model_copy / CACHE_DIR / MODEL_FILE
    data = bytearray(cached.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = b"\0" * 64  # a damaged weight block still parses
    cached.write_bytes(bytes(data))
    capfd.readouterr()
    encoder = load_encoder(model_copy, "onnx")
    err = capfd.readouterr().err
    assert "fails its checksum" in err and "exporting the model to ONNX again" in err
    assert np.allclose(encoder.encode(TEXTS[:3]), first, atol=1e-6)


def test_a_cache_made_from_other_weights_is_replaced(model_copy, capfd):
    load_encoder(model_copy, "onnx")
    spec_file = model_copy / CACHE_DIR / CACHE_FILE
    spec = json.loads(spec_file.read_text())
    spec_file.write_text(json.dumps({**spec, "source_fingerprint": "0" * 16}))
    capfd.readouterr()
    load_encoder(model_copy, "onnx")
    assert "made from other weights" in capfd.readouterr().err
    assert json.loads(spec_file.read_text())["source_fingerprint"] == folder_fingerprint(model_copy)


def test_an_export_failure_falls_back_to_torch_with_one_warning(model_copy, capfd, monkeypatch):
    import torch

    def refuse(*_args, **_kwargs):
        raise RuntimeError("Unsupported: this module cannot be traced\nsecond line")

    monkeypatch.setattr(torch.onnx, "export", refuse)
    encoder = load_encoder(model_copy, "onnx")
    err = capfd.readouterr().err.strip().splitlines()
    assert encoder.backend == "torch" and encoder.info()["backend"] == "torch"
    assert len(err) == 1 and err[0].startswith("warning: ") and "cannot be traced" in err[0]
    assert "running it in torch instead" in err[0]
    assert encoder.encode(["still works"]).shape == (1, 384)
    assert not (model_copy / CACHE_DIR / CACHE_FILE).exists()


def test_a_folder_without_a_fast_tokenizer_runs_in_torch(model_copy, capfd):
    (model_copy / "tokenizer.json").unlink()
    encoder = load_encoder(model_copy, "onnx")
    assert encoder.backend == "torch"
    assert "no tokenizer.json" in capfd.readouterr().err


def test_backend_choice_order(monkeypatch):
    from retrieval.encoders import choose_backend
    from retrieval.errors import ModelError

    monkeypatch.delenv("TWIN_BACKEND", raising=False)
    assert choose_backend() == "onnx"
    assert choose_backend(built={"name": "x"}) == "torch"  # an index from before backends were recorded
    assert choose_backend(built={"backend": "onnx"}) == "onnx"
    monkeypatch.setenv("TWIN_BACKEND", "torch")
    assert choose_backend(built={"backend": "onnx"}) == "torch"
    assert choose_backend("onnx") == "onnx"
    monkeypatch.setenv("TWIN_BACKEND", "tensorrt")
    with pytest.raises(ModelError, match="TWIN_BACKEND"):
        choose_backend()


def test_one_query_runs_on_one_torch_thread_and_restores_the_rest(torch_encoder, monkeypatch):
    import torch

    seen = []
    model = torch_encoder.model
    original = model.encode
    monkeypatch.setattr(model, "encode", lambda *a, **k: (seen.append(torch.get_num_threads()), original(*a, **k))[1])
    before = torch.get_num_threads()
    torch_encoder.encode(["one"])
    torch_encoder.encode(["one", "two"])
    assert seen == [1, before] and torch.get_num_threads() == before


def test_the_index_records_its_backend_and_another_one_warns(tmp_path):
    from click.testing import CliRunner

    from retrieval.cli import cli

    from .conftest import DEMO_CSV

    folder = tmp_path / "index"
    built = CliRunner().invoke(cli, ["build", str(DEMO_CSV), "--index", str(folder), "--backend", "onnx"])
    assert built.exit_code == 0, built.output
    assert json.loads((folder / "manifest.json").read_text())["encoder"]["backend"] == "onnx"
    same = CliRunner().invoke(cli, ["query", "How do I reset my password?", "--index", str(folder), "--json"])
    assert same.exit_code == 0 and "warning" not in same.stderr
    other = CliRunner().invoke(cli, ["query", "How do I reset my password?", "--index", str(folder), "--json",
                                     "--backend", "torch"])
    assert other.exit_code == 0, other.output
    assert "built with the onnx backend and is opened with torch" in other.stderr
    assert json.loads(other.stdout)["matches"][0]["id"] == json.loads(same.stdout)["matches"][0]["id"]
