"""Time miniImageNet preparation and cache loading on 1,000 generated 84×84 JPEGs (10 classes × 100).

    python bench/prepare_miniimagenet.py [--workers N] [--image-size 32] [--zip]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cldst.data.image_folders import default_workers
from cldst.data.miniimagenet import load_miniimagenet

CLASSES, PER_CLASS, SIDE = 10, 100, 84


def _photo_like(rng: np.random.Generator) -> Image.Image:
    """Smooth colour gradients plus noise: compresses like a photo, unlike pure noise."""
    y, x = np.mgrid[0:SIDE, 0:SIDE] / SIDE
    a, b, c = rng.uniform(0, 255, 3), rng.uniform(-255, 255, 3), rng.uniform(-255, 255, 3)
    img = a + b * x[..., None] + c * y[..., None] + rng.normal(0, 20, (SIDE, SIDE, 3))
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def make_jpegs(root: Path, as_zip: bool) -> None:
    rng = np.random.default_rng(0)
    wnids = [f"n{1000000 + 1000 * k:08d}" for k in range(CLASSES)]
    if as_zip:
        with zipfile.ZipFile(root / "miniImageNet.zip", "w") as zf:
            for wnid in wnids:
                for i in range(PER_CLASS):
                    with zf.open(f"{wnid}/{wnid}_{i:04d}.jpg", "w") as f:
                        _photo_like(rng).save(f, "JPEG", quality=90)
        return
    for wnid in wnids:
        (root / wnid).mkdir()
        for i in range(PER_CLASS):
            _photo_like(rng).save(root / wnid / f"{wnid}_{i:04d}.jpg", quality=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--zip", action="store_true", help="read the JPEGs from a zip, not a folder")
    args = parser.parse_args()
    kw = {"expected_classes": CLASSES, "images_per_class": PER_CLASS, "workers": args.workers,
          "progress": False}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_jpegs(root, args.zip)
        start = time.perf_counter()
        load_miniimagenet(root, args.image_size, 0, **kw)
        prepare = time.perf_counter() - start
        start = time.perf_counter()
        split = load_miniimagenet(root, args.image_size, 0, **kw)
        load = time.perf_counter() - start
    n = CLASSES * PER_CLASS
    print(f"{split.info['layout']} layout, resized to {args.image_size}x{args.image_size}")
    print(f"prepare: {prepare * 1000 / n:.2f} s per 1,000 JPEGs ({SIDE}x{SIDE}, {args.workers} workers); "
          f"cache load: {load:.3f} s")


if __name__ == "__main__":
    main()
