"""Learned masks by score (edge-popup, Ramanujan et al. 2020), shared by SupSup and WSN.

Each task learns one score s per weight, in every masked layer. Its mask is, per layer, the
``layer_counts`` positions of largest |s| (exactly; ties to the lowest index) inside the task's
region (everywhere but other tasks' head rows). The network computes with w ⊙ m, where w are the
underlying weights: the model's parameters hold w ⊙ m, and ``weights`` hold w.

Gradient (straight-through): the top-k of |s| is treated as the identity on |s| in the backward
pass, so with g = ∂L/∂(w ⊙ m), the dense gradient autograd computes for each weight tensor,

    ∂L/∂s := g ⊙ w ⊙ sign(s)     at every position, in the mask or not;
    ∂L/∂w := g ⊙ m ⊙ free   (WSN only: free positions in the mask; SupSup trains no weight).

After every optimizer step the mask is selected again from the new scores. Scores start fresh for
each task, uniform in ±1/√fan_in (Kaiming's bound), drawn from the task's generator.

Training cost (cldst/method/flops.py): the forward and the input gradients are sparse (f_S each),
the score gradient is dense at every step (f_D): 2·f_S + f_D per example, as momentum growth.
"""

from __future__ import annotations

import math

import torch

from cldst.method.masks import TaskIsolation, like_param
from cldst.method.selection import top_k_mask
from cldst.method.subnetwork import SubnetworkMethod, layer_counts, task_region


class ScoreMethod(SubnetworkMethod):
    """A task whose mask is the top-k of its scores; ``trains_weights``: free weights in the mask train."""

    trains_weights = False

    def draw_mask(self) -> list[torch.Tensor]:
        bb = self.backbone
        self.counts = layer_counts(bb, self.cfg, self.classes)
        self.outside = [None if bool(r.all()) else ~r for r in task_region(bb, self.classes)]
        self.scores = []
        for p in bb.params:
            bound = 1 / math.sqrt(p[0].numel())
            s = (torch.rand(tuple(p.shape), generator=self.generator) * 2 - 1) * bound
            self.scores.append(s.to(p.device).requires_grad_())
        self.weights = self.start_values()
        self.saved = [torch.empty_like(w) for w in self.weights] if self.trains_weights else []
        self.trainable = [~u for u in bb.owned]  # free positions
        self.mask = [like_param(torch.zeros(p.shape, dtype=torch.bool, device=p.device), p) for p in bb.params]
        self.select()
        return self.mask

    def start_values(self) -> list[torch.Tensor]:
        raise NotImplementedError

    @torch.no_grad()
    def select(self) -> None:
        """mask ← per layer the top ``counts`` of |s| inside the task's region."""
        for s, m, k, out in zip(self.scores, self.mask, self.counts, self.outside):
            m.copy_(top_k_mask(s.detach().abs(), k, exclude=out))

    def optimizer_params(self, model: torch.nn.Module) -> list[torch.Tensor]:
        rest = [*(w for w in self.weights if w.requires_grad), *(p for _, p in self.backbone.biases)]
        return [{"params": self.scores, "lr": self.cfg.score_lr}, *([{"params": rest}] if rest else [])]

    def before_forward(self) -> None:
        for p in self.backbone.params:  # not the optimizer's: their gradient would accumulate
            p.grad = None

    def after_backward(self) -> None:
        for p, s, w, m, free in zip(self.backbone.params, self.scores, self.weights, self.mask, self.trainable):
            g = p.grad
            s.grad = (g * w * s.detach().sign()).contiguous() if g is not None else torch.zeros_like(s)
            if w.requires_grad:
                w.grad = g * (m & free) if g is not None else torch.zeros_like(w)
        with torch.no_grad():
            for w, saved in zip(self.weights, self.saved):
                saved.copy_(w)

    @torch.no_grad()
    def after_step(self, isolation: TaskIsolation) -> None:
        """Only free weights in the step's mask keep their update (momentum moves nothing else),
        then the mask is selected again and the model computes with w ⊙ m."""
        isolation.keep_biases()
        for w, saved, m, free in zip(self.weights, self.saved, self.mask, self.trainable):
            torch.where(m & free, w, saved, out=w)
        self.select()
        for p, w, m in zip(self.backbone.params, self.weights, self.mask):
            torch.mul(w, m, out=p)

    def state_dict(self) -> dict:
        return {"scores": [s.detach().clone() for s in self.scores],
                "weights": [w.detach().clone() for w in self.weights]}

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        for dst, src in zip([*self.scores, *self.weights], [*state["scores"], *state["weights"]]):
            dst.copy_(src)
