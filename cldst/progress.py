"""Watching runs: observers of a run's training (progress.json, TensorBoard) and a sweep's status.

``progress.json`` in a run folder says where a run stands: task, epoch, step, the latest loss and
training accuracy, images/s and an estimate of the time left. It is rewritten (atomically) at every
epoch end and otherwise at most every ``every_s`` seconds (default 60), and once more when the run
finishes or stops. Observers only read what the run computes: they never change it.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from .runs import METRICS, atomic_write_json

PROGRESS = "progress.json"


class RunObserver:
    """Called by the task loop; every method is a no-op here."""

    def step(self, t: int, epoch: int, steps: int, total: int, loss, seen: int, elapsed: float) -> None:
        """After each step of task t (``loss`` a tensor: read it only when needed, it syncs the GPU)."""

    def epoch(self, t: int, row: dict, seen: int, total: int, steps: int) -> None:
        """After each epoch, with its history row (loss, train_acc, lr, ...)."""

    def update(self, t: int, update: dict) -> None:
        """After each topology update (step, prune_rate, regrown_new)."""

    def task_end(self, t: int, acc: list) -> None:
        """After task t is evaluated, with the accuracy matrix so far."""

    def stopped(self, status: str) -> None:
        """The run finished or was preempted."""

    def close(self) -> None:
        pass


class Observers(RunObserver):
    """Several observers as one: every call goes to each, in order."""

    def __init__(self, observers: list[RunObserver]):
        self.observers = observers

    def step(self, *args) -> None:
        for o in self.observers:
            o.step(*args)

    def epoch(self, *args) -> None:
        for o in self.observers:
            o.epoch(*args)

    def update(self, *args) -> None:
        for o in self.observers:
            o.update(*args)

    def task_end(self, *args) -> None:
        for o in self.observers:
            o.task_end(*args)

    def stopped(self, *args) -> None:
        for o in self.observers:
            o.stopped(*args)

    def close(self) -> None:
        for o in self.observers:
            o.close()


class ProgressFile(RunObserver):
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


# ---------------------------------------------------------------------- a sweep's status
@dataclass
class SweepStatus:
    finished: list[str] = field(default_factory=list)
    running: list[tuple[str, dict]] = field(default_factory=list)  # run id, its progress.json
    queued: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # run id, error line

    def lines(self) -> list[str]:
        out = [f"{len(self.finished)} finished, {len(self.running)} running, {len(self.queued)} queued, "
               f"{len(self.failed)} failed"]
        for run_id, p in self.running:
            out.append(f"running {run_id}: {describe_progress(p)}")
        for run_id, error in self.failed:
            out.append(f"failed {run_id}: {error}")
        return out


def describe_progress(p: dict) -> str:
    if not p:
        return "starting"
    parts = [f"task {p.get('task', '?')}/{p.get('num_tasks', '?')}", f"epoch {p.get('epoch', '?')}/{p.get('epochs', '?')}",
             f"step {p.get('step', '?')}/{p.get('steps_per_task', '?')}"]
    if p.get("loss") is not None:
        parts.append(f"loss {p['loss']:.3f}")
    if p.get("train_acc") is not None:
        parts.append(f"acc {p['train_acc']:.1f}%")
    if p.get("images_per_s"):
        parts.append(f"{p['images_per_s']:.0f} img/s")
    if p.get("eta_s") is not None:
        parts.append(f"ETA {_duration(p['eta_s'])}")
    if p.get("status") == "preempted":
        parts.append("preempted (resumes when rerun)")
    if p.get("updated"):
        parts.append(f"updated {_duration(time.time() - p['updated'])} ago")
    return ", ".join(parts)


def _duration(seconds: float) -> str:
    minutes, s = divmod(int(max(seconds, 0)), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours} h {m:02d} min" if hours else f"{m} min {s:02d} s"


def sweep_status(run_dirs: dict[str, Path], error_of) -> SweepStatus:
    """Each run's state from its folder: finished (metrics.json), failed (``error_of(run_dir)``
    gives an error line: the run's notebook or log recorded an error), running (progress.json or an
    executed notebook, no error), queued (nothing yet)."""
    status = SweepStatus()
    for run_id, path in run_dirs.items():
        path = Path(path)
        if (path / METRICS).is_file():
            status.finished.append(run_id)
            continue
        error = error_of(path)
        progress = read_json(path / PROGRESS)
        if error is not None and progress.get("status") not in ("running", "preempted"):
            status.failed.append((run_id, error))
        elif progress or any(path.glob("*")):
            status.running.append((run_id, progress))
        else:
            status.queued.append(run_id)
    return status


def read_json(path: Path) -> dict:
    """A JSON file's object, or {} if it is missing or half-written."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def grid_status(grid, notebook: str | Path | None = None) -> SweepStatus:
    """Finished, running, queued and failed runs of the grid, from its folder (cldst/progress.py)."""
    from .sweep import NOTEBOOK, RUN_LOG, _log_error, make_job, run_error

    notebook = Path(notebook or NOTEBOOK)
    jobs = {j.run_id: j for j in (make_job(cfg, grid.root, notebook) for cfg in grid.configs)}

    def error_of(path: Path) -> str | None:
        job = jobs[path.name]
        if job.output.is_file():
            return run_error(job)
        log = path / RUN_LOG
        if log.is_file() and "Error" in log.read_text(errors="replace"):
            return _log_error(job, -1)
        return None

    return sweep_status({rid: Path(j.run_dir) for rid, j in jobs.items()}, error_of)
