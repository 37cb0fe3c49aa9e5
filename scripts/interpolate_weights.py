"""Interpolate a fine-tuned transformer's weights with its base model's (WiSE-FT) or another
fine-tune's (a model soup), for the measurements of BENCHMARKS.md (issue 13, round 10).

    theta = (1 - alpha) x theta_base + alpha x theta_fine_tuned

alpha 1 is the fine-tuned model, 0 the base; between them WiSE-FT (Wortsman et al., CVPR 2022)
found the zero-shot model's robustness kept with most of the fine-tune's gain; above 1 the
fine-tune's direction is extrapolated. With two fine-tunes of one base at alpha 0.5 it is a uniform
soup (Wortsman et al., ICML 2022). The output folder is the fine-tuned one with the new weights and
without its tau, which no longer applies: run ``twin calibrate DEV --model OUT`` next.

    python scripts/interpolate_weights.py --base packaged --tuned M --alpha 0.8 --out M-wise0.8
    twin calibrate dev.tsv --model M-wise0.8 && twin eval dev.tsv --model M-wise0.8 --json
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from safetensors.torch import load_file, save_file

WEIGHTS = "model.safetensors"


def interpolate(base: Path, tuned: Path, alpha: float, out: Path) -> None:
    """Write ``tuned``'s folder to ``out`` with weights (1 - alpha) base + alpha tuned."""
    for folder in (base, tuned):
        if not (folder / WEIGHTS).is_file():
            raise SystemExit(f"{folder}: no {WEIGHTS}: not a transformer model folder")
    start, end = load_file(str(base / WEIGHTS)), load_file(str(tuned / WEIGHTS))
    if missing := sorted(set(end) - set(start)):
        raise SystemExit(f"{base}: no weights {', '.join(missing[:3])}: not the base of {tuned}")
    mixed = {name: ((1 - alpha) * start[name].float() + alpha * w.float()).to(w.dtype) if w.is_floating_point()
             else w for name, w in end.items()}
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(tuned, out, ignore=shutil.ignore_patterns(
        "twin_onnx", "twin_calibration.json", "silver_pairs.jsonl", WEIGHTS))
    save_file(mixed, str(out / WEIGHTS), metadata={"format": "pt"})


def main() -> None:
    """Parse the arguments and write the interpolated model folder."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="the base model folder, or 'packaged' (all-MiniLM-L6-v2)")
    parser.add_argument("--tuned", type=Path, required=True, help="a model folder `twin train` wrote from that base")
    parser.add_argument("--alpha", type=float, required=True, help="weight of --tuned (1: it, 0: the base)")
    parser.add_argument("--out", type=Path, required=True, help="the model folder to write (replaced)")
    args = parser.parse_args()
    if args.base == "packaged":
        from retrieval.encoders.transformer import packaged_model_path

        args.base = packaged_model_path()
    interpolate(Path(args.base), args.tuned, args.alpha, args.out)
    print(f"{args.out}: (1 - {args.alpha}) x {args.base} + {args.alpha} x {args.tuned}; tau not set: calibrate it")


if __name__ == "__main__":
    main()
