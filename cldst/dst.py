"""Dynamic sparse training rules: sparse init, magnitude prune, growth criteria, prune-rate schedule.

Each rule is a small function on one layer's flat tensors; ``grow`` selects a growth rule by name.
The exact-count selection the rules use (top k, random subsets) is in cldst/selection.py.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from .selection import sample_mask, top_k_mask

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


# ---------------------------------------------------------------------- grow
# random and unfired draw positions; gradient and momentum score every position and take the top n.


def _uniform(shape, generator: torch.Generator, device) -> torch.Tensor:
    """U(0,1) drawn from a CPU generator (reproducible on any device), then moved to ``device``."""
    return torch.rand(tuple(shape), generator=generator).to(device)


def _gradient_score(grad: torch.Tensor | None, weight: torch.Tensor) -> torch.Tensor:
    if grad is None:
        return torch.zeros_like(weight, dtype=torch.float)
    return grad.detach().float().abs()


def _momentum_score(optimizer_state: dict | None, weight: torch.Tensor) -> torch.Tensor:
    state = optimizer_state or {}
    if "exp_avg" in state:  # Adam: |m / (sqrt(v) + 1e-8)|, no bias correction, as the original
        denom = state["exp_avg_sq"].float().sqrt().add_(1e-8)
        return torch.div(state["exp_avg"].float(), denom, out=denom).abs_()
    if state.get("momentum_buffer") is not None:  # SGD
        return state["momentum_buffer"].float().abs()
    return torch.zeros_like(weight, dtype=torch.float)


def grow_unfired(mask: torch.Tensor, n: int, generator: torch.Generator, fired: torch.Tensor,
                 candidates: torch.Tensor) -> torch.Tensor:
    """n never-fired ``candidates`` at random; if there are fewer, all of them and the rest at
    random among the fired candidates."""
    unfired = candidates & ~fired
    n_unfired = int(torch.count_nonzero(unfired))
    if n_unfired >= n:
        return mask | sample_mask(unfired, n, generator)
    return mask | unfired | sample_mask(candidates & fired, n - n_unfired, generator)


def grow_random_bernoulli(mask: torch.Tensor, n: int, generator: torch.Generator,
                          candidates: torch.Tensor) -> torch.Tensor:
    """Reference quirk: each candidate grows with p = n / #candidates, so the count is inexact."""
    p = n / max(int(candidates.sum()), 1)
    draw = _uniform(mask.shape, generator, mask.device) < p
    return mask | (draw & candidates)


def grow_unfired_topup(mask: torch.Tensor, n: int, generator: torch.Generator,
                       fired: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """Reference quirk: exactly ``n`` never-fired candidates if there are that many; otherwise all
    of them, topped up by Bernoulli draws among the other candidates (an inexact count)."""
    unfired = candidates & ~fired
    n_unfired = int(unfired.sum())
    if n_unfired >= n:
        score = _uniform(mask.shape, generator, mask.device).masked_fill(~unfired, -1.0)
        return mask | top_k_mask(score, n)
    rest = candidates & fired
    p = (n - n_unfired) / max(int(rest.sum()), 1)
    draw = _uniform(mask.shape, generator, mask.device) < p
    return mask | unfired | (draw & rest)


def grow(rule: str, weight: torch.Tensor, mask: torch.Tensor, n: int, *,
         generator: torch.Generator | None = None, fired: torch.Tensor | None = None,
         grad: torch.Tensor | None = None, optimizer_state: dict | None = None,
         fixed: torch.Tensor | None = None, random_ties: bool = False,
         bernoulli: bool = False, unfired_topup: bool = False, ranks_active: bool = False,
         logical: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """Activate ``n`` candidates chosen by ``rule``; returns the new mask. The candidates are the
    positions neither active in ``mask`` nor ``fixed`` (bool: positions growth must not touch).

    ``random_ties``: score ties (gradient, momentum) are broken at random with ``generator``, not by
    index. ``bernoulli`` (random) and ``unfired_topup`` (unfired) select the reference code's inexact
    variants. ``ranks_active`` (gradient, momentum; reference quirk) is the original's selection: the
    first n of a descending ``torch.sort`` of every position's score, active ones scored 0, in the
    weight's logical (row-major) order, which ``logical`` gives for the tensors passed here. A
    tied slot that falls on an active position is lost, so fewer than n grow. The sort is not
    stable: ties come in the order of the device's sort algorithm (on the CPU, largely from the
    high indices), as in the original on the same device.
    """
    if n <= 0:
        return mask.clone()
    blocked = mask if fixed is None else mask | fixed
    if rule == "random":
        if bernoulli:
            return grow_random_bernoulli(mask, n, generator, ~blocked)
        return mask | sample_mask(~blocked, n, generator)
    if rule == "unfired":
        if unfired_topup:
            return grow_unfired_topup(mask, n, generator, fired, ~blocked)
        return grow_unfired(mask, n, generator, fired, ~blocked)
    if rule == "gradient":
        score = _gradient_score(grad, weight)
    elif rule == "momentum":
        score = _momentum_score(optimizer_state, weight)
    else:
        raise ValueError(f"unknown growth rule {rule!r}")
    if ranks_active:
        return mask | _sorted_first(score.masked_fill(mask, 0.0), n, fixed, logical)
    chosen = top_k_mask(score, n, exclude=blocked, generator=generator if random_ties else None)
    return chosen.logical_or_(mask)


def _sorted_first(score: torch.Tensor, n: int, fixed: torch.Tensor | None,
                  logical: Callable[[torch.Tensor], torch.Tensor] | None) -> torch.Tensor:
    """The first n positions of a descending sort of ``score`` in logical order (fixed ones last)."""
    if fixed is not None:
        score = score.masked_fill(fixed, -1.0)
    view = logical or (lambda t: t)
    flat = view(score).reshape(-1)  # a row-major copy of the logical tensor
    chosen = torch.zeros_like(flat, dtype=torch.bool)
    chosen[torch.sort(flat, descending=True).indices[:n]] = True
    out = torch.zeros_like(score, dtype=torch.bool)
    view(out).copy_(chosen.view(view(out).shape))
    if fixed is not None:
        out &= ~fixed
    return out


# ---------------------------------------------------------------------- one task's topology


class DynamicSparsity:
    """Topology of the current task's mask: prune then grow every ``update_frequency`` steps.

    ``fixed[l]`` (bool, or None for none) marks positions whose state DST never changes: they are
    neither pruned nor grown. In the clean protocol these are the positions earlier tasks own (the
    reused part m_t ∩ used stays as drawn) and other tasks' head rows, so that DST only moves
    weights the task can train and per layer |m_t ∩ used| and |m_t \\ used| never change.
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

    def due(self, step: int) -> bool:
        """An update at every ``update_frequency``-th step; never with 0 (a static mask)."""
        return self.update_frequency > 0 and step % self.update_frequency == 0

    def update(self, step: int, optimizer: torch.optim.Optimizer) -> dict:
        """Prune and regrow every layer in place in ``self.masks``. Returns a summary for the log.

        A layer's tensors are seen in the weight's memory order (flat index = position in memory),
        so a channels_last layer's flat views need no copies; index tie breaks follow that order.
        """
        rate = prune_rate(step, self.total_steps, self.initial_prune_rate)
        moved = 0
        for p, mask, fired, fixed in zip(self.params, self.masks, self.fired, self.fixed):
            order = _memory_order(p)
            state = {k: order(v) if torch.is_tensor(v) and v.dim() == p.dim() else v
                     for k, v in (optimizer.state.get(p) or {}).items()}
            weight, mask, fired = order(p.detach()), order(mask), order(fired)
            if fixed is None:
                pruned, removed = self.prune(weight, mask, rate)
            else:
                fixed = order(fixed)
                pruned, removed = self.prune(weight, mask & ~fixed, rate)
                pruned |= mask & fixed
            new = grow(self.growth, weight, pruned, removed, generator=self.generator, fired=fired,
                       grad=None if p.grad is None else order(p.grad), optimizer_state=state,
                       fixed=fixed, random_ties=self.random_ties,
                       bernoulli=self.bernoulli, unfired_topup=self.unfired_topup,
                       ranks_active=self.ranks_active,
                       logical=_logical_order(p) if self.ranks_active else None)
            moved += int(torch.count_nonzero(new & ~mask))
            mask.copy_(new)
            fired |= new
        return {"step": step, "prune_rate": rate, "regrown_new": moved}


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
