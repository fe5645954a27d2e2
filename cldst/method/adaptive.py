"""Adaptive DST: each task chooses its sparse init, growth rule and density among the config's
candidates by successive halving on its validation images (cldst/data/validation.py).

For task t, every candidate starts from the same state: the backbone as the earlier tasks left it,
and the task's own seeds, exactly as a fixed run of that candidate would start. In each round,
every surviving candidate trains ``probe_epochs`` more epochs from where its last round ended
(its task state is kept between rounds, so it trains as if never interrupted), then is scored:
its mask is merged into a copy of the backbone, its BatchNorm statistics are computed and its
accuracy on task t's validation images is measured. The better half survives (ties: the earlier
candidate in the config's order); rounds go on until one is left, or until the survivors have
trained every epoch but the last. The winner continues to the task's full epoch budget.

With ``capacity_budget`` b > 0 (and several densities), a candidate whose score is within b points
of the round's best counts as no loss, and among those the sparsest ranks first: a task takes less than
the nominal density when validation shows it costs at most b, and leaves the rest to later tasks.

Losing candidates leave no trace: the backbone (frozen weights, owned positions, BatchNorm
statistics, biases) is restored before each candidate and before the winner goes on, and every
task draws from its own seeds, so later tasks are as after a fixed run of the winner. Their
training MACs are counted into the task's cost (``probe_macs``), and the choice's time into the
task's seconds. The test set is never read: a score is ``Evaluator.accuracy(..., split="val")``. Stop requests and events wait until the
choice is made (a run killed during it redoes it, deterministically, from the task boundary).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field


@dataclass
class Candidate:
    choice: dict  # sparse_init, growth, density
    saved: dict | None = None  # its task state after its last round
    scores: list = field(default_factory=list)  # validation accuracy after each round it trained
    train_macs: float = 0.0
    epochs: int = 0
    dead: bool = False

    def record(self) -> dict:
        return {**self.choice, "val_scores": list(self.scores), "epochs": self.epochs,
                "train_macs": self.train_macs, "dead_start": self.dead}


def ranked(candidates: list[Candidate], capacity_budget: float = 0.0) -> list[Candidate]:
    """Best first by last score; ties keep the config's order. Under a capacity budget, the
    candidates within ``capacity_budget`` of the best come first, sparsest first."""
    best = max(c.scores[-1] for c in candidates)

    def key(c: Candidate):
        within = capacity_budget > 0 and c.scores[-1] >= best - capacity_budget
        return (not within, c.choice["density"] if within else 0.0, -c.scores[-1])

    return sorted(candidates, key=key)  # stable


def successive_halving(candidates: list[Candidate], train_round, can_continue,
                       capacity_budget: float = 0.0) -> Candidate:
    """Rounds of ``train_round(c)`` for every survivor, keeping the better half (``ranked``),
    until one is left or ``can_continue(survivors)`` says no more round fits; returns the winner."""
    survivors = list(candidates)
    while True:
        for c in survivors:
            train_round(c)
        order = ranked(survivors, capacity_budget)
        if len(order) == 1 or not can_continue(order):
            return order[0]
        survivors = order[: math.ceil(len(order) / 2)]
        if len(survivors) == 1:
            return survivors[0]


def choose_and_begin(learner, t: int):
    """Choose task t's configuration among ``learner.cfg.choices()`` and return the winner's task,
    ready to train its remaining epochs (``learner.train_epoch``, then ``end_task``). Records the
    choice in ``learner.state.choices``."""
    cfg, bb = learner.cfg, learner.backbone
    began = time.perf_counter()
    start = copy.deepcopy(bb.state_dict())  # what every candidate starts from, and the winner goes on from
    candidates = [Candidate(choice) for choice in cfg.choices()]

    def train_round(c: Candidate) -> None:
        bb.load_state_dict(start)
        task = learner.begin_task(t, c.saved, choice=c.choice, probe=True)
        for _ in range(min(cfg.probe_epochs, cfg.epochs - 1 - task.pos.epoch)):
            learner.train_epoch(task)
        c.saved = copy.deepcopy(task.snapshot(learner.model))
        c.train_macs, c.epochs, c.dead = task.flops.total, task.pos.epoch, bool(task.trainer.dead_start)
        c.scores.append(_validation_score(learner, task))

    winner = successive_halving(candidates, train_round,
                                lambda survivors: survivors[0].epochs + cfg.probe_epochs <= cfg.epochs - 1,
                                cfg.capacity_budget)
    bb.load_state_dict(start)
    task = learner.begin_task(t, winner.saved, choice=winner.choice)
    task.started = began  # the task's time includes its choice
    learner.state.choices.append({"task": t, "chosen": dict(winner.choice),
                                  "candidates": [c.record() for c in candidates],
                                  "probe_macs": sum(c.train_macs for c in candidates if c is not winner)})
    if winner.dead:
        learner.report_dead_start(t)
    return task


def _validation_score(learner, task) -> float:
    """The candidate's accuracy on task t's validation images: merged into the backbone (restored
    by the next candidate), with its own BatchNorm statistics."""
    cfg, t = learner.cfg, task.t
    learner.backbone.merge(task.mask, nonzero_rule=cfg.keep_best_epoch, overwrite=not cfg.isolation)
    statistics = list(learner.state.bn_stats)
    if not cfg.eval_batch_stats:
        statistics.append(learner.evaluator.task_statistics(t))
    return learner.evaluator.accuracy(t, statistics, split="val")
