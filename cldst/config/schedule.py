"""A task's schedule in numbers, from the config alone: optimizer steps per epoch and the epochs
where the learning rate drops. The trainer, the TensorBoard axis and the cost estimate all read
these, so they count the same steps."""

from __future__ import annotations


def lr_milestones(epochs: int, drop_at_zero: bool = False) -> list[int]:
    """Epochs after which the learning rate is ×0.1: E/2 and 3E/4, as the original.

    A milestone of 0 is dropped, unless ``drop_at_zero`` (reference quirk): MultiStepLR applies it
    before the first step, so with E = 1 the original trains at lr/100 throughout.
    """
    return [m for m in (int(epochs / 2), int(epochs * 3 / 4)) if m > 0 or drop_at_zero]


def steps_per_epoch(n: int, batch_size: int, keep_last_batch: bool = False) -> int:
    """Optimizer steps per epoch over n images: full batches only (at least one), or with
    ``keep_last_batch`` (reference quirk) ceil(n / B), a last batch of one joining the one before."""
    if not keep_last_batch:
        return max(1, n // batch_size)
    return max(1, n // batch_size + (n % batch_size > 1))
