"""A run's state and a task in training, as plain values and tensors. RunState: everything a run has
produced so far. A task in training: where it stands (epoch, batch, the epoch's
permutation, running sums, the best epoch) and everything that decides what the rest of the task
computes, so that a resumed task computes bit for bit what the uninterrupted one computes.

The state holds tensors and plain values only (dicts, lists, tuples, tensors, numbers, strings,
None), so it can be read with ``torch.load(weights_only=True)``: a run folder from elsewhere cannot
run code. Saved: the model's parameters, optimizer and learning-rate scheduler state, the task's
mask and fired set, the frozen-weight multipliers (with ``grown_frozen_zero`` they depend on the
task's past), the DST step count, the best epoch's weights and mask (``keep_best_epoch``), the
task's generator (data order, augmentation, DST draws), torch's global RNG (and CUDA's), the
current epoch's permutation and the position in it, and the epoch's running loss and accuracy
sums, and a method's own state (cldst/method/subnetwork.py). Resuming redoes the task's start (mask draw, optimizer, scheduler) and then overwrites that
state with the saved one (on the CPU bit for bit; on a GPU as deterministic as cuDNN is).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from cldst.method.flops import TaskFlops
from cldst.method.task_trainer import TaskTrainer


@dataclass
class RunState:
    """Everything a run has produced so far; saved in the checkpoint at each task boundary."""

    num_tasks: int
    next_task: int = 0
    acc: list = field(default_factory=list)
    capacity: list = field(default_factory=list)
    layer_density: dict = field(default_factory=dict)
    task_seconds: list = field(default_factory=list)
    images_per_s: list = field(default_factory=list)
    history: list = field(default_factory=list)
    dead_tasks: list = field(default_factory=list)  # tasks whose network could not learn at step 1
    bn_stats: list = field(default_factory=list)  # per task: each BN layer's (mean, var); clean only
    reuse_shortfall: list = field(default_factory=list)  # reuse none: per task, positions a layer lacked
    flops: list = field(default_factory=list)  # per task: training and inference MACs, and vs dense
    growth_choices: list = field(default_factory=list)  # growth bandit: per task, each update's rule and reward
    choices: list = field(default_factory=list)  # candidates: per task, every candidate's scores and the choice
    val_acc: list = field(default_factory=list)  # val_fraction > 0: A_val[i][j], task j's validation images after task i

    def __post_init__(self) -> None:
        if not self.acc:
            self.acc = [[None] * self.num_tasks for _ in range(self.num_tasks)]
        if not self.val_acc:
            self.val_acc = [[None] * self.num_tasks for _ in range(self.num_tasks)]



class TaskPosition:
    """Where a task's training stands: epoch, batch within it, the epoch's permutation, its running
    sums, and the best epoch so far (keep_best_epoch)."""

    def __init__(self, device: torch.device):
        self.epoch, self.batch, self.perm = 0, 0, None
        self.loss_sum = torch.zeros((), device=device)
        self.correct = torch.zeros((), device=device, dtype=torch.long)
        self.best_acc, self.best_weights, self.best_mask = -1.0, None, None
        self.seen, self.elapsed = 0, 0.0
        self.train_macs = 0.0  # the task's training MACs so far (cldst/method/flops.py)

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
        # growth bandit: its plays, rewards and choices, and what the last update grew
        "bandit": None if trainer.topology.bandit is None else trainer.topology.bandit.state_dict(),
        "grown": trainer.topology.grown,
        # the method's own state (PackNet's phase; SupSup's and WSN's scores and weights; DST: none)
        "method": trainer.rule.state_dict(),
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
    if state.get("bandit") is not None:
        trainer.topology.bandit.load_state_dict(state["bandit"])
        with torch.no_grad():
            for dst, src in zip(trainer.topology.grown, state["grown"]):
                dst.copy_(src)
    if state.get("method") is not None:
        trainer.rule.load_state_dict(state["method"])
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


@dataclass
class TaskRun:
    """One task in training: what begin_task sets up and the epochs and end_task use."""

    t: int
    classes: slice
    mask: list[torch.Tensor]
    trainer: TaskTrainer
    scheduler: torch.optim.lr_scheduler.MultiStepLR
    generator: torch.Generator
    pos: TaskPosition
    flops: TaskFlops
    total: int  # optimizer steps of the whole task
    started: float  # perf_counter at the start, less the time a resumed task had already spent
    bar: tqdm
    history: list  # where its history rows go: the run's, or a candidate's own (adaptive.py)
    choice: dict | None = None  # candidates: the sparse_init, growth and density this task trains with
    probe: bool = False  # a candidate of a choice (cldst/method/adaptive.py): no events, no stop checks

    def snapshot(self, model: torch.nn.Module) -> dict:
        return {**task_state(self.t, self.pos, model, self.trainer, self.scheduler, self.generator),
                "choice": self.choice}
