"""How one-shot accuracy on unseen alphabets grows with the number of training characters: `twin
train --encoder cnn` on a share of each training alphabet's characters (nested: each share holds
the smaller ones), then `twin eval-oneshot` on the same test alphabets and episodes as
`reproduce_oneshot.py`; optionally one more point trained on the training and dev alphabets
together (no early stopping: every epoch, the last kept).

    python scripts/oneshot_learning_curve.py [--direction "small1->small2"] [--shares 0.25,0.5,0.75,1]
        [--with-dev] [--data ../shared/data/omniglot] [--out bench-out/oneshot-curve] [--json]

A share keeps round(share x n) of an alphabet's n characters (at least 2), drawn by one seeded
permutation per alphabet, and every drawing of a kept character. Each point is one full training
run with `twin train`'s defaults (20 epochs at most, so fewer characters also means fewer steps).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from reproduce_oneshot import SPLITS, direction, layout, unpack  # noqa: E402


def characters(alphabet: Path) -> list[Path]:
    """An alphabet's character folders, in name order."""
    return sorted(p for p in alphabet.iterdir() if p.is_dir())


def subset(train: Path, share: float, seed: int, into: Path) -> tuple[Path, int]:
    """A tree of links to ``share`` of each alphabet's characters; the tree and its character count."""
    count = 0
    for alphabet in sorted(p for p in train.iterdir() if p.is_dir()):
        chars = characters(alphabet)
        order = np.random.default_rng(seed).permutation(len(chars))
        keep = sorted(order[:max(2, round(share * len(chars)))])
        for i in keep:
            target = into / alphabet.name / chars[i].name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(chars[i].resolve(), target_is_directory=True)
        count += len(keep)
    return into, count


def merged(folders: dict[str, Path], into: Path) -> Path:
    """One tree of links to the training and the dev alphabets."""
    into.mkdir(parents=True)
    for part in ("train", "dev"):
        for alphabet in sorted(folders[part].iterdir()):
            (into / alphabet.name).symlink_to(alphabet.resolve(), target_is_directory=True)
    return into


def point(label: str, folders: dict[str, Path], chars: int, out: Path, args: argparse.Namespace) -> dict:
    """One training run and its test figures."""
    result = direction(label, folders, out, args)
    row = {"share": label, "characters": chars, "20-way": result["20-way"]["cnn"]["accuracy"],
           "20-way ci95": result["20-way"]["cnn"]["ci95"], "5-way": result["5-way"]["cnn"]["accuracy"],
           "best_dev_accuracy": result["best_dev_accuracy"], "epochs": result["epochs"],
           "train_seconds": result["train_seconds"]}
    print(json.dumps(row), file=sys.stderr)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--direction", choices=list(SPLITS), default="small1->small2")
    parser.add_argument("--shares", default="0.25,0.5,0.75,1", help="Shares of each alphabet's characters.")
    parser.add_argument("--with-dev", action="store_true", help="One more point: train on train + dev alphabets.")
    parser.add_argument("--seed", type=int, default=0, help="Which characters a share keeps.")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "omniglot")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-out" / "oneshot-curve")
    parser.add_argument("--episodes", type=int, default=400)
    parser.add_argument("--json", action="store_true", help="Print the results as one JSON object.")
    args = parser.parse_args()
    args.epochs = args.image_size = None  # twin train's defaults
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
              "direction": args.direction, "points": []}
    with tempfile.TemporaryDirectory() as tmp:
        sets = unpack(args.data, Path(tmp) / "sets")
        folders = layout(sets, SPLITS[args.direction], Path(tmp) / "split")
        for share in (float(s) for s in args.shares.split(",") if s):
            train, chars = subset(folders["train"], share, args.seed, Path(tmp) / f"train-{share}")
            report["points"].append(point(f"{share}", {**folders, "train": train}, chars, args.out / f"share-{share}",
                                          args))
        if args.with_dev:
            train = merged(folders, Path(tmp) / "train+dev")
            chars = sum(len(characters(a)) for a in train.iterdir())
            report["points"].append(point("train+dev", {"train": train, "test": folders["test"]}, chars,
                                          args.out / "train+dev", args))
    (args.out / "curve.json").write_text(json.dumps(report, indent=2))
    print(f"{'share':>10} {'characters':>10} {'20-way':>8} {'5-way':>8} {'best dev':>9} {'train s':>8}")
    for row in report["points"]:
        dev = f"{row['best_dev_accuracy']:.4f}" if row["best_dev_accuracy"] is not None else "-"
        print(f"{row['share']:>10} {row['characters']:>10} {row['20-way']:>8.4f} {row['5-way']:>8.4f} {dev:>9} "
              f"{row['train_seconds']:>8.1f}")
    if args.json:
        print(json.dumps(report))


if __name__ == "__main__":
    main()
