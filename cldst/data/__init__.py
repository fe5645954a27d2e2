"""Benchmarks as uint8 tensors, with the class order and task split of a config."""

from __future__ import annotations

from pathlib import Path

import torch

from .base import DataError, ImageSplit

__all__ = ["DataError", "ImageSplit", "load_benchmark", "class_order", "task_class_range"]


def _load_source(cfg, progress: bool) -> ImageSplit:
    if cfg.dataset == "split-mnist":
        from .mnist import load_mnist_subset
        return load_mnist_subset(cfg.data_seed)
    if cfg.dataset == "cifar100":
        from .cifar100 import load_cifar100
        return load_cifar100(cfg.data_dir)
    if cfg.dataset == "miniimagenet":
        from .miniimagenet import CLASSES, find_source, load_miniimagenet
        strict = {}
        # A smaller tree (a subset, or a smoke test) is accepted when the run uses fewer classes.
        if cfg.num_classes < CLASSES and len(find_source(cfg.data_dir).wnids) != CLASSES:
            strict = dict(expected_classes=cfg.num_classes, images_per_class=None)
        return load_miniimagenet(Path(cfg.data_dir), cfg.image_size, cfg.data_seed,
                                 progress=progress, **strict)
    if cfg.dataset == "tinyimagenet":
        from .tinyimagenet import load_tinyimagenet
        # All 200 classes are checked; a smaller tree is accepted when the run uses fewer classes.
        return load_tinyimagenet(Path(cfg.data_dir), cfg.image_size, num_classes=cfg.num_classes,
                                 progress=progress)
    if cfg.dataset == "cifar10":
        from .cifar10 import load_cifar10
        return load_cifar10(Path(cfg.data_dir), progress=progress)
    raise DataError(f"unknown dataset {cfg.dataset!r}")


def class_order(num_native: int, order: str, seed: int) -> torch.Tensor:
    """order[k] = the native label that becomes class k. Task t holds classes tC..tC+C-1."""
    if order == "native":
        return torch.arange(num_native)
    return torch.randperm(num_native, generator=torch.Generator().manual_seed(seed))


def load_benchmark(cfg, progress: bool = False) -> ImageSplit:
    """Load ``cfg.dataset``, relabel by the class order and keep the first ``cfg.num_classes``."""
    split = _load_source(cfg, progress)
    num_native = int(split.train_y.max()) + 1
    order = class_order(num_native, cfg.class_order, cfg.data_seed)
    relabel = torch.empty_like(order)
    relabel[order] = torch.arange(num_native)

    def keep(x, y):
        y = relabel[y]
        sel = y < cfg.num_classes
        return x[sel], y[sel]

    train_x, train_y = keep(split.train_x, split.train_y)
    test_x, test_y = keep(split.test_x, split.test_y)
    info = dict(split.info, class_order=order[: cfg.num_classes].tolist())
    return ImageSplit(train_x, train_y, test_x, test_y, split.mean, split.std, split.hflip, info)


def task_class_range(task: int, classes_per_task: int) -> slice:
    return slice(task * classes_per_task, (task + 1) * classes_per_task)
