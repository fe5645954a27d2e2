"""Independent random streams of a run, derived from its seed."""

from __future__ import annotations

import numpy as np


def derived_seed(seed: int, *stream: int) -> int:
    """Independent seeds per purpose: model init (0,), task t (1, t), evaluation (2,) and the order
    of task t's BatchNorm-statistics pass (3, t).

    Masks must not be drawn from the same stream as the initial weights: with equal seeds a
    top-k mask of uniform scores would keep exactly the largest initial weights.
    """
    return int(np.random.SeedSequence((seed, *stream)).generate_state(1, np.uint64)[0] >> 1)


def task_seed(seed: int, task: int) -> int:
    return derived_seed(seed, 1, task)
