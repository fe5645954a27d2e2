"""Evaluation: per-task BatchNorm statistics, the accuracy of one task with one task's mask, and the
original's final-model matrix. Its inputs are explicit (the model, the backbone, the task images,
the statistics and the settings), so it can evaluate any masked model, not only a learner's.

Clean protocol: a task is evaluated with its own mask, its own BatchNorm statistics (from its
training images) and an argmax within its classes, so a prediction depends on the model and the
image alone. The reference protocol's quirks (test augmentation, test-batch statistics, argmax over
all classes) are switched by their flags.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import torch

from cldst.config import ExperimentConfig
from cldst.data import task_class_range
from cldst.method.bn_stats import compute_statistics, using_statistics
from cldst.method.masks import Backbone
from cldst.method.seeds import derived_seed
from cldst.method.task_data import TaskImages

Statistics = list[tuple[torch.Tensor, torch.Tensor]]  # per BatchNorm layer: (mean, var)


def _batches(idx: torch.Tensor, size: int) -> list[torch.Tensor]:
    """``idx`` in batches of ``size``; a last batch of one joins the one before (BatchNorm with
    batch statistics is ill-defined on a single image)."""
    batches = list(torch.split(idx, size))
    if len(batches) > 1 and batches[-1].numel() == 1:
        batches[-2:] = [torch.cat(batches[-2:])]
    return batches


def reference_test_batch(cfg: ExperimentConfig) -> int:
    """The original's test batch: 128 in cifar100.py, --batch_size in miniImageNet100.py (which the
    other image benchmarks follow)."""
    return 128 if cfg.dataset == "cifar100" else cfg.batch_size


@dataclass
class Evaluator:
    """What evaluation reads: the model (``forward``: the compiled one, if compiled), the backbone
    whose task weights it loads, the task images, the settings, the autocast and, for
    ``test_augment``, the generator of the test-time augmentation and batch order."""

    model: torch.nn.Module
    forward: Callable
    backbone: Backbone
    images: TaskImages
    cfg: ExperimentConfig
    autocast: Callable[[], contextlib.AbstractContextManager]
    generator: torch.Generator

    def task_statistics(self, t: int) -> Statistics:
        """Task t's BatchNorm statistics: merged ⊙ m_t on task t's training images, unaugmented,
        in one pass of fixed batches (eval_batch_size) in a seeded order that mixes its classes."""
        self.backbone.load_task_weights(t)
        idx = self.images.train_idx[t]
        order = torch.Generator().manual_seed(derived_seed(self.cfg.seed, 3, t))
        idx = idx[torch.randperm(idx.numel(), generator=order).to(idx.device)]
        batches = _batches(idx, self.cfg.eval_batch_size)
        with self.autocast():
            # the eager model: forward hooks record each layer's input
            return compute_statistics(self.model, self.model,
                                      (self.images.transform.normalise(self.images.train_x[b]) for b in batches))

    @torch.inference_mode()
    def accuracy(self, j: int, statistics: list[Statistics], mask_task: int | None = None,
                 split: str = "test") -> float:
        """Accuracy (%) on task j's test set with merged ⊙ m_i, i = ``mask_task`` (default j).

        Clean: no augmentation; BatchNorm with task i's own statistics (``statistics[i]``), so each
        image's prediction depends on the model and the image alone (the batches of eval_batch_size
        only set the speed); argmax within task i's classes. With i ≠ j (the original's "FWT"
        entries) task j's labels are shifted into task i's range. ``test_augment``,
        ``eval_batch_stats`` and ``eval_all_classes`` switch on the original's evaluation quirks.
        ``split="val"``: task j's validation images (held out of its training images) instead.
        """
        cfg = self.cfg
        i = j if mask_task is None else mask_task
        self.backbone.load_task_weights(i)
        self.model.eval()
        sl = task_class_range(i, cfg.num_classes_per_task)
        shift = (j - i) * cfg.num_classes_per_task
        x_all, y_all, idx = self._split(split, j)
        if cfg.test_augment:  # the original: train transform, shuffled batches
            idx = idx[torch.randperm(idx.numel(), generator=self.generator).to(idx.device)]
        batches = _batches(idx, reference_test_batch(cfg) if cfg.test_augment else cfg.eval_batch_size)
        correct = torch.zeros((), device=idx.device, dtype=torch.long)
        with contextlib.ExitStack() as stack:
            if not cfg.eval_batch_stats:
                stack.enter_context(using_statistics(self.model, statistics[i]))
            for batch in batches:
                correct += self._count_correct(x_all[batch], y_all[batch], sl, shift)
        return 100.0 * float(correct) / idx.numel()

    def _split(self, split: str, j: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(images, labels, task j's indices into them) of the test set or the validation split."""
        if split == "test":
            return self.images.test_x, self.images.test_y, self.images.test_idx[j]
        if split == "val":
            return self.images.train_x, self.images.train_y, self.images.val_idx[j]
        raise ValueError(f"split={split!r}: expected test or val")

    def _count_correct(self, images: torch.Tensor, labels: torch.Tensor, sl: slice, shift: int) -> torch.Tensor:
        cfg = self.cfg
        if cfg.test_augment:
            x = self.images.transform.train(images, self.generator)
        else:
            x = self.images.transform.normalise(images)
        label = labels - shift
        with self.autocast():
            logits = self.forward(x)
        if cfg.eval_all_classes:
            return (logits.argmax(1) == label).sum()
        return (logits[:, sl].argmax(1) == label - sl.start).sum()

    def final_model_matrix(self, statistics: list[Statistics]) -> list[list[float]]:
        """The original's matrix, all from the final model: A[i][j] = task j with m_j for j ≤ i,
        with m_i (labels shifted into task i's range) for j > i."""
        t = self.cfg.num_tasks
        return [[self.accuracy(j, statistics, j if j <= i else i) for j in range(t)] for i in range(t)]
