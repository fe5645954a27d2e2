"""Dynamic sparse training: sparse init, magnitude prune, the prune-rate schedule, and one task's
topology updates (prune, then grow by a rule from cldst/method/growth.py's registry).

Each rule is a small function on one layer's tensors. The exact-count selection the rules use
(top k, random subsets) is in cldst/method/selection.py.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from cldst.config import BANDIT
from cldst.method.growth import GrowthInputs, grow_by
from cldst.method.growth_bandit import GrowthBandit
from cldst.method.selection import top_k_mask

# ---------------------------------------------------------------------- init


def layer_densities(shapes: Sequence[Sequence[int]], density: float, method: str) -> list[float]:
    """Per-layer density whose weighted mean is ``density``.

    uniform: every layer gets ``density``.
    ERK (Evci et al. 2020, power 1): d_l = ε · (Σ dims_l) / (Π dims_l). ε solves
    Σ_l d_l n_l = density · Σ_l n_l. A layer whose d_l would exceed 1 is made dense, its weights
    are taken out of the budget, and ε is solved again over the remaining layers.
    """
    if method == "uniform":
        return [float(density)] * len(shapes)
    if method != "ERK":
        raise ValueError(f"unknown sparse init {method!r}")
    numel = [math.prod(s) for s in shapes]
    raw = [sum(s) / math.prod(s) for s in shapes]
    budget = density * sum(numel)
    dense: set[int] = set()
    eps = 0.0
    while True:
        rest = [i for i in range(len(shapes)) if i not in dense]
        if not rest:
            break
        eps = (budget - sum(numel[i] for i in dense)) / sum(raw[i] * numel[i] for i in rest)
        over = [i for i in rest if eps * raw[i] > 1 + 1e-9]  # tolerance: at density 1, ε·raw ≈ 1
        if not over:
            break
        dense.add(max(over, key=lambda i: raw[i]))
    return [1.0 if i in dense else min(1.0, eps * raw[i]) for i in range(len(shapes))]


def active_count(numel: int, density: float) -> int:
    """Exact number of active weights of a layer at ``density`` (clean protocol)."""
    return min(numel, max(1, round(density * numel)))


def random_mask(shape: Sequence[int], density: float, generator: torch.Generator,
                exact: bool = True, device: torch.device | str = "cpu") -> torch.Tensor:
    """A bool mask: exactly ``active_count`` positions if ``exact``, else a Bernoulli(density) draw."""
    scores = torch.rand(tuple(shape), generator=generator).to(device)
    if not exact:
        return scores < density
    return top_k_mask(scores, active_count(scores.numel(), density))


# ---------------------------------------------------------------------- prune


def prune_rate(step: int, total_steps: int, initial: float = 0.5, final: float = 0.005) -> float:
    """Cosine decay: r(s) = final + (initial − final)·(1 + cos(π s / S))/2, from initial to final."""
    s = min(max(step, 0), total_steps)
    return final + (initial - final) * (1 + math.cos(math.pi * s / max(total_steps, 1))) / 2


def magnitude_prune(weight: torch.Tensor, mask: torch.Tensor, rate: float) -> tuple[torch.Tensor, int]:
    """Drop the ceil(rate · n_active) active weights of smallest |w|. Returns (new mask, removed).

    Inactive positions never rank; active exact zeros rank smallest; ties go to the lowest index.
    """
    active = torch.nonzero(mask.reshape(-1)).squeeze(1)  # selection runs on the active weights only
    n_active = active.numel()
    k = min(n_active, math.ceil(rate * n_active))
    new = mask.clone(memory_format=torch.contiguous_format)
    if k == 0:
        return new, 0
    negative_magnitude = weight.detach().reshape(-1)[active].float().abs_().neg_()
    new.view(-1)[active] = ~top_k_mask(negative_magnitude, k)
    return new, k


def magnitude_prune_threshold(weight: torch.Tensor, mask: torch.Tensor, rate: float) -> tuple[torch.Tensor, int]:
    """Reference quirk: the original's prune. thr = the k-th smallest active |w|, k = ceil(rate · n);
    keep the active weights with |w| > thr, so every weight tied at thr goes (all active exact zeros,
    whenever k reaches them), which can be more than k. With k = 0 the active zeros go.
    Returns (new mask, removed)."""
    active = torch.nonzero(mask.reshape(-1)).squeeze(1)
    n_active = active.numel()
    k = min(n_active, math.ceil(rate * n_active))
    new = mask.clone(memory_format=torch.contiguous_format)
    if n_active == 0:
        return new, 0
    magnitude = weight.detach().reshape(-1)[active].float().abs()
    thr = torch.kthvalue(magnitude, k).values if k > 0 else magnitude.new_zeros(())
    keep = magnitude > thr
    new.view(-1)[active] = keep
    return new, n_active - int(torch.count_nonzero(keep))


# ---------------------------------------------------------------------- one task's topology


class DynamicSparsity:
    """Topology of the current task's mask: prune then grow every ``update_frequency`` steps.

    ``fixed[l]`` (bool, or None for none) marks positions whose state DST never changes: they are
    neither pruned nor grown. In the clean protocol these are the positions earlier tasks own (the
    reused part m_t ∩ owned stays as drawn) and other tasks' head rows, so that DST only moves
    weights the task can train and per layer |m_t ∩ owned| and |m_t \\ owned| never change.
    """

    def __init__(self, params: Sequence[torch.Tensor], masks: list[torch.Tensor], *, growth: str,
                 initial_prune_rate: float, total_steps: int, update_frequency: int,
                 generator: torch.Generator, fixed: Sequence[torch.Tensor | None] | None = None,
                 random_ties: bool = True, bernoulli: bool = False, unfired_topup: bool = False,
                 threshold_prune: bool = False, ranks_active: bool = False):
        self.params = list(params)
        self.ranks_active = ranks_active
        self.prune = magnitude_prune_threshold if threshold_prune else magnitude_prune
        self.masks = masks
        self.fixed = list(fixed) if fixed is not None else [None] * len(self.params)
        self.random_ties = random_ties
        self.growth = growth
        self.initial_prune_rate = initial_prune_rate
        self.total_steps = total_steps
        self.update_frequency = update_frequency
        self.generator = generator
        self.bernoulli = bernoulli
        self.unfired_topup = unfired_topup
        self.fired = [m.clone() for m in masks]  # positions ever active during this task
        # growth "bandit": a rule chosen per update (cldst/method/growth_bandit.py), rewarded by the
        # share of the weights the last update grew that survive this update's prune
        self.bandit = GrowthBandit(generator) if growth == BANDIT else None
        self.grown = [torch.zeros_like(m) for m in masks] if self.bandit is not None else None

    def due(self, step: int) -> bool:
        """An update at every ``update_frequency``-th step; never with 0 (a static mask)."""
        return self.update_frequency > 0 and step % self.update_frequency == 0

    def update(self, step: int, optimizer: torch.optim.Optimizer) -> dict:
        """Prune every layer, then regrow it, in place in ``self.masks``. Returns a summary for the log.

        A layer's tensors are seen in the weight's memory order (flat index = position in memory),
        so a channels_last layer's flat views need no copies; index tie breaks follow that order.
        Pruning draws nothing from the generator, so pruning every layer before growing any draws
        what a layer-by-layer loop draws.
        """
        rate = prune_rate(step, self.total_steps, self.initial_prune_rate)
        pruned = [self._prune(i, rate) for i in range(len(self.params))]
        rule = self.growth if self.bandit is None else self._bandit_rule(pruned)
        moved = sum(self._grow(i, rule, keep, removed, optimizer) for i, (keep, removed) in enumerate(pruned))
        summary = {"step": step, "prune_rate": rate, "regrown_new": moved}
        return summary if self.bandit is None else {**summary, "growth_rule": rule}

    def _prune(self, i: int, rate: float) -> tuple[torch.Tensor, int]:
        """Layer i's mask after magnitude pruning (memory order), and how many were removed."""
        p, order = self.params[i], _memory_order(self.params[i])
        weight, mask, fixed = order(p.detach()), order(self.masks[i]), self.fixed[i]
        if fixed is None:
            return self.prune(weight, mask, rate)
        fixed = order(fixed)
        pruned, removed = self.prune(weight, mask & ~fixed, rate)
        pruned |= mask & fixed
        return pruned, removed

    def _grow(self, i: int, rule: str, pruned: torch.Tensor, removed: int, optimizer) -> int:
        """Regrow ``removed`` weights of layer i by ``rule``; returns how many were not active before."""
        p, order = self.params[i], _memory_order(self.params[i])
        state = {k: order(v) if torch.is_tensor(v) and v.dim() == p.dim() else v
                 for k, v in (optimizer.state.get(p) or {}).items()}
        mask, fired = order(self.masks[i]), order(self.fired[i])
        fixed = None if self.fixed[i] is None else order(self.fixed[i])
        inputs = GrowthInputs(generator=self.generator, fired=fired,
                              grad=None if p.grad is None else order(p.grad), optimizer_state=state,
                              fixed=fixed, random_ties=self.random_ties, bernoulli=self.bernoulli,
                              unfired_topup=self.unfired_topup, ranks_active=self.ranks_active,
                              logical=_logical_order(p) if self.ranks_active else None)
        new = grow_by(rule, order(p.detach()), pruned, removed, inputs)
        moved = int(torch.count_nonzero(new & ~mask))
        if self.grown is not None:
            order(self.grown[i]).copy_(new & ~pruned)
        mask.copy_(new)
        fired |= new
        return moved

    def _bandit_rule(self, pruned: list[tuple[torch.Tensor, int]]) -> str:
        """Reward the last update's rule with the share of what it grew that survived this prune
        (every layer's pruned mask is in memory order, as ``grown``), then choose this update's."""
        survived = grown = 0
        for i, (keep, _) in enumerate(pruned):
            last = _memory_order(self.params[i])(self.grown[i])
            grown += int(torch.count_nonzero(last))
            survived += int(torch.count_nonzero(last & keep))
        return self.bandit.update(survived, grown)


def _logical_order(param: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """The inverse of ``_memory_order``: a memory-order view back in ``param``'s logical shape."""
    if _memory_order(param)(param) is not param:
        return lambda t: t.permute(0, 3, 1, 2)
    return lambda t: t


def _memory_order(param: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """A view that puts a tensor shaped like ``param`` in ``param``'s memory order: NHWC for a
    channels_last weight (a free view of every tensor in that layout), the identity otherwise."""
    if param.dim() == 4 and not param.is_contiguous() and param.is_contiguous(memory_format=torch.channels_last):
        return lambda t: t.permute(0, 2, 3, 1)
    return lambda t: t
