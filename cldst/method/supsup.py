"""SupSup (Wortsman et al., NeurIPS 2020) in cldst's loop: one learned supermask per task over
weights that never train.

The weights stay at their initialisation θ0 (PyTorch's Kaiming-uniform init of the backbone) for
every task. Task t learns a score per weight; its mask is the per-layer top-k by score at the
task's density, uniform or ERK (cldst/method/scores.py: edge-popup with a straight-through
gradient). Only the scores (and, where the network has them, the task's own head biases) train.

Nothing is ever frozen, since nothing is trained: no position becomes owned, capacity stays 0 and
never runs out. The merged model is θ0 everywhere, and task j is evaluated with θ0 ⊙ m_j.
"""

from __future__ import annotations

import torch

from cldst.method.scores import ScoreMethod


class SupSup(ScoreMethod):
    flops_rule = "supsup"
    trains_weights = False

    def start_values(self) -> list[torch.Tensor]:
        return [w0.clone() for w0 in self.backbone.theta0]

    @torch.no_grad()
    def merge(self) -> None:
        """Keep the mask; the shared weights are θ0 at every position, and no position is owned."""
        bb = self.backbone
        for w, w0 in zip(bb.merged, bb.theta0):
            w.copy_(w0)
        bb.task_masks.append([m.clone() for m in self.mask])
