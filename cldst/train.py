"""The task loop: for each task, draw a mask, train it with DST, merge, evaluate every task seen.

Randomness is drawn from one generator per task, seeded by (seed, task); a checkpoint (a task
boundary, an epoch end, or the step where a stop was requested: cldst/checkpoint.py) holds every
generator's state, so a resumed run computes exactly what the uninterrupted run computes.
Evaluation is in cldst/evaluation.py; a run folder's start, resume and stop in cldst/experiment.py.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from . import checkpoint as ckpt
from . import evaluation
from . import metrics as M
from .config import ConfigError, ExperimentConfig
from .data import ImageSplit, load_benchmark, task_class_range
from .data.transforms import BatchTransform
from .flops import TaskFlops, dense_forward_macs, forward_macs, layer_output_sizes
from .host_memory import keep_freed_memory
from .masks import Backbone
from .models import build_model
from .progress import RunObserver
from .reuse import reuse_metrics
from .runs import RunDir
from .seeds import derived_seed, task_seed
from .task_trainer import TaskTrainer, epoch_batches, epoch_permutation, lr_milestones, make_optimizer  # noqa: F401
from .task_trainer import steps_per_epoch as _steps_per_epoch


def select_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={name!r} is not allowed: no CUDA GPU is visible; use cpu or auto")
    return torch.device(name)


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
        self.output_sizes = layer_output_sizes(model, tuple(data.train_x.shape[1:]))  # for the FLOPs count
        self.dense_macs = dense_forward_macs(model, self.output_sizes)
        self.state = RunState(cfg.num_tasks)
        self.eval_generator = torch.Generator().manual_seed(derived_seed(cfg.seed, 2))  # test_augment
        # Set by run_experiment (none of them changes what the run computes):
        self.run_dir: RunDir | None = None  # where epoch checkpoints and history go
        self.should_stop = lambda: False  # checked after every step: checkpoint and stop (Preempted)
        self.checkpoint_timer = ckpt.CheckpointTimer(0.0)
        self.observer = RunObserver()  # progress.json, TensorBoard
        self.resume_task: dict | None = None  # a mid-task checkpoint's task state

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
    def steps_per_epoch(self, t: int) -> int:
        """Task t's optimizer steps per epoch, as epoch_batches yields them."""
        return _steps_per_epoch(self.train_idx[t].numel(), self.cfg.batch_size, self.cfg.keep_last_batch)

    def train_task(self, t: int, resume: dict | None = None) -> None:
        """Train task t (from ``resume``, a mid-task checkpoint's task state, if given)."""
        cfg, bb = self.cfg, self.backbone
        gen = torch.Generator().manual_seed(task_seed(cfg.seed, t))
        torch.manual_seed(task_seed(cfg.seed, t))
        sl = task_class_range(t, cfg.num_classes_per_task)
        mask = bb.new_task_mask(cfg.density, cfg.sparse_init, gen, exact=not cfg.bernoulli_masks,
                                head_rows=None if cfg.shared_head_rows else sl, reuse=cfg.reuse == "all")
        if bb.shortfall:
            self._report_shortfall(t, bb.shortfall)
        bb.start_weights(mask, free_from_theta0=(t == 0 or cfg.free_init == "theta0"))
        idx = self.train_idx[t]
        n, bs = idx.numel(), cfg.batch_size
        steps_per_epoch = self.steps_per_epoch(t)
        total = steps_per_epoch * cfg.epochs
        trainer = TaskTrainer(cfg, self.model, self.forward, bb, mask, sl, total, gen, self._autocast)
        opt = trainer.optimizer
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=lr_milestones(cfg.epochs, cfg.lr_drop_at_zero),
                                                     gamma=0.1)
        if resume is None:
            pos = ckpt.TaskPosition(self.device)
        else:
            pos = ckpt.restore_task(resume, self.model, trainer, sched, gen, self.device)
        flops = TaskFlops(bb.names, self.output_sizes, self.dense_macs, cfg.growth, mask, total=pos.train_macs)
        save = lambda: self._save_task(ckpt.task_state(t, pos, self.model, trainer, sched, gen))  # noqa: E731
        self.model.train()
        started = time.perf_counter() - pos.elapsed
        bar = tqdm(total=total, initial=trainer.steps, desc=f"task {t + 1}/{cfg.num_tasks}", leave=False,
                   disable=not self.progress, unit="step")
        while pos.epoch < cfg.epochs:
            epoch = pos.epoch
            if pos.perm is None:
                pos.perm = epoch_permutation(idx, gen)
            for x, y in epoch_batches(self.train_x, self.train_y, idx, bs, self.transform, gen,
                                      perm=pos.perm, start=pos.batch, keep_last_batch=cfg.keep_last_batch):
                y = y - sl.start
                loss, all_logits, update = trainer.step(x, y)
                if trainer.steps == 1 and trainer.dead_start:
                    self.state.dead_tasks.append(t)
                    tqdm.write(f"cldst: warning: task {t + 1} starts dead (the features its head reads do not "
                               "depend on the input, or no masked weight gets a gradient): it cannot learn",
                               file=sys.stderr)
                flops.step(y.numel(), update is not None)
                pos.train_macs = flops.total
                if update is not None:
                    self.state.history.append(dict(kind="update", task=t, epoch=epoch, **update))
                    self.observer.update(t, update)
                pos.loss_sum += loss * y.numel()
                if cfg.eval_all_classes:  # the original's training accuracy: argmax over all classes
                    pos.correct += (all_logits.argmax(1) == y + sl.start).sum()
                else:
                    pos.correct += (all_logits[:, sl].argmax(1) == y).sum()
                pos.seen += y.numel()
                pos.batch += 1
                bar.update()
                self.observer.step(t, epoch, trainer.steps, total, loss, pos.seen, time.perf_counter() - started)
                if pos.batch < steps_per_epoch and self.should_stop():
                    pos.elapsed = time.perf_counter() - started
                    save()
                    raise ckpt.Preempted(self._stopped_message(t, epoch, pos.batch))
            sched.step()
            count = n if cfg.keep_last_batch else steps_per_epoch * min(n, bs)
            row = dict(kind="epoch", task=t, epoch=epoch, step=trainer.steps, loss=float(pos.loss_sum) / count,
                       train_acc=100.0 * float(pos.correct) / count, lr=opt.param_groups[0]["lr"],
                       seconds=time.perf_counter() - started)
            self.state.history.append(row)
            bar.set_postfix(epoch=f"{epoch + 1}/{cfg.epochs}", loss=f"{row['loss']:.3f}",
                            acc=f"{row['train_acc']:.1f}%")
            if cfg.keep_best_epoch and row["train_acc"] > pos.best_acc:
                pos.best_acc = row["train_acc"]
                pos.best_weights = [p.detach().clone() for p in self.model.parameters()]
                pos.best_mask = [m.clone() for m in mask]  # the original saves the mask with them
            pos.next_epoch()
            pos.elapsed = time.perf_counter() - started
            self.observer.epoch(t, row, pos.seen, total, trainer.steps)
            stop = self.should_stop()
            if self.run_dir is not None:
                self.run_dir.write_history(self.state.history)
                if stop or (pos.epoch < cfg.epochs and self.checkpoint_timer.due()):
                    save()
            if stop:
                raise ckpt.Preempted(self._stopped_message(t, epoch + 1, 0))
        best_weights, best_mask = pos.best_weights, pos.best_mask
        seen = pos.seen
        bar.close()
        if best_weights is not None:  # reference quirk: the best training-accuracy epoch's weights and mask
            with torch.no_grad():
                for p, w in zip(self.model.parameters(), best_weights):
                    p.copy_(w)
                for m, b in zip(mask, best_mask):
                    m.copy_(b)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        bb.merge(mask, nonzero_rule=cfg.keep_best_epoch, overwrite=not cfg.isolation)
        st = self.state
        if not cfg.eval_batch_stats:
            if not cfg.isolation:  # earlier tasks' weights have changed: their statistics too
                st.bn_stats[:] = [self.task_statistics(j) for j in range(t)]
            st.bn_stats.append(self.task_statistics(t))
        st.task_seconds.append(seconds)
        st.images_per_s.append(seen / seconds)
        st.capacity.append(bb.capacity())
        # RigL's accounting (cldst/flops.py): dense training is 3 forward passes per example
        st.flops.append({"train_macs": flops.total, "train_vs_dense": flops.total / (3 * self.dense_macs * seen),
                         # the final mask (keep_best_epoch may have restored an earlier one)
                         "inference_macs": (f := forward_macs(mask, self.output_sizes, bb.names)),
                         "inference_vs_dense": f / self.dense_macs})
        for name, d in bb.mask_densities(mask, None if cfg.shared_head_rows else sl).items():
            st.layer_density.setdefault(name, []).append(d)

    # ------------------------------------------------------------------ evaluation (cldst/evaluation.py)
    def task_statistics(self, t: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return evaluation.task_statistics(self, t)

    def evaluate(self, j: int, mask_task: int | None = None) -> float:
        return evaluation.accuracy(self, j, mask_task)

    def final_model_matrix(self) -> list[list[float]]:
        return evaluation.final_model_matrix(self)

    # ------------------------------------------------------------------ the loop
    def run(self, run_dir: RunDir | None = None, max_tasks: int | None = None) -> dict | None:
        """Train the remaining tasks. Returns the metrics, or None if stopped by ``max_tasks``."""
        cfg, st = self.cfg, self.state
        last = cfg.num_tasks if max_tasks is None else min(cfg.num_tasks, st.next_task + max_tasks)
        tasks = tqdm(range(st.next_task, last), desc="tasks", disable=not self.progress,
                     initial=st.next_task, total=cfg.num_tasks)
        run_dir = self.run_dir = run_dir if run_dir is not None else self.run_dir
        for t in tasks:
            resume, self.resume_task = self.resume_task, None
            self.train_task(t, resume)
            if not cfg.final_model_matrix:
                for j in range(t + 1):
                    st.acc[t][j] = self.evaluate(j)
                tasks.set_postfix(acc=f"{np.mean(st.acc[t][: t + 1]):.1f}%")
            st.next_task = t + 1
            self.observer.task_end(t, st.acc)
            if run_dir is not None:
                run_dir.write_history(st.history)
                run_dir.write_checkpoint(self.checkpoint())
                self.checkpoint_timer.written()
            if self.should_stop() and st.next_task < cfg.num_tasks:
                raise ckpt.Preempted(self._stopped_message(t + 1, 0, 0))
        tasks.close()
        if st.next_task < cfg.num_tasks:
            return None
        if cfg.final_model_matrix:
            st.acc = self.final_model_matrix()
            self.observer.task_end(cfg.num_tasks - 1, st.acc)
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
            **M.summary(a, final_model=self.cfg.final_model_matrix),
            **({"forgetting_note": M.FORGETTING_UNDEFINED} if self.cfg.final_model_matrix else {}),
            "capacity": st.capacity,
            "layer_density": st.layer_density,
            "task_seconds": st.task_seconds,
            "images_per_s": st.images_per_s,
            "flops": st.flops,
            **reuse_metrics(self.backbone.task_masks, self.backbone.names),
            "dead_tasks": st.dead_tasks,
            **({"reuse_shortfall": st.reuse_shortfall} if self.cfg.reuse == "none" else {}),
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
        """The state at a task boundary: plain values and tensors only (read with weights_only)."""
        return {"config": self.cfg.to_dict(), "state": vars(self.state).copy(),
                "backbone": self.backbone.state_dict(), "eval_rng": self.eval_generator.get_state()}

    def _save_task(self, task: dict) -> None:
        """A mid-task checkpoint: the task-boundary state plus the task's training state."""
        if self.run_dir is not None:
            self.run_dir.write_history(self.state.history)
            self.run_dir.write_checkpoint({**self.checkpoint(), "task": task})
            self.checkpoint_timer.written()

    def _report_shortfall(self, t: int, shortfall: dict[str, int]) -> None:
        """reuse none: a layer without enough free positions; said once per task, and recorded."""
        worst = max(shortfall, key=shortfall.get)
        self.state.reuse_shortfall.append({"task": t, **shortfall})
        tqdm.write(f"cldst: warning: reuse=none: task {t + 1} finds too few free positions in {len(shortfall)} "
                   f"layer(s) (most in {worst}: {shortfall[worst]} missing); its mask there is smaller",
                   file=sys.stderr)

    def _stopped_message(self, t: int, epoch: int, batch: int) -> str:
        where = f"task {t + 1}, epoch {epoch + 1}" + (f", batch {batch + 1}" if batch else "")
        saved = "a checkpoint is written: --resume continues" if self.run_dir is not None else "nothing saved"
        return f"stopped on request before {where}; {saved}"

    def restore(self, saved_ckpt: dict) -> None:
        saved = ExperimentConfig.from_dict(saved_ckpt["config"])
        if saved.run_id() != self.cfg.run_id():
            raise ConfigError("the checkpoint was written by a run with other settings; "
                              "resume with the same settings or choose another --out")
        self.backbone.load_state_dict(saved_ckpt["backbone"])
        self.state = RunState(**saved_ckpt["state"])
        self.state.bn_stats = [[(m.to(self.device), v.to(self.device)) for m, v in task]
                               for task in self.state.bn_stats]
        self.eval_generator.set_state(saved_ckpt["eval_rng"])
        self.resume_task = saved_ckpt.get("task")
