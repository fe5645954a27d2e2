"""The task loop: for each task, draw a mask, train it with DST, merge, evaluate every task seen.

Randomness is drawn from one generator per task, seeded by (seed, task), so a run resumed at a
task boundary computes exactly what the uninterrupted run computes.
"""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from . import metrics as M
from .bn_stats import compute_statistics, using_statistics
from .config import ConfigError, ExperimentConfig
from .data import ImageSplit, load_benchmark, task_class_range
from .data.transforms import BatchTransform
from .host_memory import keep_freed_memory
from .masks import Backbone
from .models import build_model
from .runs import RunDir
from .task_trainer import TaskTrainer, epoch_batches, lr_milestones, make_optimizer  # noqa: F401


def select_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={name!r} is not allowed: no CUDA GPU is visible; use cpu or auto")
    return torch.device(name)


def derived_seed(seed: int, *stream: int) -> int:
    """Independent seeds per purpose: model init (0,), task t (1, t), evaluation (2,) and the order
    of task t's BatchNorm-statistics pass (3, t).

    Masks must not be drawn from the same stream as the initial weights: with equal seeds a
    top-k mask of uniform scores would keep exactly the largest initial weights.
    """
    return int(np.random.SeedSequence((seed, *stream)).generate_state(1, np.uint64)[0] >> 1)


def task_seed(seed: int, task: int) -> int:
    return derived_seed(seed, 1, task)


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

    def __post_init__(self) -> None:
        if not self.acc:
            self.acc = [[None] * self.num_tasks for _ in range(self.num_tasks)]


class ContinualLearner:
    """Trains the tasks of one config in order, on one shared masked backbone."""

    def __init__(self, cfg: ExperimentConfig, progress: bool = True, data: ImageSplit | None = None):
        self.cfg = cfg
        self.progress = progress
        self.device = select_device(cfg.device)
        if self.device.type == "cpu":
            keep_freed_memory()
        data = data if data is not None else load_benchmark(cfg, progress)
        self.data_info = data.info
        dev = self.device
        self.train_x, self.train_y = data.train_x.to(dev), data.train_y.to(dev)
        self.test_x, self.test_y = data.test_x.to(dev), data.test_y.to(dev)
        self.transform = BatchTransform(data.mean, data.std, dev, pad=4, hflip=data.hflip)
        self.train_idx, self.test_idx = [], []
        for t in range(cfg.num_tasks):
            sl = task_class_range(t, cfg.num_classes_per_task)
            self.train_idx.append(self._indices(self.train_y, sl))
            self.test_idx.append(self._indices(self.test_y, sl))
        torch.manual_seed(derived_seed(cfg.seed, 0))
        # channels_last on every device: oneDNN (CPU) and cuDNN both run NHWC convolutions faster
        model = build_model(cfg.arch, cfg.num_classes, data.train_x.shape[1], cfg.width)
        model = model.to(dev, memory_format=torch.channels_last)
        self.model = model
        self.forward = torch.compile(model) if cfg.compile else model
        self.backbone = Backbone(model)
        self.state = RunState(cfg.num_tasks)
        self.eval_generator = torch.Generator().manual_seed(derived_seed(cfg.seed, 2))  # test_augment

    @staticmethod
    def _indices(y: torch.Tensor, sl: slice) -> torch.Tensor:
        idx = torch.nonzero((y >= sl.start) & (y < sl.stop)).squeeze(1)
        if idx.numel() == 0:
            raise ConfigError(f"classes {sl.start}..{sl.stop - 1} have no images in this dataset")
        return idx

    def _autocast(self):
        amp = self.device.type == "cuda" if self.cfg.amp is None else self.cfg.amp
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=amp)

    # ------------------------------------------------------------------ training
    def train_task(self, t: int) -> None:
        cfg, bb = self.cfg, self.backbone
        gen = torch.Generator().manual_seed(task_seed(cfg.seed, t))
        torch.manual_seed(task_seed(cfg.seed, t))
        sl = task_class_range(t, cfg.num_classes_per_task)
        mask = bb.new_task_mask(cfg.density, cfg.sparse_init, gen, exact=not cfg.bernoulli_masks,
                                head_rows=None if cfg.shared_head_rows else sl)
        bb.start_weights(mask, free_from_theta0=(t == 0 or cfg.free_init == "theta0"))
        idx = self.train_idx[t]
        n, bs = idx.numel(), cfg.batch_size
        steps_per_epoch = max(1, n // bs)  # as epoch_batches yields them
        total = steps_per_epoch * cfg.epochs
        trainer = TaskTrainer(cfg, self.model, self.forward, bb, mask, sl, total, gen, self._autocast)
        opt = trainer.optimizer
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=lr_milestones(cfg.epochs), gamma=0.1)
        best_acc, best_weights = -1.0, None
        self.model.train()
        seen, started = 0, time.perf_counter()
        bar = tqdm(total=total, desc=f"task {t + 1}/{cfg.num_tasks}", leave=False,
                   disable=not self.progress, unit="step")
        for epoch in range(cfg.epochs):
            loss_sum = torch.zeros((), device=self.device)
            correct = torch.zeros((), device=self.device, dtype=torch.long)
            for x, y in epoch_batches(self.train_x, self.train_y, idx, bs, self.transform, gen):
                y = y - sl.start
                loss, all_logits, update = trainer.step(x, y)
                if trainer.steps == 1 and trainer.dead_start:
                    self.state.dead_tasks.append(t)
                    tqdm.write(f"cldst: warning: task {t + 1} starts dead (its output does not depend on the "
                               "input, or no masked weight gets a gradient): it cannot learn", file=sys.stderr)
                if update is not None:
                    self.state.history.append(dict(kind="update", task=t, epoch=epoch, **update))
                loss_sum += loss * y.numel()
                if cfg.eval_all_classes:  # the original's training accuracy: argmax over all classes
                    correct += (all_logits.argmax(1) == y + sl.start).sum()
                else:
                    correct += (all_logits[:, sl].argmax(1) == y).sum()
                seen += y.numel()
                bar.update()
            sched.step()
            count = steps_per_epoch * min(n, bs)
            row = dict(kind="epoch", task=t, epoch=epoch, step=trainer.steps, loss=float(loss_sum) / count,
                       train_acc=100.0 * float(correct) / count, lr=opt.param_groups[0]["lr"],
                       seconds=time.perf_counter() - started)
            self.state.history.append(row)
            bar.set_postfix(epoch=f"{epoch + 1}/{cfg.epochs}", loss=f"{row['loss']:.3f}",
                            acc=f"{row['train_acc']:.1f}%")
            if cfg.keep_best_epoch and row["train_acc"] > best_acc:
                best_acc = row["train_acc"]
                best_weights = [p.detach().clone() for p in self.model.parameters()]
        bar.close()
        if best_weights is not None:  # reference quirk: the best training-accuracy epoch's weights
            with torch.no_grad():
                for p, w in zip(self.model.parameters(), best_weights):
                    p.copy_(w)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        bb.merge(mask, nonzero_rule=cfg.keep_best_epoch)
        st = self.state
        if not cfg.eval_batch_stats:
            st.bn_stats.append(self.task_statistics(t))
        st.task_seconds.append(seconds)
        st.images_per_s.append(seen / seconds)
        st.capacity.append(bb.capacity())
        for name, d in bb.mask_densities(mask, None if cfg.shared_head_rows else sl).items():
            st.layer_density.setdefault(name, []).append(d)

    # ------------------------------------------------------------------ evaluation
    def task_statistics(self, t: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Task t's BatchNorm statistics: merged ⊙ m_t on task t's training images, unaugmented,
        in one pass of fixed batches (eval_batch_size) in a seeded order that mixes its classes."""
        self.backbone.load_task_weights(t)
        idx = self.train_idx[t]
        order = torch.Generator().manual_seed(derived_seed(self.cfg.seed, 3, t))
        idx = idx[torch.randperm(idx.numel(), generator=order).to(idx.device)]
        batches = list(torch.split(idx, self.cfg.eval_batch_size))
        if len(batches) > 1 and batches[-1].numel() == 1:
            batches[-2:] = [torch.cat(batches[-2:])]
        with self._autocast():
            # the eager model: forward hooks record each layer's input
            return compute_statistics(self.model, self.model,
                                      (self.transform.normalise(self.train_x[b]) for b in batches))

    @torch.inference_mode()
    def evaluate(self, j: int, mask_task: int | None = None) -> float:
        """Accuracy (%) on task j's test set with merged ⊙ m_i, i = ``mask_task`` (default j).

        Clean: no augmentation; BatchNorm with task i's own statistics, so each image's prediction
        depends on the model and the image alone (the batches of eval_batch_size only set the
        speed); argmax within task i's classes. With i ≠ j (the original's "FWT" entries) task j's
        labels are shifted into task i's range. ``test_augment``, ``eval_batch_stats`` and
        ``eval_all_classes`` switch on the original's evaluation quirks.
        """
        cfg = self.cfg
        i = j if mask_task is None else mask_task
        self.backbone.load_task_weights(i)
        self.model.eval()
        sl = task_class_range(i, cfg.num_classes_per_task)
        shift = (j - i) * cfg.num_classes_per_task
        idx = self.test_idx[j]
        if cfg.test_augment:  # the original: train transform and shuffled batches of 128
            idx = idx[torch.randperm(idx.numel(), generator=self.eval_generator).to(self.device)]
            batches = list(torch.split(idx, 128))
        else:
            batches = list(torch.split(idx, cfg.eval_batch_size))
        if len(batches) > 1 and batches[-1].numel() == 1:
            batches[-2:] = [torch.cat(batches[-2:])]
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        with contextlib.ExitStack() as stack:
            if not cfg.eval_batch_stats:
                stack.enter_context(using_statistics(self.model, self.state.bn_stats[i]))
            for batch in batches:
                correct += self._count_correct(batch, sl, shift)
        return 100.0 * float(correct) / idx.numel()

    def _count_correct(self, batch: torch.Tensor, sl: slice, shift: int) -> torch.Tensor:
        cfg = self.cfg
        images = self.test_x[batch]
        if cfg.test_augment:
            x = self.transform.train(images, self.eval_generator)
        else:
            x = self.transform.normalise(images)
        label = self.test_y[batch] - shift
        with self._autocast():
            logits = self.forward(x)
        if cfg.eval_all_classes:
            return (logits.argmax(1) == label).sum()
        return (logits[:, sl].argmax(1) == label - sl.start).sum()

    def final_model_matrix(self) -> list[list[float]]:
        """The original's matrix, all from the final model: A[i][j] = task j with m_j for j ≤ i,
        with m_i (labels shifted into task i's range) for j > i."""
        t = self.cfg.num_tasks
        return [[self.evaluate(j, j if j <= i else i) for j in range(t)] for i in range(t)]

    # ------------------------------------------------------------------ the loop
    def run(self, run_dir: RunDir | None = None, max_tasks: int | None = None) -> dict | None:
        """Train the remaining tasks. Returns the metrics, or None if stopped by ``max_tasks``."""
        cfg, st = self.cfg, self.state
        last = cfg.num_tasks if max_tasks is None else min(cfg.num_tasks, st.next_task + max_tasks)
        tasks = tqdm(range(st.next_task, last), desc="tasks", disable=not self.progress,
                     initial=st.next_task, total=cfg.num_tasks)
        for t in tasks:
            self.train_task(t)
            if not cfg.final_model_matrix:
                for j in range(t + 1):
                    st.acc[t][j] = self.evaluate(j)
                tasks.set_postfix(acc=f"{np.mean(st.acc[t][: t + 1]):.1f}%")
            st.next_task = t + 1
            if run_dir is not None:
                run_dir.write_history(st.history)
                run_dir.write_checkpoint(self.checkpoint())
        tasks.close()
        if st.next_task < cfg.num_tasks:
            return None
        if cfg.final_model_matrix:
            st.acc = self.final_model_matrix()
        result = self.metrics()
        if run_dir is not None:
            run_dir.write_metrics(result)
        return result

    def metrics(self) -> dict:
        st = self.state
        a = M.as_matrix(st.acc)
        return {
            "run_id": self.cfg.run_id(),
            "status": "finished",
            "protocol": self.cfg.protocol,
            "acc_matrix": M.to_json_matrix(a),
            **M.summary(a),
            "capacity": st.capacity,
            "layer_density": st.layer_density,
            "task_seconds": st.task_seconds,
            "images_per_s": st.images_per_s,
            "dead_tasks": st.dead_tasks,
            "total_seconds": float(sum(st.task_seconds)),
            "data": self.data_info,
            "device": str(self.device),
            "torch": torch.__version__,
            "config": self.cfg.to_dict(),
            # the metrics the original prints only mean something on its final-model matrix
            **({"reference_metrics": M.reference_metrics(a)} if self.cfg.final_model_matrix else {}),
        }

    # ------------------------------------------------------------------ checkpoint
    def checkpoint(self) -> dict:
        return {"config": self.cfg.to_dict(), "state": vars(self.state).copy(),
                "backbone": self.backbone.state_dict(), "eval_rng": self.eval_generator.get_state()}

    def restore(self, ckpt: dict) -> None:
        saved = ExperimentConfig.from_dict(ckpt["config"])
        if saved.run_id() != self.cfg.run_id():
            raise ConfigError("the checkpoint was written by a run with other settings; "
                              "resume with the same settings or choose another --out")
        self.backbone.load_state_dict(ckpt["backbone"])
        self.state = RunState(**ckpt["state"])
        self.state.bn_stats = [[(m.to(self.device), v.to(self.device)) for m, v in task]
                               for task in self.state.bn_stats]
        self.eval_generator.set_state(ckpt["eval_rng"])


def run_experiment(cfg: ExperimentConfig, out: str | Path | None = None, *, resume: bool = False,
                   progress: bool = True, max_tasks: int | None = None) -> dict | None:
    """Run (or resume) one experiment into ``out`` (default ``runs/<run id>``); return its metrics."""
    run_dir = RunDir(out) if out is not None else RunDir.default_for(cfg)
    ckpt = run_dir.read_checkpoint() if run_dir.path.exists() else None
    if run_dir.finished and resume:
        return run_dir.read_metrics()
    if (run_dir.finished or ckpt is not None) and not resume:
        raise ConfigError(f"out={str(run_dir.path)!r} already holds a run: pass --resume to continue "
                          "it, or choose another --out")
    learner = ContinualLearner(cfg, progress=progress)
    if ckpt is not None:
        learner.restore(ckpt)
    run_dir.write_config(cfg)
    return learner.run(run_dir, max_tasks=max_tasks)
