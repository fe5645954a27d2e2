"""Parameter isolation: per-task masks, frozen weights, the merged model.

Every conv and linear weight (every parameter whose name has no "bias", as in the original) is
masked. ``Backbone`` keeps, across tasks:

- ``task_masks[t]``: task t's final bool mask m_t;
- ``owned``: union of the finished tasks' masks: the positions some earlier task owns (one word
  for them throughout cldst); their weights are frozen;
- ``merged``: the shared weights (owned positions hold their owner's trained values, others 0);
- ``theta0``: the initial random weights.

While task t trains, ``TaskIsolation`` keeps the frozen weights bit-for-bit: gradients at owned
positions are zeroed (so optimizer state and the gradient growth rule see no signal there), and
after every optimizer step each weight is reset to ``w·train_mask + frozen_values`` — which
undoes whatever weight decay or momentum did to frozen or inactive positions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from cldst.method.dst import active_count, layer_densities, random_mask
from cldst.method.models import head
from cldst.method.selection import sample_mask


def masked_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    return [(n, p) for n, p in model.named_parameters() if "bias" not in n]


def like_param(mask: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    """``mask`` in the memory layout of ``param`` (channels_last weights get channels_last masks),
    so that elementwise work and the flat views of a topology update need no copies."""
    if mask.stride() == param.stride():
        return mask
    return torch.empty_like(param, dtype=mask.dtype).copy_(mask)


class Backbone:
    """The shared model plus everything the finished tasks own."""

    def __init__(self, model: nn.Module):
        self.model = model
        named = masked_parameters(model)
        self.names = [n for n, _ in named]
        self.params = [p for _, p in named]
        self.biases = [(n, p) for n, p in model.named_parameters() if "bias" in n]
        self.theta0 = [p.detach().clone() for p in self.params]
        self.merged = [torch.zeros_like(p) for p in self.params]
        self.owned = [torch.zeros_like(p, dtype=torch.bool) for p in self.params]
        self.task_masks: list[list[torch.Tensor]] = []
        self.shortfall: dict[str, int] = {}  # reuse none: positions the latest mask lacked, per layer
        head_weight = head(model).weight
        self.head_index = next(i for i, p in enumerate(self.params) if p is head_weight)

    @property
    def shapes(self) -> list[tuple[int, ...]]:
        return [tuple(p.shape) for p in self.params]

    def new_task_mask(self, density: float, method: str, generator: torch.Generator,
                      exact: bool = True, head_rows: slice | None = None,
                      reuse: bool = True) -> list[torch.Tensor]:
        """A fresh mask over the whole tensor of every layer, by uniform or ERK densities.

        With ``head_rows`` (clean protocol) the head's mask covers only those rows, the task's own
        classes: the densities are those of the task's network, whose head has just these rows.
        Without ``reuse`` the mask is drawn among the positions no finished task owns; a layer with
        fewer of them than its count gets them all, and ``shortfall`` says how many it lacked.
        """
        shapes = self.task_shapes(head_rows)
        dens = layer_densities(shapes, density, method)
        if not reuse:
            return self._mask_of_free_positions(shapes, dens, generator, exact, head_rows)
        masks = []
        for p, shape, d in zip(self.params, shapes, dens):
            m = random_mask(shape, d, generator, exact=exact, device=p.device)
            if shape != p.shape:  # the head's own rows
                full = torch.zeros(p.shape, dtype=torch.bool, device=p.device)
                full[head_rows] = m
                m = full
            masks.append(like_param(m, p))
        return masks

    def task_shapes(self, head_rows: slice | None) -> list[tuple[int, ...]]:
        """The shapes of a task's network: the backbone's, with the head cut to ``head_rows``."""
        shapes = self.shapes
        if head_rows is not None:
            h = self.head_index
            shapes[h] = (head_rows.stop - head_rows.start, *shapes[h][1:])
        return shapes

    def _mask_of_free_positions(self, shapes: list[tuple[int, ...]], dens: list[float], generator: torch.Generator,
                                exact: bool, head_rows: slice | None) -> list[torch.Tensor]:
        region = [torch.ones_like(u) for u in self.owned]  # where this task's mask may lie
        if head_rows is not None:
            h = self.head_index
            region[h].zero_()
            region[h][head_rows] = True
        self.shortfall = {}
        masks = []
        for name, p, shape, d, r, u in zip(self.names, self.params, shapes, dens, region, self.owned):
            allowed = r & ~u
            free = int(allowed.sum())
            if exact:
                want = active_count(math.prod(shape), d)
                m = sample_mask(allowed, min(want, free), generator)
                if want > free:
                    self.shortfall[name] = want - free
            else:  # Bernoulli draws, as bernoulli_masks, among the free positions
                m = (torch.rand(tuple(p.shape), generator=generator) < d).to(p.device) & allowed
            masks.append(like_param(m, p))
        return masks

    def fixed_positions(self, head_rows: slice | None, owned: bool) -> list[torch.Tensor | None]:
        """Per layer, the positions a task's DST must not move (None where there are none):
        the positions earlier tasks own if ``owned``, and the head rows outside ``head_rows``."""
        fixed: list[torch.Tensor | None] = [u.clone() if owned and bool(u.any()) else None for u in self.owned]
        if head_rows is not None:
            h = self.head_index
            others = torch.ones_like(self.owned[h])
            others[head_rows] = False
            fixed[h] = others if fixed[h] is None else fixed[h] | others
        return fixed

    def start_weights(self, mask: Sequence[torch.Tensor], free_from_theta0: bool) -> None:
        """Load the model for a new task: merged ⊙ m_t, with free positions from θ0 if asked.

        Free positions hold 0 in ``merged`` (unless a reference-protocol merge left a value there).
        """
        with torch.no_grad():
            for p, m, u, w, w0 in zip(self.params, mask, self.owned, self.merged, self.theta0):
                p.copy_((torch.where(u, w, w0) if free_from_theta0 else w) * m)

    def merge(self, mask: Sequence[torch.Tensor], nonzero_rule: bool = False, overwrite: bool = False) -> None:
        """After a task: its trained free positions join ``merged``; its mask joins ``owned``.

        ``nonzero_rule`` is the original's merge: every nonzero weight of the task's model is taken,
        the rest keep the previous merged value. ``overwrite`` (no isolation: fine-tuning) takes
        every position of the mask, owned ones included.
        """
        with torch.no_grad():
            for p, m, u, w in zip(self.params, mask, self.owned, self.merged):
                take = p != 0 if nonzero_rule else m if overwrite else m & ~u
                w.copy_(torch.where(take, p, w))
                u |= m
        self.task_masks.append([m.clone() for m in mask])

    def load_task_weights(self, t: int) -> None:
        """Set the model to merged ⊙ m_t, the network task t is evaluated with."""
        with torch.no_grad():
            for p, w, m in zip(self.params, self.merged, self.task_masks[t]):
                p.copy_(w * m)

    def capacity(self) -> float:
        """Fraction of all masked weights owned by some task."""
        owned = sum(int(u.sum()) for u in self.owned)
        return owned / sum(u.numel() for u in self.owned)

    def mask_densities(self, mask: Sequence[torch.Tensor], head_rows: slice | None = None) -> dict[str, float]:
        """Per layer name, the fraction of its weights active in ``mask``; for the head, of the
        weights in ``head_rows`` if given (a task's own rows: its network's head)."""
        dens = {n: float(m.float().mean()) for n, m in zip(self.names, mask)}
        if head_rows is not None:
            dens[self.names[self.head_index]] = float(mask[self.head_index][head_rows].float().mean())
        return dens

    def state_dict(self) -> dict:
        return {"merged": self.merged, "owned": self.owned, "theta0": self.theta0,
                "task_masks": self.task_masks, "biases": {n: p.detach().clone() for n, p in self.biases}}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            for dst, src in zip(self.merged, state["merged"]):
                dst.copy_(src)
            # "used": the key of checkpoints written before the layered layout
            for dst, src in zip(self.owned, state["owned"] if "owned" in state else state["used"]):
                dst.copy_(src)
            for dst, src in zip(self.theta0, state["theta0"]):
                dst.copy_(src)
            for n, p in self.biases:
                p.copy_(state["biases"][n])
        # copies, as the other entries: the backbone never shares a tensor with the state it loaded
        self.task_masks = [[m.to(p.device, copy=True) for m, p in zip(ms, self.params)] for ms in state["task_masks"]]


class TaskIsolation:
    """Keeps frozen positions fixed and inactive positions at zero while one task trains.

    Clean protocol: a frozen position in the task's mask (grown or drawn) is active with its
    owner's value. ``grown_frozen_zero`` (reference quirk) instead keeps a frozen position that
    becomes active by growth at 0 during training.

    The bool masks are the truth; the per-step work uses float copies of them, because on the CPU
    a float multiply is several times faster than a bool-to-float multiply or ``masked_fill_``.
    Each step costs one in-place op per tensor for the gradients and one for the weights.
    """

    def __init__(self, backbone: Backbone, mask: list[torch.Tensor], class_slice: slice,
                 grown_frozen_zero: bool = False, isolate: bool = True):
        self.backbone = backbone
        self.mask = mask
        self.grown_frozen_zero = grown_frozen_zero
        # without isolation (fine-tuning) nothing is frozen: every weight in the mask trains
        owned = backbone.owned if isolate else [torch.zeros_like(u) for u in backbone.owned]
        # Per layer that holds frozen positions: the float multiplier of the positions it may train
        # (also the gradient multiplier) and its owned values (merged ⊙ owned), fixed for the task.
        holds = [bool(u.any()) for u in owned]
        self.free = [(~u).float() if h else None for u, h in zip(owned, holds)]
        self.owned_values = [w * u if h else None for w, u, h in zip(backbone.merged, owned, holds)]
        self.grad_keep = [(p, f) for p, f in zip(backbone.params, self.free) if f is not None]
        self.train_mask = [torch.empty_like(p) for p in backbone.params]  # 1 where this task trains
        self.frozen_values = [torch.zeros_like(p) for p in backbone.params]  # owners' values in the mask
        self._build_multipliers(frozen_from_owned=True)
        # Head biases of other tasks' classes get no gradient from this task's logit slice; they
        # are still reset after each step so weight decay cannot move them.
        self.bias_keep = [(p, p.detach().clone(), class_slice) for _, p in backbone.biases]

    def zero_frozen_grads(self) -> None:
        for p, keep in self.grad_keep:
            if p.grad is not None:
                p.grad.mul_(keep)

    @torch.no_grad()
    def after_step(self) -> None:
        """w ← frozen_values + w · train_mask: trained positions keep their value, frozen ones get
        their owner's value back exactly, everything else becomes 0."""
        for p, tm, fv in zip(self.backbone.params, self.train_mask, self.frozen_values):
            torch.addcmul(fv, p, tm, out=p)
        self.keep_biases()

    @torch.no_grad()
    def keep_biases(self) -> None:
        """Other tasks' head biases back to their values at the task's start."""
        for p, saved, sl in self.bias_keep:
            p[: sl.start].copy_(saved[: sl.start])
            p[sl.stop:].copy_(saved[sl.stop:])

    @torch.no_grad()
    def refresh(self) -> None:
        """Recompute after a topology update changed ``mask`` in place, then re-apply it."""
        # grown_frozen_zero: only frozen positions that were active before keep their value
        self._build_multipliers(frozen_from_owned=not self.grown_frozen_zero)
        self.after_step()

    @torch.no_grad()
    def _build_multipliers(self, frozen_from_owned: bool) -> None:
        """train_mask ← mask ⊙ free; frozen_values ← owned ⊙ mask (or its old value ⊙ mask)."""
        for m, tm, fv, free, owned in zip(self.mask, self.train_mask, self.frozen_values, self.free, self.owned_values):
            tm.copy_(m)
            if free is None:  # no frozen positions in this layer: nothing is kept but the mask
                continue
            if frozen_from_owned:
                torch.mul(owned, tm, out=fv)
            else:
                fv.mul_(tm)
            tm.mul_(free)
