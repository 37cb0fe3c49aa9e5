"""Synthetic handwritten-like glyphs for the image tests: each class a few random strokes, each
image of it the strokes drawn again with jittered points and width (Omniglot's shape: groups of
classes, 20 drawers a class)."""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageDraw


def glyph(strokes: list[list[tuple[float, float]]], rng: random.Random, size: int = 32,
          jitter: float = 1.2) -> Image.Image:
    """One drawing of a glyph: black strokes on white, mode L."""
    image = Image.new("L", (size, size), 255)
    draw = ImageDraw.Draw(image)
    for stroke in strokes:
        points = [(x * size + rng.uniform(-jitter, jitter), y * size + rng.uniform(-jitter, jitter)) for x, y in stroke]
        draw.line(points, fill=0, width=rng.choice([2, 2, 3]))
    return image


def class_tree(root: Path, groups: int = 2, classes: int = 6, drawers: int = 6, seed: int = 0) -> Path:
    """``root/group_g/char_c/d.png``: ``groups`` x ``classes`` classes of ``drawers`` images."""
    rng = random.Random(seed)
    for g in range(groups):
        for c in range(classes):
            strokes = [[(rng.uniform(0.15, 0.85), rng.uniform(0.15, 0.85)) for _ in range(rng.randint(2, 4))]
                       for _ in range(rng.randint(2, 3))]
            folder = root / f"group{g}" / f"char{c:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            for d in range(drawers):
                glyph(strokes, rng).save(folder / f"{d:02d}.png")
    return root
