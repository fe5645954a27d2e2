"""Observers that write what the learner emits, into the run folder: history.csv and checkpoint.pt
at save points (RunFolderWriter), and progress.json (ProgressFile).

``progress.json`` says where a run stands: task, epoch, step, the latest loss and training accuracy,
images/s and an estimate of the time left. It is rewritten (atomically) at every epoch end and
otherwise at most every ``every_s`` seconds (default 60), and once more when the run finishes or
stops. Observers only read what the run computes: they never change it.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from cldst.method.events import LearnerObserver
from cldst.runner.run_dir import PROGRESS, RunDir, atomic_write_json


class CheckpointTimer:
    """Epoch checkpoints at most every ``minutes`` (0: every epoch)."""

    def __init__(self, minutes: float = 0.0):
        self.seconds = 60.0 * minutes
        self.last = time.monotonic()

    def due(self) -> bool:
        return time.monotonic() - self.last >= self.seconds

    def written(self) -> None:
        self.last = time.monotonic()


class RunFolderWriter(LearnerObserver):
    """history.csv at every save point; checkpoint.pt at every task end and stop, and at the epoch
    ends within a task at most every ``checkpoint_minutes`` (0: every epoch)."""

    def __init__(self, run_dir: RunDir, checkpoint_minutes: float = 0.0):
        self.run_dir = run_dir
        self.timer = CheckpointTimer(checkpoint_minutes)

    def save_point(self, reason: str, history: list[dict], snapshot) -> None:
        self.run_dir.write_history(history)
        if reason in ("task", "stop") or (reason == "epoch" and self.timer.due()):
            self.run_dir.write_checkpoint(snapshot())
            self.timer.written()


class ProgressFile(LearnerObserver):
    """Keeps ``run_dir/progress.json`` up to date."""

    def __init__(self, run_dir: Path, num_tasks: int, epochs: int, every_s: float = 60.0,
                 clock=time.monotonic):
        self.path = Path(run_dir) / PROGRESS
        self.num_tasks, self.epochs, self.every_s, self.clock = num_tasks, epochs, every_s, clock
        self.last = -float("inf")
        self.info: dict = {"status": "running", "pid": os.getpid(), "host": socket.gethostname()}

    def step(self, t, epoch, steps, total, loss, seen, elapsed) -> None:
        if self.clock() - self.last >= self.every_s:
            self.info["loss"] = float(loss)
            self._position(t, epoch, steps, total, seen, elapsed)
            self.write()

    def epoch(self, t, row, seen, total, steps) -> None:
        self.info.update(loss=row["loss"], train_acc=row["train_acc"], lr=row["lr"])
        self._position(t, row["epoch"] + 1, steps, total, seen, row["seconds"])
        self.write()

    def _position(self, t, epoch, steps, total, seen, elapsed) -> None:
        rate = steps / elapsed if elapsed > 0 else None  # steps per second, this task
        left = (total - steps) + (self.num_tasks - t - 1) * total  # steps left in the run
        self.info.update(task=t + 1, num_tasks=self.num_tasks, epoch=epoch, epochs=self.epochs,
                         step=steps, steps_per_task=total,
                         images_per_s=seen / elapsed if elapsed > 0 else None,
                         eta_s=left / rate if rate else None)

    def stopped(self, status: str) -> None:
        self.info["status"] = status
        self.write()

    def write(self) -> None:
        self.last = self.clock()
        self.info["updated"] = time.time()
        atomic_write_json(self.path, self.info)
