"""WSN, Winning SubNetworks (Kang et al., ICML 2022) in cldst's loop: learned scores over every
weight; a task trains only the free weights its mask selects and reuses the owned ones it selects.

Task t learns a score per weight over the whole network, positions earlier tasks own included. Its
mask is the per-layer top-c by score, c the task's density (uniform or ERK;
cldst/method/scores.py: edge-popup with a straight-through gradient). The network computes with
w ⊙ m, where w holds the owners' frozen values at owned positions and, at free positions, θ0 or
what this task has trained there. Gradient reaches every score (so which owned weights to reuse
is learned) and the free weights in the mask; owned weights are read, never changed.

After the task its final mask m_t is stored, its free positions' values join the shared model and
they become owned (DST's merge): capacity grows by the new positions of m_t only.
"""

from __future__ import annotations

import torch

from cldst.method.scores import ScoreMethod


class WSN(ScoreMethod):
    flops_rule = "wsn"
    trains_weights = True

    def start_values(self) -> list[torch.Tensor]:
        bb = self.backbone
        return [torch.where(u, w, w0).requires_grad_() for u, w, w0 in zip(bb.owned, bb.merged, bb.theta0)]
