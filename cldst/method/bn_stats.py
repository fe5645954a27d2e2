"""Per-task BatchNorm statistics, so that evaluation does not depend on how a test set is batched.

Every BatchNorm of the backbones has ``affine=False, track_running_stats=False``: training always
normalises with the batch's statistics. At evaluation the original code does too, so a test
image's prediction depends on the other images in its batch (on a test set sorted by class, a
batch in index order holds two or three classes, and accuracy moves by tens of points).

The clean protocol instead computes, after task t, every BN layer's mean and variance with m_t on
task t's training images (no augmentation, one pass in a fixed order) and evaluates task j with
its own statistics: accuracy is then a function of the model and the image alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

Stats = list[tuple[torch.Tensor, torch.Tensor]]  # per BN layer, in module order: (mean, var)


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def compute_statistics(model: nn.Module, forward: Callable[[torch.Tensor], torch.Tensor],
                       batches: Iterable[torch.Tensor]) -> Stats:
    """Each BN layer's per-channel mean and (biased) variance of its inputs over all ``batches``.

    The pass runs in training mode, so every layer normalises with batch statistics as it did in
    training; sums are accumulated in float64 over every image and pixel.
    """
    layers = batchnorm_layers(model)
    sums: list[list[torch.Tensor | float]] = [[0.0, 0.0, 0.0] for _ in layers]

    def hook(i: int):
        def record(_module, inputs):
            x = inputs[0].detach().double()
            dims = [d for d in range(x.dim()) if d != 1]
            acc = sums[i]
            acc[0] = acc[0] + x.sum(dims)
            acc[1] = acc[1] + x.square().sum(dims)
            acc[2] += x.numel() / x.shape[1]
        return record

    handles = [m.register_forward_pre_hook(hook(i)) for i, m in enumerate(layers)]
    was_training = model.training
    model.train()
    try:
        for x in batches:
            forward(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    stats = []
    for s, sq, n in sums:
        mean = s / n
        var = (sq / n - mean.square()).clamp_min_(0)
        stats.append((mean.float(), var.float()))
    return stats


@contextmanager
def using_statistics(model: nn.Module, stats: Stats) -> Iterator[None]:
    """Within the block, BN layers in eval mode normalise with ``stats`` instead of the batch's.

    A BN layer without running statistics uses the batch's; setting its running-statistics
    buffers makes eval mode use them. Training mode still uses the batch's (the layer does not
    track running statistics), and the buffers are removed again on exit.
    """
    layers = batchnorm_layers(model)
    if len(layers) != len(stats):
        raise ValueError(f"{len(stats)} statistics for {len(layers)} BatchNorm layers")
    try:
        for m, (mean, var) in zip(layers, stats):
            m.running_mean, m.running_var = mean, var
        yield
    finally:
        for m in layers:
            m.running_mean, m.running_var = None, None
