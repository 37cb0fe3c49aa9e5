"""Shared fixtures: the real packaged model, real FAISS, real SQLite files in tmp folders."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DEMO_CSV = ROOT / "retrieval" / "demo" / "faq.csv"
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def encoder():
    """The packaged all-MiniLM-L6-v2, loaded once."""
    from retrieval.encoders import load_encoder

    enc = load_encoder()
    enc.encode(["warm up"])
    return enc


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, or skip when this checkout has none."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


def clustered(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """Unit vectors in tight-ish clusters of a low-dimensional subspace, like real embeddings."""
    rng = np.random.default_rng(seed)
    latent = min(dim, 16)
    basis = np.linalg.qr(rng.standard_normal((dim, dim)))[0][:, :latent]
    centres = rng.standard_normal((max(1, n // 50), latent))
    z = centres[rng.integers(0, len(centres), n)] + 0.4 * rng.standard_normal((n, latent))
    x = z @ basis.T + 0.02 * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="session")
def demo_index_dir(tmp_path_factory, encoder) -> Path:
    """The demo corpus indexed once (a session's tests copy it before changing it)."""
    from retrieval.corpus import read_corpus
    from retrieval.retriever import Item, Retriever

    folder = tmp_path_factory.mktemp("demo") / "index"
    with Retriever.create(folder) as retriever:
        retriever.add((Item(r.id, r.text, r.payload) for r in read_corpus(DEMO_CSV)), progress=False)
        retriever.save()
    return folder


@pytest.fixture
def index_copy(demo_index_dir, tmp_path) -> Path:
    """A copy of the demo index that a test may change."""
    folder = tmp_path / "index"
    shutil.copytree(demo_index_dir, folder)
    return folder


#: Debian's Chromium as this machine allows it: no sandbox (root), no GPU, no calls home (refused here).
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium driven by Playwright; skipped (failed where TWIN_REQUIRE_BROWSER=1, as in
    CI) when Chromium or Playwright is missing."""
    required = os.environ.get("TWIN_REQUIRE_BROWSER") == "1"
    missing = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = "playwright is not installed (the dev extra has it)"
    if missing is None and not Path(CHROMIUM).is_file():
        missing = "no Chromium at /usr/bin/chromium (Debian's chromium package; scripts/browser.sh installs it)"
    if missing:
        pytest.fail(missing) if required else pytest.skip(missing)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()
