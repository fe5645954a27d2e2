"""What the learner tells the world while it trains: observer callbacks, and the stop it raises.

The learner computes and emits; observers (cldst/runner/observers.py: history, checkpoints,
progress.json; TensorBoard) write. An observer only reads what the run computes: a run with or
without observers computes the same.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence


class Preempted(Exception):
    """The run stopped on request at a save point; ``--resume`` continues it from its checkpoint."""


class LearnerObserver:
    """Called by the learner; every method is a no-op here."""

    def step(self, t: int, epoch: int, steps: int, total: int, loss, seen: int, elapsed: float) -> None:
        """After each step of task t (``loss`` a tensor: read it only when needed, it syncs the GPU)."""

    def epoch(self, t: int, row: dict, seen: int, total: int, steps: int) -> None:
        """After each epoch, with its history row (loss, train_acc, lr, ...)."""

    def update(self, t: int, update: dict) -> None:
        """After each topology update (step, prune_rate, regrown_new)."""

    def task_end(self, t: int, acc: list) -> None:
        """After task t is evaluated, with the accuracy matrix so far."""

    def save_point(self, reason: str, history: list[dict], snapshot: Callable[[], dict]) -> None:
        """A point the run may be resumed from. ``reason``: "epoch" (an epoch ended and the task goes
        on), "last_epoch" (a task's last epoch ended: its end follows, nothing to resume from yet),
        "task" (a task ended and was evaluated) or "stop" (a stop was requested; Preempted follows).
        ``snapshot()`` builds the checkpoint (plain values and tensors, cldst/method/task_state.py);
        ``history`` is every history row so far."""

    def stopped(self, status: str) -> None:
        """The run finished ("finished"), was preempted ("preempted") or failed ("failed")."""

    def close(self) -> None:
        pass


class Observers(LearnerObserver):
    """Several observers as one: every call goes to each, in order."""

    def __init__(self, observers: Sequence[LearnerObserver] = ()):
        self.observers = list(observers)

    def _each(self, hook: str, args: tuple) -> None:
        for o in self.observers:
            getattr(o, hook)(*args)

    def step(self, *args) -> None:
        self._each("step", args)

    def epoch(self, *args) -> None:
        self._each("epoch", args)

    def update(self, *args) -> None:
        self._each("update", args)

    def task_end(self, *args) -> None:
        self._each("task_end", args)

    def save_point(self, *args) -> None:
        self._each("save_point", args)

    def stopped(self, *args) -> None:
        self._each("stopped", args)

    def close(self) -> None:
        self._each("close", ())
