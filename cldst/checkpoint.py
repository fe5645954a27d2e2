"""Mid-task checkpoints and preemption: the state of a task in training, saved at epoch boundaries
(and when the run is told to stop) so that ``--resume`` continues exactly where it stopped.

A checkpoint holds tensors and plain values only (dicts, lists, tuples, tensors, numbers, strings,
None) and is read with ``torch.load(weights_only=True)``: a run folder from elsewhere cannot run code.

Exactness: everything that decides what the rest of the task computes is saved: the model's
parameters, optimizer and learning-rate scheduler state, the task's mask and fired set, the frozen-
weight multipliers (with ``grown_frozen_zero`` they depend on the task's past), the DST step count,
the best epoch's weights (``keep_best_epoch``), the task's generator (data order, augmentation, DST
draws), torch's global RNG (and CUDA's), the current epoch's permutation and the position in it,
and the epoch's running loss and accuracy sums. Resuming redoes the task's start (mask draw,
optimizer, scheduler) and then overwrites that state with the saved one, so a resumed run computes
bit for bit what the uninterrupted run computes (on the CPU; on a GPU as deterministic as cuDNN is).

Preemption (SIGTERM, SIGUSR1, or SIGUSR2, submitit's signal): the run finishes its current step,
writes a checkpoint of that step (mid-epoch: the permutation and position are saved) and stops
with :class:`Preempted`; ``cldst run`` then exits with code 0.
"""

from __future__ import annotations

import collections
import signal
import threading
import time
from pathlib import Path

import torch

STOP_SIGNALS = ("SIGTERM", "SIGUSR1", "SIGUSR2")
STOP_FILE = "STOP"  # in the run folder: a request to checkpoint and stop (submitit's checkpoint() writes it)


class Preempted(Exception):
    """The run stopped on request after writing a checkpoint; ``--resume`` continues it."""


class StopRequest:
    """Whether the run has been asked to stop: by a signal, or by a STOP file in the run folder
    (looked at every ``poll_s`` seconds, so a step costs one clock read)."""

    def __init__(self, stop_file: Path | None = None, poll_s: float = 2.0):
        self.reason: str | None = None
        self.stop_file = stop_file
        self.poll_s = poll_s
        self._next_poll = 0.0

    def __call__(self) -> bool:
        if self.reason is None and self.stop_file is not None and time.monotonic() >= self._next_poll:
            self._next_poll = time.monotonic() + self.poll_s
            if self.stop_file.exists():
                self.reason = f"{STOP_FILE} file"
        return self.reason is not None

    def _on_signal(self, signum, frame) -> None:
        self.reason = signal.Signals(signum).name

    def install(self) -> dict:
        """Catch the stop signals (main thread only). Returns the previous handlers, for :meth:`uninstall`."""
        previous: dict = {}
        if threading.current_thread() is not threading.main_thread():
            return previous
        for name in STOP_SIGNALS:
            sig = getattr(signal, name, None)
            if sig is not None:
                previous[sig] = signal.signal(sig, self._on_signal)
        return previous

    @staticmethod
    def uninstall(previous: dict) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class CheckpointTimer:
    """Epoch checkpoints at most every ``minutes`` (0: every epoch)."""

    def __init__(self, minutes: float = 0.0):
        self.seconds = 60.0 * minutes
        self.last = time.monotonic()

    def due(self) -> bool:
        return time.monotonic() - self.last >= self.seconds

    def written(self) -> None:
        self.last = time.monotonic()


class TaskPosition:
    """Where a task's training stands: epoch, batch within it, the epoch's permutation, its running
    sums, and the best epoch so far (keep_best_epoch)."""

    def __init__(self, device: torch.device):
        self.epoch, self.batch, self.perm = 0, 0, None
        self.loss_sum = torch.zeros((), device=device)
        self.correct = torch.zeros((), device=device, dtype=torch.long)
        self.best_acc, self.best_weights, self.best_mask = -1.0, None, None
        self.seen, self.elapsed = 0, 0.0
        self.train_macs = 0.0  # the task's training MACs so far (cldst/flops.py)

    def next_epoch(self) -> None:
        self.epoch, self.batch, self.perm = self.epoch + 1, 0, None
        self.loss_sum = torch.zeros_like(self.loss_sum)
        self.correct = torch.zeros_like(self.correct)


def task_state(t: int, pos: TaskPosition, model, trainer, sched, gen: torch.Generator) -> dict:
    """The task's training state, in plain values and tensors (see the module docstring)."""
    sched_state = sched.state_dict()
    sched_state["milestones"] = dict(sched_state["milestones"])  # a Counter is not weights_only-safe
    return {
        "task": t, "epoch": pos.epoch, "batch": pos.batch, "perm": pos.perm,
        "loss_sum": pos.loss_sum, "correct": pos.correct, "best_acc": pos.best_acc,
        "best_weights": pos.best_weights, "best_mask": pos.best_mask, "seen": pos.seen,
        "train_macs": pos.train_macs, "elapsed": pos.elapsed,
        "model": model.state_dict(), "optimizer": trainer.optimizer.state_dict(), "scheduler": sched_state,
        "mask": trainer.topology.masks, "fired": trainer.topology.fired,
        "train_mask": trainer.isolation.train_mask, "frozen_values": trainer.isolation.frozen_values,
        "steps": trainer.steps, "dead_start": trainer.dead_start,
        "generator": gen.get_state(), "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def restore_task(state: dict, model, trainer, sched, gen: torch.Generator, device: torch.device) -> TaskPosition:
    """Overwrite a freshly started task (mask drawn, trainer built) with a saved ``task_state``."""
    with torch.no_grad():
        for name, attr in (("mask", "masks"), ("fired", "fired")):
            for dst, src in zip(getattr(trainer.topology, attr), state[name]):
                dst.copy_(src)
        for name in ("train_mask", "frozen_values"):
            for dst, src in zip(getattr(trainer.isolation, name), state[name]):
                dst.copy_(src)
    model.load_state_dict(state["model"])
    trainer.optimizer.load_state_dict(state["optimizer"])
    sched_state = dict(state["scheduler"])
    sched_state["milestones"] = collections.Counter(sched_state["milestones"])
    sched.load_state_dict(sched_state)
    trainer.steps, trainer.dead_start = state["steps"], state["dead_start"]
    gen.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] is not None and torch.cuda.is_available() \
            and len(state["cuda_rng"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    pos = TaskPosition(device)
    pos.epoch, pos.batch = state["epoch"], state["batch"]
    pos.perm = None if state["perm"] is None else state["perm"].to(device)
    pos.loss_sum, pos.correct = state["loss_sum"].to(device), state["correct"].to(device)
    pos.best_acc = state["best_acc"]
    pos.best_weights = None if state["best_weights"] is None else [w.to(device) for w in state["best_weights"]]
    best_mask = state.get("best_mask")
    pos.best_mask = None if best_mask is None else [m.to(device) for m in best_mask]
    pos.seen, pos.elapsed = state["seen"], state["elapsed"]
    pos.train_macs = state.get("train_macs", 0.0)
    return pos


def request_stop(run_dir: str | Path, wait_s: float = 60.0, poll_s: float = 0.5) -> bool:
    """Ask the run in ``run_dir`` to checkpoint and stop (a STOP file), and wait up to ``wait_s``
    for it to say so in progress.json. Returns whether it did (or had finished already)."""
    import json

    run_dir = Path(run_dir)
    asked = time.time()
    (run_dir / STOP_FILE).touch()
    deadline = time.monotonic() + wait_s
    while True:
        try:
            progress = json.loads((run_dir / "progress.json").read_text())
        except (OSError, ValueError):
            progress = {}
        if (run_dir / "metrics.json").is_file() or (
                progress.get("status") in ("preempted", "failed") and progress.get("updated", 0) >= asked - 5):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll_s)


class RequeueableRun:
    """The Slurm job's callable, checkpointable by submitit: on Slurm's signal before the time limit
    (or a preemption), :meth:`checkpoint` asks the run to checkpoint its current step and stop, then
    returns a submission of itself, which submitit requeues; the requeued job resumes the run."""

    def __init__(self, wait_s: float = 60.0):
        self.wait_s = wait_s

    def __call__(self, job) -> str | None:
        from .sweep import execute_run

        return execute_run(job)

    def checkpoint(self, job):
        from submitit.helpers import DelayedSubmission

        request_stop(job.run_dir, self.wait_s)
        return DelayedSubmission(self, job)
