"""Benchmarks as uint8 tensors, with the class order and task split of a config.

Each benchmark's module (cldst/config/benchmarks.py names it) has ``load(cfg, progress)``; the
modules are imported on first use, so a run loads only its own benchmark's dependencies."""

from __future__ import annotations

import importlib

import torch

from cldst.config.benchmarks import BENCHMARKS
from cldst.data.base import DataError, ImageSplit

__all__ = ["DATA_SETTINGS", "DataError", "ImageSplit", "data_key", "load_benchmark", "class_order",
           "task_class_range"]

# Every setting that load_benchmark and the loaders read: runs equal in these load equal tensors
# (a pack loads them once for all such members; tests/test_pack.py checks the list against the code).
DATA_SETTINGS = ("dataset", "data_dir", "image_size", "class_order", "data_seed", "num_classes")


def data_key(cfg) -> tuple:
    return tuple(getattr(cfg, k) for k in DATA_SETTINGS)


def _load_source(cfg, progress: bool) -> ImageSplit:
    """The benchmark's loader, named in its registry entry: ``cldst.data.<module>.load(cfg, progress)``."""
    if cfg.dataset not in BENCHMARKS:
        raise DataError(f"unknown dataset {cfg.dataset!r}")
    return importlib.import_module(f"cldst.data.{BENCHMARKS[cfg.dataset].module}").load(cfg, progress)


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
