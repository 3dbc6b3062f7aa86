"""Make a small image folder in the ImageFolder layout: 6 classes of 24x24 colour shapes.

    python make_shapes.py shapes/          # shapes/train/<class>/*.png, shapes/test/<class>/*.png

Any folder of your own images in this layout works the same way.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ("square", "disk", "cross", "triangle", "ring", "bar")
SIDE = 24


def shape(kind: str, rng: np.random.Generator) -> Image.Image:
    bg = tuple(int(v) for v in rng.integers(0, 90, 3))
    fg = tuple(int(v) for v in rng.integers(140, 256, 3))
    img = Image.new("RGB", (SIDE, SIDE), bg)
    draw = ImageDraw.Draw(img)
    r = int(rng.integers(5, 8))
    cx, cy = (int(v) for v in rng.integers(r + 1, SIDE - r - 1, 2))
    if kind == "square":
        draw.rectangle([cx - r, cy - r, cx + r, cy + r], fill=fg)
    elif kind == "disk":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fg)
    elif kind == "triangle":
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fg)
    elif kind == "ring":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=fg, width=2)
    elif kind == "bar":
        draw.rectangle([cx - 1, cy - r, cx + 1, cy + r], fill=fg)
    else:
        draw.rectangle([cx - r, cy - 1, cx + r, cy + 1], fill=fg)
        draw.rectangle([cx - 1, cy - r, cx + 1, cy + r], fill=fg)
    noise = rng.integers(-20, 21, (SIDE, SIDE, 3))
    return Image.fromarray(np.clip(np.asarray(img, dtype=int) + noise, 0, 255).astype(np.uint8))


def main(root: Path, train: int = 500, test: int = 100) -> None:
    rng = np.random.default_rng(0)
    for split, n in (("train", train), ("test", test)):
        for kind in CLASSES:
            folder = root / split / kind
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                shape(kind, rng).save(folder / f"{i:04d}.png")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "shapes"))
