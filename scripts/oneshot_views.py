"""Test-time views for a trained `--encoder cnn` model: one-shot accuracy when each image's vector
is the normalised sum of its vectors under a few small fixed affine maps (shifts, rotations,
scales), against the plain vector, on the same episodes in one run.

    python scripts/reproduce_oneshot.py --only "small1->small2" --no-speed   # the model, in bench-out/oneshot
    python scripts/oneshot_views.py bench-out/oneshot/model-small1-to-small2 [--direction "small1->small2"]
        [--data ../shared/data/omniglot] [--episodes 400] [--seed 0] [--json]

The episodes are `reproduce_oneshot.py`'s for that direction's test alphabets (within one
alphabet, one shot, one query a class).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from retrieval import oneshot  # noqa: E402
from retrieval.encoders import load_encoder  # noqa: E402
from retrieval.images import class_tree  # noqa: E402
from retrieval.training.images import embed_pixels, load_pixels  # noqa: E402

sys.path.insert(0, str(ROOT / "scripts"))
from reproduce_oneshot import SPLITS, layout, unpack  # noqa: E402

SHIFT, ANGLE, SCALE = 0.06, 6.0, 1.1  #: a shift of 3% of the side, 6 degrees, 10% larger or smaller
VIEWS = {  # each view: (angle in degrees, scale, shift x, shift y) in affine_grid's [-1, 1] frame
    "plain": [(0, 1, 0, 0)],
    "shifts (5)": [(0, 1, 0, 0), (0, 1, SHIFT, 0), (0, 1, -SHIFT, 0), (0, 1, 0, SHIFT), (0, 1, 0, -SHIFT)],
    "rotations (3)": [(0, 1, 0, 0), (ANGLE, 1, 0, 0), (-ANGLE, 1, 0, 0)],
    "scales (3)": [(0, 1, 0, 0), (0, SCALE, 0, 0), (0, 1 / SCALE, 0, 0)],
    "all (9)": [(0, 1, 0, 0), (0, 1, SHIFT, 0), (0, 1, -SHIFT, 0), (0, 1, 0, SHIFT), (0, 1, 0, -SHIFT),
                (ANGLE, 1, 0, 0), (-ANGLE, 1, 0, 0), (0, SCALE, 0, 0), (0, 1 / SCALE, 0, 0)],
}


def affine(pixels: torch.Tensor, angle: float, scale: float, dx: float, dy: float) -> torch.Tensor:
    """The images under one rotation, scale and shift; border pixels fill what comes into view."""
    a = math.radians(angle)
    matrix = torch.tensor([[math.cos(a) / scale, -math.sin(a) / scale, dx],
                           [math.sin(a) / scale, math.cos(a) / scale, dy]], dtype=torch.float32)
    grid = torch.nn.functional.affine_grid(matrix.expand(len(pixels), 2, 3), list(pixels.shape), align_corners=False)
    return torch.nn.functional.grid_sample(pixels, grid, padding_mode="border", align_corners=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--direction", choices=list(SPLITS), default="small1->small2")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "omniglot")
    parser.add_argument("--episodes", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        test = layout(unpack(args.data, Path(tmp) / "sets"), SPLITS[args.direction], Path(tmp) / "split")["test"]
        results = evaluate(load_encoder(args.model), test, args)
    print(json.dumps(results) if args.json else "\n".join(
        f"{name}: {r['accuracy']:.4f} +- {r['ci95']:.4f}" for name, r in results.items()))


def evaluate(encoder, test: Path, args: argparse.Namespace) -> dict:  # noqa: ANN001 - CNNEncoder
    """Accuracy and 95% interval of every set of views, 20-way and 5-way, on one set of episodes each."""
    size, channels = encoder.config["image_size"], encoder.config["channels"]
    labelled = class_tree(test)
    results = {}
    for ways in (20, 5):
        episodes = oneshot.tree_episodes(labelled, ways, 1, args.episodes, args.seed, str(test))
        used = oneshot.used_images(episodes)
        pixels = load_pixels([labelled[i] for i in used], size, channels)
        for name, views in VIEWS.items():
            summed = sum(embed_pixels(encoder, affine(pixels, *view)) for view in views)
            vectors = np.zeros((len(episodes.rows), summed.shape[1]), np.float32)
            vectors[used] = summed / np.linalg.norm(summed, axis=1, keepdims=True)
            result = oneshot.evaluate(vectors, episodes.episodes)
            results[f"{ways}-way {name}"] = {k: round(v, 4) for k, v in result.items() if k != "episodes"}
    return results


if __name__ == "__main__":
    main()
