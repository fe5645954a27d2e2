"""The learner: for each task, draw a mask, train it with DST, merge, evaluate every task seen.

It computes and emits; it opens no file. Its observers (cldst/method/events.py) hear each step,
topology update, epoch and task end, and each save point with a snapshot to checkpoint; the
runner's observers write them (cldst/runner/). ``should_stop`` is asked after every step: when it
turns true the learner emits a "stop" save point and raises Preempted.

Randomness is drawn from one generator per task, seeded by (seed, task); a snapshot (a task
boundary, an epoch end, or the step where a stop was requested) holds every generator's state, so
a resumed run computes exactly what the uninterrupted run computes (cldst/method/task_state.py).
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from cldst.config import ConfigError, ExperimentConfig
from cldst.config.schedule import lr_milestones, steps_per_epoch
from cldst.data import ImageSplit, load_benchmark, task_class_range
from cldst.method.adaptive import choose_and_begin
from cldst.method.device import autocast, keep_freed_memory, select_device
from cldst.method.evaluation import Evaluator
from cldst.method.events import LearnerObserver, Observers, Preempted
from cldst.method.flops import TaskFlops, dense_forward_macs, layer_output_sizes, task_inference_macs
from cldst.method.masks import Backbone
from cldst.method.methods import SUBNETWORK_METHODS
from cldst.method.metrics import run_metrics
from cldst.method.models import build_model
from cldst.method.seeds import derived_seed, task_seed
from cldst.method.steps import StepGenerator, StepRequest, drive
from cldst.method.task_data import TaskImages
from cldst.method.task_state import RunState, TaskPosition, TaskRun, restore_task
from cldst.method.task_trainer import TaskTrainer, epoch_batches, epoch_permutation


class ContinualLearner:
    """Trains the tasks of one config in order, on one shared masked backbone.

    ``observers`` hear what it computes (cldst/method/events.py); ``should_stop`` is asked after
    every step; ``checkpoint`` (a snapshot from a save point) continues a run where it stopped.
    """

    def __init__(self, cfg: ExperimentConfig, *, data: ImageSplit | None = None,
                 observers: Sequence[LearnerObserver] = (), should_stop: Callable[[], bool] | None = None,
                 checkpoint: dict | None = None, progress: bool = True):
        self.cfg = cfg
        self.progress = progress
        self.observers = Observers(observers)
        self.should_stop = should_stop or (lambda: False)
        self.device = select_device(cfg.device)
        if self.device.type == "cpu":
            keep_freed_memory()
        data = data if data is not None else load_benchmark(cfg, progress)
        self.data_info = data.info
        self.images = TaskImages.on_device(data, cfg.num_tasks, cfg.num_classes_per_task, self.device,
                                           cfg.val_fraction, cfg.data_seed)
        torch.manual_seed(derived_seed(cfg.seed, 0))
        # channels_last on every device: oneDNN (CPU) and cuDNN both run NHWC convolutions faster
        model = build_model(cfg.arch, cfg.num_classes, data.train_x.shape[1], cfg.width)
        self.model = model.to(self.device, memory_format=torch.channels_last)
        self.forward = torch.compile(self.model) if cfg.compile else self.model
        self.backbone = Backbone(self.model)
        self.output_sizes = layer_output_sizes(self.model, tuple(data.train_x.shape[1:]))  # for the FLOPs count
        self.dense_macs = dense_forward_macs(self.model, self.output_sizes)
        self.autocast = functools.partial(autocast, self.device, cfg.amp)
        self.state = RunState(cfg.num_tasks)
        self.evaluator = Evaluator(self.model, self.forward, self.backbone, self.images, cfg, self.autocast,
                                   torch.Generator().manual_seed(derived_seed(cfg.seed, 2)))  # test_augment
        self.resume_task: dict | None = None  # a mid-task snapshot's task state
        if checkpoint is not None:
            self.restore(checkpoint)

    def steps_per_epoch(self, t: int) -> int:
        """Task t's optimizer steps per epoch, as epoch_batches yields them."""
        return steps_per_epoch(self.images.train_idx[t].numel(), self.cfg.batch_size, self.cfg.keep_last_batch)

    # ------------------------------------------------------------------ one task
    def train_task(self, t: int, resume: dict | None = None) -> None:
        """Train task t (from ``resume``, a mid-task snapshot's task state, if given) and merge it.
        With candidates, the task first chooses among them (cldst/method/adaptive.py)."""
        drive(self.task_steps(t, resume))

    def task_steps(self, t: int, resume: dict | None = None) -> StepGenerator:
        """``train_task`` as a generator of its training steps (see ``run_steps``)."""
        if resume is None and self.cfg.adaptive:
            task = choose_and_begin(self, t)
        else:
            task = self.begin_task(t, resume, choice=None if resume is None else resume.get("choice"))
        while task.pos.epoch < self.cfg.epochs:
            yield from self.epoch_steps(task)
        self.end_task(task)

    def begin_task(self, t: int, resume: dict | None = None, choice: dict | None = None,
                   probe: bool = False) -> TaskRun:
        """Draw task t's mask, start its weights, build its trainer and schedule (then overwrite
        them with ``resume``'s state, if given). ``choice``: the candidate's sparse_init, growth and
        density, over the config's; ``probe``: a candidate in a choice, which reports nothing."""
        cfg, bb = self.cfg if choice is None else self.cfg.fixed(choice), self.backbone
        gen = torch.Generator().manual_seed(task_seed(cfg.seed, t))
        torch.manual_seed(task_seed(cfg.seed, t))
        sl = task_class_range(t, cfg.num_classes_per_task)
        rule = SUBNETWORK_METHODS[cfg.method](cfg, bb, sl, gen)  # the method's hooks (cldst/method/subnetwork.py)
        mask = rule.draw_mask()
        if rule.shortfall and not probe:
            self._report_shortfall(t, rule.shortfall)
        bb.start_weights(mask, free_from_theta0=(t == 0 or cfg.free_init == "theta0"))
        total = self.steps_per_epoch(t) * cfg.epochs
        trainer = TaskTrainer(cfg, self.model, self.forward, bb, mask, sl, total, gen, self.autocast, rule)
        sched = torch.optim.lr_scheduler.MultiStepLR(
            trainer.optimizer, milestones=lr_milestones(cfg.epochs, cfg.lr_drop_at_zero), gamma=0.1)
        if resume is None:
            pos = TaskPosition(self.device)
        else:
            pos = restore_task(resume, self.model, trainer, sched, gen, self.device)
        flops = TaskFlops(bb.names, self.output_sizes, self.dense_macs, rule.flops_rule,
                          mask, total=pos.train_macs)
        self.model.train()
        bar = tqdm(total=total, initial=trainer.steps, desc=f"task {t + 1}/{cfg.num_tasks}", leave=False,
                   disable=not self.progress or probe, unit="step")
        # a candidate's history rows are its own, dropped with it
        history = [] if probe else self.state.history
        return TaskRun(t, sl, mask, trainer, sched, gen, pos, flops, total, time.perf_counter() - pos.elapsed, bar,
                       history, choice, probe)

    def train_epoch(self, task: TaskRun) -> None:
        """One epoch of the task (the rest of it, when resumed mid-epoch); emits a save point at its
        end and raises Preempted when a stop was requested."""
        drive(self.epoch_steps(task))

    def epoch_steps(self, task: TaskRun) -> StepGenerator:
        """``train_epoch`` as a generator of its training steps (see ``run_steps``)."""
        cfg, pos, trainer, t = self.cfg, task.pos, task.trainer, task.t
        idx = self.images.train_idx[t]
        n, bs, per_epoch = idx.numel(), cfg.batch_size, self.steps_per_epoch(t)
        epoch = pos.epoch
        if trainer.rule.before_epoch(epoch, trainer.isolation):
            task.flops.mask_changed()  # PackNet's prune
        if pos.perm is None:
            pos.perm = epoch_permutation(idx, task.generator)
        for x, y in epoch_batches(self.images.train_x, self.images.train_y, idx, bs, self.images.transform,
                                  task.generator, perm=pos.perm, start=pos.batch,
                                  keep_last_batch=cfg.keep_last_batch):
            y = y - task.classes.start
            loss, all_logits, update = yield StepRequest(t, trainer, x, y)
            self._record_step(task, epoch, y, loss, all_logits, update)
            if pos.batch < per_epoch and not task.probe and self.should_stop():
                pos.elapsed = time.perf_counter() - task.started
                self._stop(task, epoch, pos.batch)
        task.scheduler.step()
        count = n if cfg.keep_last_batch else per_epoch * min(n, bs)
        row = dict(kind="epoch", task=t, epoch=epoch, step=trainer.steps, loss=float(pos.loss_sum) / count,
                   train_acc=100.0 * float(pos.correct) / count, lr=trainer.optimizer.param_groups[0]["lr"],
                   seconds=time.perf_counter() - task.started)
        task.history.append(row)
        task.bar.set_postfix(epoch=f"{epoch + 1}/{cfg.epochs}", loss=f"{row['loss']:.3f}",
                             acc=f"{row['train_acc']:.1f}%")
        if cfg.keep_best_epoch and row["train_acc"] > pos.best_acc:
            pos.best_acc = row["train_acc"]
            pos.best_weights = [p.detach().clone() for p in self.model.parameters()]
            pos.best_mask = [m.clone() for m in task.mask]  # the original saves the mask with them
        pos.next_epoch()
        pos.elapsed = time.perf_counter() - task.started
        if task.probe:
            return
        self.observers.epoch(t, row, pos.seen, task.total, trainer.steps)
        if self.should_stop():
            self._stop(task, epoch + 1, 0)
        # after the last epoch the task's end follows: its save point is the one to resume from
        reason = "epoch" if pos.epoch < cfg.epochs else "last_epoch"
        self.observers.save_point(reason, self.state.history, lambda: self.snapshot(task))

    def _record_step(self, task: TaskRun, epoch: int, y: torch.Tensor, loss: torch.Tensor,
                     all_logits: torch.Tensor, update: dict | None) -> None:
        """What follows a step of the task's trainer: the dead-start report, FLOPs, history rows,
        running sums and observers."""
        cfg, pos, trainer, t = self.cfg, task.pos, task.trainer, task.t
        if trainer.steps == 1 and trainer.dead_start and not task.probe:
            self.report_dead_start(t)
        task.flops.step(y.numel(), update is not None)
        pos.train_macs = task.flops.total
        if update is not None:
            task.history.append(dict(kind="update", task=t, epoch=epoch, **update))
            if not task.probe:
                self.observers.update(t, update)
        pos.loss_sum += loss * y.numel()
        if cfg.eval_all_classes:  # the original's training accuracy: argmax over all classes
            pos.correct += (all_logits.argmax(1) == y + task.classes.start).sum()
        else:
            pos.correct += (all_logits[:, task.classes].argmax(1) == y).sum()
        pos.seen += y.numel()
        pos.batch += 1
        task.bar.update()
        if not task.probe:
            self.observers.step(t, epoch, trainer.steps, task.total, loss, pos.seen,
                                time.perf_counter() - task.started)

    def report_dead_start(self, t: int) -> None:
        self.state.dead_tasks.append(t)
        tqdm.write(f"cldst: warning: task {t + 1} starts dead (the features its head reads do not "
                   "depend on the input, or no masked weight gets a gradient): it cannot learn", file=sys.stderr)

    def end_task(self, task: TaskRun) -> None:
        """Restore the best epoch (reference quirk), merge the task, compute its BatchNorm
        statistics and record its time, capacity, FLOPs and layer densities."""
        cfg, bb, st, pos, t = self.cfg, self.backbone, self.state, task.pos, task.t
        task.bar.close()
        if pos.best_weights is not None:  # reference quirk: the best training-accuracy epoch's weights and mask
            with torch.no_grad():
                for p, w in zip(self.model.parameters(), pos.best_weights):
                    p.copy_(w)
                for m, b in zip(task.mask, pos.best_mask):
                    m.copy_(b)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - task.started
        task.trainer.rule.merge()
        if not cfg.eval_batch_stats:
            if not cfg.isolation:  # earlier tasks' weights have changed: their statistics too
                st.bn_stats[:] = [self.evaluator.task_statistics(j) for j in range(t)]
            st.bn_stats.append(self.evaluator.task_statistics(t))
        st.task_seconds.append(seconds)
        st.images_per_s.append(pos.seen / seconds)
        st.capacity.append(bb.capacity())
        # RigL's accounting (cldst/method/flops.py): dense training is 3 forward passes per example;
        # inference is the final mask's (keep_best_epoch may have restored an earlier one)
        inference, inference_vs_dense = task_inference_macs(bb, t, self.output_sizes)
        # with candidates, the losing candidates' training counts in the task's cost
        probe = next((c["probe_macs"] for c in st.choices if c["task"] == t), None)
        train = task.flops.total + (probe or 0.0)
        st.flops.append({"train_macs": train, "train_vs_dense": train / (3 * self.dense_macs * pos.seen),
                         "inference_macs": inference, "inference_vs_dense": inference_vs_dense,
                         **({} if probe is None else {"probe_macs": probe})})
        for name, d in bb.mask_densities(task.mask, None if cfg.shared_head_rows else task.classes).items():
            st.layer_density.setdefault(name, []).append(d)
        if task.trainer.topology.bandit is not None:
            st.growth_choices.append(task.trainer.topology.bandit.choices)

    # ------------------------------------------------------------------ evaluation (cldst/method/evaluation.py)
    def evaluate(self, j: int, mask_task: int | None = None) -> float:
        return self.evaluator.accuracy(j, self.state.bn_stats, mask_task)

    # ------------------------------------------------------------------ the loop
    def run(self, max_tasks: int | None = None) -> dict | None:
        """Train the remaining tasks. Returns the metrics, or None if stopped by ``max_tasks``."""
        return drive(self.run_steps(max_tasks))

    def run_steps(self, max_tasks: int | None = None) -> StepGenerator:
        """``run`` as a generator: it yields a StepRequest wherever a training step is due, is sent
        that step's result ``(loss, all logits, topology update)``, and returns what ``run``
        returns. ``drive`` runs it with the task's own trainer; a pack (cldst/method/pack.py)
        computes the steps of several runs at once."""
        cfg, st = self.cfg, self.state
        last = cfg.num_tasks if max_tasks is None else min(cfg.num_tasks, st.next_task + max_tasks)
        tasks = tqdm(range(st.next_task, last), desc="tasks", disable=not self.progress,
                     initial=st.next_task, total=cfg.num_tasks)
        for t in tasks:
            resume, self.resume_task = self.resume_task, None
            yield from self.task_steps(t, resume)
            if not cfg.final_model_matrix:
                for j in range(t + 1):
                    st.acc[t][j] = self.evaluate(j)
                tasks.set_postfix(acc=f"{np.mean(st.acc[t][: t + 1]):.1f}%")
            if cfg.val_fraction > 0:
                for j in range(t + 1):
                    st.val_acc[t][j] = self.evaluator.accuracy(j, st.bn_stats, split="val")
            st.next_task = t + 1
            self.observers.task_end(t, st.acc)
            self.observers.save_point("task", st.history, self.checkpoint)
            if self.should_stop() and st.next_task < cfg.num_tasks:
                raise Preempted(_stopped_at(t + 1, 0, 0))
        tasks.close()
        if st.next_task < cfg.num_tasks:
            return None
        if cfg.final_model_matrix:
            st.acc = self.evaluator.final_model_matrix(st.bn_stats)
            self.observers.task_end(cfg.num_tasks - 1, st.acc)
        return self.metrics()

    def metrics(self) -> dict:
        data_info = dict(self.data_info)
        if self.cfg.val_fraction > 0:
            data_info["val_images"] = [int(v.numel()) for v in self.images.val_idx]
        return run_metrics(self.cfg, self.state, self.backbone.task_masks, self.backbone.names, data_info,
                           str(self.device), torch.__version__)

    # ------------------------------------------------------------------ snapshots
    def checkpoint(self) -> dict:
        """The state at a task boundary: plain values and tensors only (read with weights_only)."""
        return {"config": self.cfg.to_dict(), "state": vars(self.state).copy(),
                "backbone": self.backbone.state_dict(), "eval_rng": self.evaluator.generator.get_state()}

    def snapshot(self, task: TaskRun) -> dict:
        """Mid-task: the task-boundary state plus the task's training state."""
        return {**self.checkpoint(), "task": task.snapshot(self.model)}

    def restore(self, saved: dict) -> None:
        """Continue from a snapshot (``checkpoint`` or ``snapshot``) of a run with the same settings."""
        if ExperimentConfig.from_dict(saved["config"]).run_id() != self.cfg.run_id():
            raise ConfigError("the checkpoint was written by a run with other settings; "
                              "resume with the same settings or choose another --out")
        self.backbone.load_state_dict(saved["backbone"])
        self.state = RunState(**saved["state"])
        self.state.bn_stats = [[(m.to(self.device), v.to(self.device)) for m, v in task]
                               for task in self.state.bn_stats]
        self.evaluator.generator.set_state(saved["eval_rng"])
        self.resume_task = saved.get("task")

    def _stop(self, task: TaskRun, epoch: int, batch: int) -> None:
        """A stop was requested: a "stop" save point, then Preempted."""
        self.observers.save_point("stop", self.state.history, lambda: self.snapshot(task))
        raise Preempted(_stopped_at(task.t, epoch, batch))

    def _report_shortfall(self, t: int, shortfall: dict[str, int]) -> None:
        """reuse none (or PackNet): a layer without enough free positions; said once per task, and recorded."""
        worst = max(shortfall, key=shortfall.get)
        self.state.reuse_shortfall.append({"task": t, **shortfall})
        why = "reuse=none" if self.cfg.method == "dst" else f"method={self.cfg.method}"
        tqdm.write(f"cldst: warning: {why}: task {t + 1} finds too few free positions in {len(shortfall)} "
                   f"layer(s) (most in {worst}: {shortfall[worst]} missing); its mask there is smaller",
                   file=sys.stderr)


def _stopped_at(t: int, epoch: int, batch: int) -> str:
    where = f"task {t + 1}, epoch {epoch + 1}" + (f", batch {batch + 1}" if batch else "")
    return f"stopped on request before {where}"
