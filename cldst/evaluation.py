"""Evaluation of a ContinualLearner: per-task BatchNorm statistics, the accuracy of one task with
one task's mask, and the original's final-model matrix.

Clean protocol: a task is evaluated with its own mask, its own BatchNorm statistics (from its
training images) and an argmax within its classes, so a prediction depends on the model and the
image alone. The reference protocol's quirks (test augmentation, test-batch statistics, argmax over
all classes) are switched by their flags.
"""

from __future__ import annotations

import contextlib

import torch

from .bn_stats import compute_statistics, using_statistics
from .data import task_class_range
from .seeds import derived_seed


def _batches(idx: torch.Tensor, size: int) -> list[torch.Tensor]:
    """``idx`` in batches of ``size``; a last batch of one joins the one before (BatchNorm with
    batch statistics is ill-defined on a single image)."""
    batches = list(torch.split(idx, size))
    if len(batches) > 1 and batches[-1].numel() == 1:
        batches[-2:] = [torch.cat(batches[-2:])]
    return batches


def task_statistics(learner, t: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Task t's BatchNorm statistics: merged ⊙ m_t on task t's training images, unaugmented,
    in one pass of fixed batches (eval_batch_size) in a seeded order that mixes its classes."""
    learner.backbone.load_task_weights(t)
    idx = learner.train_idx[t]
    order = torch.Generator().manual_seed(derived_seed(learner.cfg.seed, 3, t))
    idx = idx[torch.randperm(idx.numel(), generator=order).to(idx.device)]
    batches = _batches(idx, learner.cfg.eval_batch_size)
    with learner._autocast():
        # the eager model: forward hooks record each layer's input
        return compute_statistics(learner.model, learner.model,
                                  (learner.transform.normalise(learner.train_x[b]) for b in batches))


@torch.inference_mode()
def accuracy(learner, j: int, mask_task: int | None = None) -> float:
    """Accuracy (%) on task j's test set with merged ⊙ m_i, i = ``mask_task`` (default j).

    Clean: no augmentation; BatchNorm with task i's own statistics, so each image's prediction
    depends on the model and the image alone (the batches of eval_batch_size only set the
    speed); argmax within task i's classes. With i ≠ j (the original's "FWT" entries) task j's
    labels are shifted into task i's range. ``test_augment``, ``eval_batch_stats`` and
    ``eval_all_classes`` switch on the original's evaluation quirks.
    """
    cfg = learner.cfg
    i = j if mask_task is None else mask_task
    learner.backbone.load_task_weights(i)
    learner.model.eval()
    sl = task_class_range(i, cfg.num_classes_per_task)
    shift = (j - i) * cfg.num_classes_per_task
    idx = learner.test_idx[j]
    if cfg.test_augment:  # the original: train transform, shuffled batches
        idx = idx[torch.randperm(idx.numel(), generator=learner.eval_generator).to(learner.device)]
    batches = _batches(idx, reference_test_batch(cfg) if cfg.test_augment else cfg.eval_batch_size)
    correct = torch.zeros((), device=learner.device, dtype=torch.long)
    with contextlib.ExitStack() as stack:
        if not cfg.eval_batch_stats:
            stack.enter_context(using_statistics(learner.model, learner.state.bn_stats[i]))
        for batch in batches:
            correct += _count_correct(learner, batch, sl, shift)
    return 100.0 * float(correct) / idx.numel()


def reference_test_batch(cfg) -> int:
    """The original's test batch: 128 in cifar100.py, --batch_size in miniImageNet100.py (which the
    other image benchmarks follow)."""
    return 128 if cfg.dataset == "cifar100" else cfg.batch_size


def _count_correct(learner, batch: torch.Tensor, sl: slice, shift: int) -> torch.Tensor:
    cfg = learner.cfg
    images = learner.test_x[batch]
    if cfg.test_augment:
        x = learner.transform.train(images, learner.eval_generator)
    else:
        x = learner.transform.normalise(images)
    label = learner.test_y[batch] - shift
    with learner._autocast():
        logits = learner.forward(x)
    if cfg.eval_all_classes:
        return (logits.argmax(1) == label).sum()
    return (logits[:, sl].argmax(1) == label - sl.start).sum()

def final_model_matrix(learner) -> list[list[float]]:
    """The original's matrix, all from the final model: A[i][j] = task j with m_j for j ≤ i,
    with m_i (labels shifted into task i's range) for j > i."""
    t = learner.cfg.num_tasks
    return [[accuracy(learner, j, j if j <= i else i) for j in range(t)] for i in range(t)]
