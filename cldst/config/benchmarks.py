"""The benchmarks: one entry each, the one source of a benchmark's defaults, size and loader.

``defaults`` are the original code's per-benchmark values (docs/reference-protocol.md), split-mnist's
at smoke scale; a config field left None takes them. ``module`` names the loader in cldst/data/
(``cldst.data.<module>.load``); ``train_per_class`` is what cldst/data loads, for the cost estimate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Benchmark:
    name: str
    num_classes: int  # classes in the dataset; a run may use the first ones
    module: str  # cldst/data/<module>.py, whose ``load(cfg, progress)`` reads it
    train_per_class: int  # training images per class, as cldst/data loads them
    image_sizes: tuple[int, ...]  # the allowed image_size values, pixels per side; () any
    defaults: dict[str, Any] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()  # other spellings (the original README's and code's)


BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in (
    Benchmark("split-mnist", 10, "mnist", 400, (28,),
              dict(num_tasks=5, arch="resnet18", width=0.5, batch_size=16, epochs=3, density=0.2,
                   update_frequency=10, image_size=28),
              ("mnist", "splitmnist", "split_mnist")),
    Benchmark("cifar100", 100, "cifar100", 500, (32,),
              dict(num_tasks=10, arch="mobilenetv2", width=1.0, batch_size=64, epochs=20, density=0.2,
                   update_frequency=400, image_size=32),
              ("cifar-100",)),
    Benchmark("miniimagenet", 100, "miniimagenet", 500, (),  # any size: decoded and resized once
              dict(num_tasks=10, arch="resnet18", width=1.0, batch_size=128, epochs=100, density=0.1,
                   update_frequency=50, image_size=32),
              ("miniimagenet100", "mini-imagenet")),
    Benchmark("tinyimagenet", 200, "tinyimagenet", 500, (32, 64),
              dict(num_tasks=10, arch="resnet18", width=1.0, batch_size=128, epochs=100, density=0.1,
                   update_frequency=50, image_size=32),
              ("tiny-imagenet", "tiny_imagenet", "tiny-imagenet-200", "tinyimagenet200")),
    Benchmark("cifar10", 10, "cifar10", 5000, (32,),
              dict(num_tasks=5, arch="resnet18", width=1.0, batch_size=64, epochs=20, density=0.2,
                   update_frequency=100, image_size=32),
              ("cifar-10", "cifar_10")),
)}

DATASETS = tuple(BENCHMARKS)


def benchmark(name: str) -> Benchmark:
    return BENCHMARKS[name]
