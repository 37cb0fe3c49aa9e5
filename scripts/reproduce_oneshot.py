"""One-shot image recognition on Omniglot, reproducibly: `twin train --encoder cnn` on one
background set, `twin eval-oneshot` on alphabets it never saw, both directions, with the
nearest-pixel baseline in the same run; then encoding throughput and `twin query` latency on a
10,000-image index.

    python scripts/reproduce_oneshot.py [--data ../shared/data/omniglot] [--out bench-out/oneshot] [--json]

Splits (../shared/data/omniglot: images_background_small1 and small2; Greek and Latin are in
both, so they are never evaluated on):
- small1 -> small2: train Balinese, Greek, Korean, Latin; dev (early stopping, tau) Early_Aramaic;
  evaluate Japanese (katakana), Sanskrit, Tagalog.
- small2 -> small1: train Greek, Japanese (katakana), Latin, Sanskrit; dev Tagalog; evaluate
  Balinese, Early_Aramaic, Korean.
Episodes: 400, within one alphabet, one query a class, seed 0 (Tagalog has 17 characters, so
20-way episodes come from the other two alphabets). The baseline names each query by the cosine
of raw pixels (white 1, ink 0) and of inverted pixels (ink 1), at the images' own 105 x 105.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from retrieval import oneshot  # noqa: E402
from retrieval.images import class_tree  # noqa: E402

SPLITS = {
    "small1->small2": {"train": ("small1", ["Balinese", "Greek", "Korean", "Latin"]),
                       "dev": ("small1", ["Early_Aramaic"]),
                       "test": ("small2", ["Japanese_(katakana)", "Sanskrit", "Tagalog"])},
    "small2->small1": {"train": ("small2", ["Greek", "Japanese_(katakana)", "Latin", "Sanskrit"]),
                       "dev": ("small2", ["Tagalog"]),
                       "test": ("small1", ["Balinese", "Early_Aramaic", "Korean"])},
}
TWIN = [sys.executable, "-m", "retrieval.cli"]


def unpack(data: Path, into: Path) -> dict[str, Path]:
    """The two background sets, unzipped."""
    sets = {}
    for name in ("small1", "small2"):
        with zipfile.ZipFile(data / f"images_background_{name}.zip") as z:
            z.extractall(into)
        sets[name] = into / f"images_background_{name}"
    return sets


def layout(sets: dict[str, Path], split: dict, into: Path) -> dict[str, Path]:
    """train/dev/test folders of links to the chosen alphabets."""
    folders = {}
    for part, (source, alphabets) in split.items():
        folder = into / part
        folder.mkdir(parents=True)
        for alphabet in alphabets:
            (folder / alphabet).symlink_to(sets[source] / alphabet, target_is_directory=True)
        folders[part] = folder
    return folders


def twin(*args: object) -> str:
    done = subprocess.run([*TWIN, *map(str, args)], capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"twin {' '.join(map(str, args))} failed: {done.stderr.strip()[-2000:]}")
    return done.stdout


def pixel_encoder(invert: bool):  # noqa: ANN201 - Callable
    """Raw pixels as a unit vector: the nearest-pixel baseline."""
    def encode(images: list[np.ndarray]) -> np.ndarray:
        x = np.stack([i.astype(np.float32).reshape(-1) / 255 for i in images])
        x = 1 - x if invert else x
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return encode


def direction(name: str, folders: dict[str, Path], out: Path, args: argparse.Namespace) -> dict:
    model = out / f"model-{name.replace('->', '-to-')}"
    started = time.perf_counter()
    dev = ["--dev", folders["dev"]] if "dev" in folders else []  # without one: every epoch, tau on training pairs
    twin("train", folders["train"], "--encoder", "cnn", "--out", model, *dev, "--force",
         *(["--epochs", args.epochs] if args.epochs else []), *(["--image-size", args.image_size] if args.image_size
                                                                 else []))
    train_s = time.perf_counter() - started
    summary = json.loads((model / "twin_training.json").read_text())
    labelled = class_tree(folders["test"])
    result = {"train_seconds": round(train_s, 1), "epochs": len(summary["epochs"]),
              "best_dev_accuracy": summary["best_dev_accuracy"], "tau": summary["calibration"]["tau"],
              "dev_pair_accuracy": summary["calibration"]["metrics"]["accuracy"], "model": str(model)}
    for ways in (20, 5):
        episodes = oneshot.tree_episodes(labelled, ways, 1, args.episodes, 0)
        cnn = json.loads(twin("eval-oneshot", folders["test"], "--model", model, "--ways", ways, "--episodes",
                              args.episodes, "--json"))
        raw = oneshot.run(pixel_encoder(False), episodes)
        ink = oneshot.run(pixel_encoder(True), episodes)
        result[f"{ways}-way"] = {"cnn": cnn, "pixels": raw, "inverted_pixels": ink}
        print(f"{name} {ways:>2}-way 1-shot: cnn {cnn['accuracy']:.4f} +- {cnn['ci95']:.4f}, pixels "
              f"{raw['accuracy']:.4f}, inverted pixels {ink['accuracy']:.4f}", file=sys.stderr)
    return result


def many_images(sets: dict[str, Path], into: Path, n: int = 10_000) -> Path:
    """``n`` distinct images: every Omniglot image, then rotated copies, as a flat folder."""
    from PIL import Image

    sources = sorted(p for s in sets.values() for p in s.rglob("*.png"))
    into.mkdir(parents=True)
    for i in range(n):
        image = Image.open(sources[i % len(sources)])
        turns = i // len(sources)
        (image.rotate(90 * turns) if turns else image).save(into / f"{i:05d}.png")
    return into


def speed(model: Path, sets: dict[str, Path], out: Path) -> dict:
    """Encoding throughput (batch and one at a time) and query latency on a 10,000-image index."""
    from retrieval.encoders import load_encoder
    from retrieval.images import read_images
    from retrieval.retriever import Retriever

    folder = many_images(sets, out / "images-10k")
    encoder = load_encoder(model)
    decoded = [row.load() for row in read_images(folder)]
    encoder.encode(decoded[:64])
    started = time.perf_counter()
    encoder.encode(decoded[:5000], batch_size=256)
    batch_rate = 5000 / (time.perf_counter() - started)
    single = []
    for image in decoded[:500]:
        t = time.perf_counter()
        encoder.encode([image])
        single.append(time.perf_counter() - t)
    index = out / "index-10k"
    started = time.perf_counter()
    twin("build", folder, "--index", index, "--model", model, "--force")
    build_s = time.perf_counter() - started
    probes = sorted(folder.iterdir())[::50][:200]
    latencies = []
    with Retriever.open(index, read_only=True) as retriever:
        for path in probes:
            data = path.read_bytes()
            t = time.perf_counter()
            retriever.search_images([data], [path.name], 5)
            latencies.append((time.perf_counter() - t) * 1000)
    started = time.perf_counter()
    twin("query", "--index", index, "--json", probes[0])
    cli_s = time.perf_counter() - started
    return {"images_per_s_batch": round(batch_rate, 1), "images_per_s_single": round(1 / statistics.median(single), 1),
            "encode_single_p50_ms": round(statistics.median(single) * 1000, 3),
            "index_images": len(decoded), "build_seconds": round(build_s, 1),
            "query_p50_ms": round(statistics.median(latencies), 3),
            "query_p99_ms": round(float(np.percentile(latencies, 99)), 3),
            "cli_query_seconds": round(cli_s, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "omniglot")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-out" / "oneshot")
    parser.add_argument("--episodes", type=int, default=400)
    parser.add_argument("--epochs", type=int, default=None, help="Passed to twin train (default: its own).")
    parser.add_argument("--image-size", type=int, default=None, help="Passed to twin train (default: its own).")
    parser.add_argument("--only", choices=list(SPLITS), default=None, help="Run one direction.")
    parser.add_argument("--no-speed", action="store_true", help="Skip the throughput and latency figures.")
    parser.add_argument("--json", action="store_true", help="Print the results as one JSON object.")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores", "directions": {}}
    with tempfile.TemporaryDirectory() as tmp:
        sets = unpack(args.data, Path(tmp) / "sets")
        for name, split in SPLITS.items():
            if args.only and name != args.only:
                continue
            folders = layout(sets, split, Path(tmp) / name.replace("->", "-to-"))
            report["directions"][name] = direction(name, folders, args.out, args)
        if not args.no_speed:
            model = Path(next(iter(report["directions"].values()))["model"])
            report["speed"] = speed(model, sets, Path(tmp))
            print(f"speed: {report['speed']}", file=sys.stderr)
    (args.out / "oneshot.json").write_text(json.dumps(report, indent=2))
    if args.json:
        print(json.dumps(report))


if __name__ == "__main__":
    main()
