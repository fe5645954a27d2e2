"""One task's training step, shared by the task loop and ``cldst bench``: batches, optimizer,
learning-rate milestones, isolation of frozen weights, DST topology updates and the dead-start check.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cldst.config import ExperimentConfig
from cldst.config.schedule import steps_per_epoch
from cldst.data.transforms import BatchTransform
from cldst.method.dst import DynamicSparsity
from cldst.method.masks import Backbone, TaskIsolation
from cldst.method.models import head
from cldst.method.subnetwork import DST, SubnetworkMethod


def epoch_permutation(idx: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The epoch's order of ``idx``, drawn from ``generator``."""
    return idx[torch.randperm(idx.numel(), generator=generator).to(idx.device)]


def epoch_batches(images: torch.Tensor, labels: torch.Tensor, idx: torch.Tensor, batch_size: int,
                  transform: BatchTransform, generator: torch.Generator,
                  perm: torch.Tensor | None = None, start: int = 0, keep_last_batch: bool = False):
    """One epoch of cldst's data path: batches by index from a seeded permutation of ``idx``, crop,
    flip and normalise batched on the device. Yields (x, y) for full batches only, or one batch if
    ``idx`` holds fewer; with ``keep_last_batch`` also the last partial batch (see steps_per_epoch:
    BatchNorm with batch statistics is ill-defined on a batch of one).

    ``perm`` (the epoch's permutation, already drawn) and ``start`` (the first batch) continue an
    epoch that a checkpoint interrupted; by default the permutation is drawn at the first batch."""
    n = idx.numel()
    if perm is None:
        perm = epoch_permutation(idx, generator)
    steps = steps_per_epoch(n, batch_size, keep_last_batch)
    for b in range(start, steps):
        batch = perm[b * batch_size:n if b == steps - 1 and keep_last_batch else (b + 1) * batch_size]
        yield transform.train(images[batch], generator), labels[batch]


def make_optimizer(cfg: ExperimentConfig, params) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                           nesterov=cfg.sgd_nesterov)


class TaskTrainer:
    """One task's training step: optimizer, isolation of frozen weights and DST topology updates.

    Shared by the task loop and ``cldst bench``, so the benchmark times exactly this code.
    """

    def __init__(self, cfg: ExperimentConfig, model: torch.nn.Module, forward, backbone: Backbone,
                 mask: list[torch.Tensor], class_slice: slice, total_steps: int,
                 generator: torch.Generator, autocast, rule: SubnetworkMethod | None = None):
        if rule is None:  # DST on the given mask (the benchmark's and tests' trainers)
            rule = DST(cfg, backbone, class_slice, generator)
            rule.mask = mask
        self.rule = rule  # the method's hooks (cldst/method/subnetwork.py)
        self.model = model
        self.forward = forward
        self.head = head(model)
        self.class_slice = class_slice
        self.autocast = autocast
        self.params = backbone.params
        self.isolation = TaskIsolation(backbone, mask, class_slice, grown_frozen_zero=cfg.grown_frozen_zero,
                                       isolate=cfg.isolation)
        self.optimizer = make_optimizer(cfg, rule.optimizer_params(model))
        head_rows = None if cfg.shared_head_rows else class_slice
        self.topology = DynamicSparsity(
            backbone.params, mask, growth=cfg.growth, initial_prune_rate=cfg.prune_rate,
            total_steps=total_steps, update_frequency=cfg.update_frequency if rule.updates_topology and not cfg.static else 0,
            generator=generator,
            fixed=backbone.fixed_positions(head_rows, owned=cfg.isolation and not cfg.dst_moves_frozen),
            random_ties=not cfg.index_tie_break,
            bernoulli=cfg.bernoulli_masks, unfired_topup=cfg.unfired_topup,
            threshold_prune=cfg.threshold_prune, ranks_active=cfg.growth_ranks_active)
        self.mask_momentum = cfg.optimizer == "sgd" and cfg.sgd_nesterov  # as the original's apply_mask
        self.steps = 0
        self.dead_start: bool | None = None  # decided at the first step

    def step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict | None]:
        """One optimizer step on (x, y) with y in 0..C-1. Returns (loss, all logits, topology update)."""
        features: list[torch.Tensor] = []
        self.rule.before_forward()
        if self.steps == 0:  # the head's input, for the dead-start check
            hook = self.head.register_forward_pre_hook(lambda _m, inputs: features.append(inputs[0].detach()))
        with self.autocast():
            all_logits = self.forward(x).float()
        if self.steps == 0:
            hook.remove()
        loss = F.cross_entropy(all_logits[:, self.class_slice], y)
        self.optimizer.zero_grad()
        loss.backward()
        self.rule.after_backward()
        return self.finish_step(loss, all_logits, features[0] if features else None)

    def finish_step(self, loss: torch.Tensor, all_logits: torch.Tensor,
                    features: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, dict | None]:
        """The step after the backward pass, with the gradients in the parameters' ``.grad``:
        isolation, the dead-start check (``features``: the head's input, at the task's first step),
        the optimizer step and the topology update. A pack (cldst/method/pack.py) computes the
        gradients of several runs at once, then calls this for each of them."""
        self.isolation.zero_frozen_grads()
        if self.steps == 0:
            self.dead_start = is_dead(features, self.params)
        self.optimizer.step()
        self.rule.after_step(self.isolation)
        self.steps += 1
        update = None
        if self.topology.due(self.steps):
            update = self.topology.update(self.steps, self.optimizer)
            self.isolation.refresh()
        if self.mask_momentum:
            self._mask_momentum_buffers()
        return loss.detach(), all_logits.detach(), update

    @torch.no_grad()
    def _mask_momentum_buffers(self) -> None:
        """Reference quirk (sgd_nesterov): SGD's momentum buffer ×= the task's mask after every step
        and topology update, so momentum growth sees zeros at inactive positions."""
        for p, m in zip(self.params, self.topology.masks):
            buf = self.optimizer.state.get(p, {}).get("momentum_buffer")
            if buf is not None:
                buf.mul_(m)


@torch.no_grad()
def is_dead(features: torch.Tensor, params) -> bool:
    """A network that cannot learn: the features its head reads do not depend on the input (every
    row of a batch identical), or no masked weight gets a gradient. Zero-started free weights at
    narrow width or high sparsity give exactly this, and then the task never trains. (Constant
    logits alone are not enough: a task's own head rows start at 0 under ``free_init: zero``, and
    such a head still learns from input-dependent features.)"""
    constant = features.shape[0] > 1 and bool((features - features[:1]).abs().max() == 0)
    no_gradient = not any(p.grad is not None and bool(p.grad.any()) for p in params)
    return constant or no_gradient
