"""TensorBoard events for one run (``cldst run --tensorboard``, ``run_experiment(..., tensorboard=True)``).

Written to ``<run folder>/tensorboard/``; view with ``tensorboard --logdir <run folder>/tensorboard``
(or a sweep's root, for every run side by side). Off by default; like every observer it only reads
what the run computes, so a run with it gives the same results and has the same run id.

Tags, all on one x axis, the **global optimizer step**: the task's own step plus the steps of every
earlier task (``offset[t] = Σ_{i<t} steps_per_task[i]``, each task's steps known before training, so
a resumed run continues on the same axis):

- ``train/loss``, ``train/acc``, ``train/lr``: at each epoch end (the epoch's history row);
- ``topology/prune_rate``, ``topology/regrown``: at each topology update (``regrown_new``);
- ``acc/task_<j>`` (j = 1..t+1) and ``acc/ACC`` (their mean): the accuracy-matrix row A[t][·] after
  task t, at the step that ends task t. With ``final_model_matrix`` only the last row is evaluated,
  so only it is written.

A run resumed from a checkpoint writes the epochs it repeats again, at the same steps.

The ``tensorboard`` package (``pip install 'cldst[tensorboard]'``) is imported only when the observer
is made; without it :func:`summary_writer_class` raises a one-line :class:`ConfigError`.
"""

from __future__ import annotations

from pathlib import Path

from cldst.config import ConfigError
from cldst.method.events import LearnerObserver

MISSING = "--tensorboard needs the tensorboard package: pip install tensorboard"


def summary_writer_class():
    """``torch.utils.tensorboard.SummaryWriter``, imported now; a ConfigError if tensorboard is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:
        raise ConfigError(MISSING) from e
    return SummaryWriter


def steps_per_task(learner) -> list[int]:
    """Each task's optimizer steps, as ContinualLearner.train_task counts them."""
    return [learner.steps_per_epoch(t) * learner.cfg.epochs for t in range(learner.cfg.num_tasks)]


class TensorBoardLog(LearnerObserver):
    """Scalars for TensorBoard; the writer (and its folder) is made at the first event."""

    # () -> a class taking ``log_dir=`` with add_scalar, flush, close; tests replace it with a stub
    writer_factory = staticmethod(summary_writer_class)

    def __init__(self, log_dir: str | Path, steps: list[int] | None = None):
        self.log_dir = Path(log_dir)
        self.writer_class = type(self).writer_factory()  # fails here, before any training
        self.writer = None
        self.offsets: list[int] = []
        if steps is not None:
            self.set_steps(steps)

    def set_steps(self, steps: list[int]) -> None:
        """Each task's step count (:func:`steps_per_task`): the offsets of the global step."""
        self.offsets = [sum(steps[:t]) for t in range(len(steps) + 1)]

    def _scalar(self, tag: str, value, step: int) -> None:
        if self.writer is None:
            self.writer = self.writer_class(log_dir=str(self.log_dir))
        self.writer.add_scalar(tag, float(value), step)

    def epoch(self, t, row, seen, total, steps) -> None:
        step = self.offsets[t] + row["step"]
        self._scalar("train/loss", row["loss"], step)
        self._scalar("train/acc", row["train_acc"], step)
        self._scalar("train/lr", row["lr"], step)
        self.writer.flush()

    def update(self, t, update) -> None:
        step = self.offsets[t] + update["step"]
        self._scalar("topology/prune_rate", update["prune_rate"], step)
        self._scalar("topology/regrown", update["regrown_new"], step)

    def task_end(self, t, acc) -> None:
        row = [(j, a) for j, a in enumerate(acc[t][: t + 1]) if a is not None]
        if not row:  # final_model_matrix: not evaluated yet
            return
        step = self.offsets[t + 1]
        for j, a in row:
            self._scalar(f"acc/task_{j + 1}", a, step)
        self._scalar("acc/ACC", sum(a for _, a in row) / len(row), step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
