"""The training loop as a generator of steps: the learner (cldst/method/learner.py) yields a
StepRequest wherever a training step is due and is sent the step's result. ``drive`` computes each
step with the run's own trainer (one run alone); a pack (cldst/method/pack.py) computes the due
steps of several runs as one batched computation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Generator
from typing import Any

import torch

from cldst.method.task_trainer import TaskTrainer


@dataclasses.dataclass
class StepRequest:
    """A training step that is due: task t's ``trainer`` on the batch (x, y), y in 0..C-1."""

    t: int
    trainer: TaskTrainer
    x: torch.Tensor
    y: torch.Tensor


StepResult = tuple  # (loss, all logits, topology update or None), as TaskTrainer.step returns
StepGenerator = Generator[StepRequest, StepResult, Any]


def drive(steps: StepGenerator):
    """Run a generator of training steps (``run_steps``), each by its own trainer; return its value."""
    try:
        request = next(steps)
        while True:
            request = steps.send(request.trainer.step(request.x, request.y))
    except StopIteration as done:
        return done.value
