"""PackNet (Mallya & Lazebnik, CVPR 2018) in cldst's loop: train, prune by magnitude, retrain, freeze.

Task t's epochs (``epochs``) are split in two phases:

1. **Train** (the first ``epochs − retrain_epochs`` epochs): the mask is every position of the
   network (but other tasks' head rows). Positions some earlier task owns are read with their
   frozen values, never changed (DST's ``TaskIsolation``); every free position trains, from θ0.
2. **Prune, then retrain** (the last ``retrain_epochs`` epochs): per layer, the task keeps the
   ``layer_counts`` free weights of largest |w| (its density, uniform or ERK, times the layer's
   size; ties to the lowest index) and drops the rest from its mask. Dropped weights are held at
   0 from then on; the kept ones train on, with the same optimizer and learning-rate schedule.

At the merge the kept weights become the task's own (frozen for good); the pruned positions stay
free for later tasks. Task t's mask is cumulative: every position earlier tasks own (their masks'
union) plus its own, so m_t ⊇ m_s for s < t on every layer but the head, where each task has its
own rows. A layer with fewer free positions than its count keeps them all (``shortfall``).
"""

from __future__ import annotations

import torch

from cldst.method.masks import TaskIsolation
from cldst.method.selection import top_k_mask
from cldst.method.subnetwork import SubnetworkMethod, layer_counts, task_region


class PackNet(SubnetworkMethod):
    flops_rule = "packnet"

    def draw_mask(self) -> list[torch.Tensor]:
        bb = self.backbone
        self.counts = layer_counts(bb, self.cfg, self.classes)
        self.prune_epoch = self.cfg.epochs - self.cfg.retrain_epochs
        self.pruned = False
        self.mask = task_region(bb, self.classes)
        for name, m, u, k in zip(bb.names, self.mask, bb.owned, self.counts):
            free = int(torch.count_nonzero(m & ~u))
            if free < k:
                self.shortfall[name] = k - free
        return self.mask

    def before_epoch(self, epoch: int, isolation: TaskIsolation) -> bool:
        """At the first retraining epoch: prune, and hold the pruned weights at 0 from now on."""
        if self.pruned or epoch < self.prune_epoch:
            return False
        self.prune()
        isolation.refresh()  # train and frozen multipliers of the pruned mask; pruned weights → 0
        return True

    @torch.no_grad()
    def prune(self) -> None:
        """Keep, per layer, the task's ``counts`` free weights of largest magnitude."""
        bb = self.backbone
        for p, m, u, k in zip(bb.params, self.mask, bb.owned, self.counts):
            own = m & ~u
            keep = top_k_mask(p.detach().abs(), min(k, int(torch.count_nonzero(own))), exclude=~own)
            m.copy_((m & u) | keep)
        self.pruned = True

    def state_dict(self) -> dict:
        return {"pruned": self.pruned}

    def load_state_dict(self, state: dict) -> None:
        self.pruned = bool(state["pruned"])
