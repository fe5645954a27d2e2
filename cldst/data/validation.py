"""A validation split held out of each task's training images: class-balanced and drawn from the
data seed alone, so every run with the same data, ``data_seed`` and ``val_fraction`` holds out the
same images and trains on the same rest, whatever method or setting it runs. Choices a method
makes read these images; the test set is never part of them.
"""

from __future__ import annotations

import numpy as np
import torch

VALIDATION_STREAM = 4  # the data seed's stream for the hold-out (cldst/method/seeds.py lists the run's)


def held_out_count(n: int, fraction: float) -> int:
    """Images of one class held out: round(fraction · n), at least 1 when fraction > 0, and at
    least one image always left to train on."""
    if fraction <= 0 or n < 2:
        return 0
    return min(n - 1, max(1, round(fraction * n)))


def hold_out(labels: torch.Tensor, idx: torch.Tensor, fraction: float, data_seed: int,
             task: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``idx`` (one task's training images, indices into ``labels``) into (train, validation).

    Per class, ``held_out_count`` images at random (seeded by data_seed and the task) go to
    validation; both parts keep ``idx``'s order. With ``fraction`` 0, train is ``idx`` itself."""
    if fraction <= 0:
        return idx, idx[:0]
    seed = int(np.random.SeedSequence((data_seed, VALIDATION_STREAM, task)).generate_state(1, np.uint64)[0] >> 1)
    gen = torch.Generator().manual_seed(seed)
    y = labels[idx].cpu()
    val = torch.zeros(idx.numel(), dtype=torch.bool)
    for c in torch.unique(y).tolist():  # sorted: the draw does not depend on the image order's classes
        members = torch.nonzero(y == c).squeeze(1)
        k = held_out_count(members.numel(), fraction)
        val[members[torch.randperm(members.numel(), generator=gen)[:k]]] = True
    val = val.to(idx.device)
    return idx[~val], idx[val]
