"""Dynamic sparse training rules: sparse init, magnitude prune, growth criteria, prune-rate schedule.

Each rule is a small function on one layer's flat tensors; ``GROWTH`` selects a growth rule by
name. Selection uses ``kthvalue`` (linear time) plus an exact tie break, never a full sort, and
returns exactly the number of positions asked for.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

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


# ---------------------------------------------------------------------- selection


def top_k_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Bool mask of exactly the ``k`` largest scores; ties broken by lowest flat index."""
    flat = scores.reshape(-1)
    n = flat.numel()
    if k <= 0:
        return torch.zeros_like(scores, dtype=torch.bool)
    if k >= n:
        return torch.ones_like(scores, dtype=torch.bool)
    chosen = torch.zeros_like(flat, dtype=torch.bool)
    candidates = _superset_of_top_k(flat, k)
    values = flat[candidates]
    # k-th largest = -(k-th smallest of -values)
    thr = -torch.kthvalue(-values, k).values
    above = values > thr
    need = k - int(above.sum())
    ties = torch.nonzero(values == thr).squeeze(1)[:need]  # candidates are in index order
    above[ties] = True
    chosen[candidates[above]] = True
    return chosen.view_as(scores)


_SAMPLE = 8192


def _superset_of_top_k(flat: torch.Tensor, k: int) -> torch.Tensor:
    """Ascending indices of a set that surely holds the k largest values.

    Selecting in a whole large tensor costs a copy and a linear-time pass that is slow on the
    CPU; the k largest are usually a small share. A threshold t, estimated from a sample a little
    below the k-th largest value, keeps {i : flat[i] ≥ t}; if that holds at least k elements,
    every one of the k largest is among them, so the exact selection can run on it alone.
    """
    n = flat.numel()
    if n > 8 * _SAMPLE and k < n // 4:
        # fixed seed: the choice of sample changes the cost, never the result
        gen = torch.Generator().manual_seed(0)
        sample = flat[torch.randint(n, (_SAMPLE,), generator=gen).to(flat.device)]
        rank = min(_SAMPLE, int(_SAMPLE * k / n * 1.5) + 32)  # from the top, with headroom
        t = -torch.kthvalue(-sample, rank).values
        keep = torch.nonzero(flat >= t).squeeze(1)
        if keep.numel() >= k:
            return keep
    return torch.arange(n, device=flat.device)


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
    new = mask.clone()
    if k == 0:
        return new, 0
    magnitude = weight.detach().reshape(-1)[active].abs().float()
    removed = active[top_k_mask(-magnitude, k)]
    new.view(-1)[removed] = False
    return new, k


# ---------------------------------------------------------------------- grow
# Each rule returns a [0, ∞) score per position; grow() takes the top ``n`` among the candidates.

def _uniform(shape, generator: torch.Generator, device) -> torch.Tensor:
    """U(0,1) drawn from a CPU generator (reproducible on any device), then moved to ``device``."""
    return torch.rand(tuple(shape), generator=generator).to(device)


def _random_score(weight, mask, n, *, generator, **_):
    return _uniform(weight.shape, generator, weight.device)


def _unfired_score(weight, mask, n, *, generator, fired, **_):
    # Never-active positions of this task first (score ≥ 1), the rest after (score < 1), random within.
    return _random_score(weight, mask, n, generator=generator) + (~fired).float()


def _gradient_score(weight, mask, n, *, grad, **_):
    if grad is None:
        return torch.zeros_like(weight, dtype=torch.float)
    return grad.detach().abs().float()


def _momentum_score(weight, mask, n, *, optimizer_state, **_):
    state = optimizer_state or {}
    if "exp_avg" in state:  # Adam: |m / (sqrt(v) + 1e-8)|, no bias correction, as the original
        return (state["exp_avg"] / (state["exp_avg_sq"].sqrt() + 1e-8)).abs().float()
    if state.get("momentum_buffer") is not None:  # SGD
        return state["momentum_buffer"].abs().float()
    return torch.zeros_like(weight, dtype=torch.float)


GROWTH: dict[str, Callable[..., torch.Tensor]] = {
    "random": _random_score,
    "unfired": _unfired_score,
    "gradient": _gradient_score,
    "momentum": _momentum_score,
}


def grow_random_bernoulli(mask: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """Reference quirk: each inactive position grows with p = n / #inactive, so the count is inexact."""
    inactive = ~mask
    p = n / max(int(inactive.sum()), 1)
    draw = _uniform(mask.shape, generator, mask.device) < p
    return mask | (draw & inactive)


def grow_unfired_topup(mask: torch.Tensor, n: int, generator: torch.Generator,
                       fired: torch.Tensor) -> torch.Tensor:
    """Reference quirk: exactly ``n`` never-fired positions if there are that many; otherwise all of
    them, topped up by Bernoulli draws among the other inactive positions (an inexact count)."""
    unfired = ~mask & ~fired
    n_unfired = int(unfired.sum())
    if n_unfired >= n:
        score = _uniform(mask.shape, generator, mask.device).masked_fill(~unfired, -1.0)
        return mask | top_k_mask(score, n)
    rest = ~mask & fired
    p = (n - n_unfired) / max(int(rest.sum()), 1)
    draw = _uniform(mask.shape, generator, mask.device) < p
    return mask | unfired | (draw & rest)


def sample_without_replacement(allowed: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor | None:
    """Flat indices of ``n`` positions drawn uniformly without replacement from ``allowed`` (bool).

    Rejection sampling: uniform draws over all positions, keeping the first ``n`` distinct allowed
    ones in draw order, which is a uniform random ``n``-subset. Costs O(n log n) instead of a
    random number per position. Returns None when allowed positions are too rare for it to pay.
    """
    flat = allowed.reshape(-1)
    total, count = flat.numel(), int(flat.sum())
    if count < n or count < total // 8:
        return None
    draws = math.ceil(n * total / count * 1.3) + 64
    for _ in range(4):
        idx = torch.randint(total, (draws,), generator=generator).to(flat.device)
        idx = idx[flat[idx]]
        ordered, order = torch.sort(idx, stable=True)
        first = torch.ones_like(ordered, dtype=torch.bool)
        first[1:] = ordered[1:] != ordered[:-1]
        keep = order[first].sort().values  # draw positions of first occurrences, in draw order
        if keep.numel() >= n:
            return idx[keep[:n]]
        draws *= 2
    return None


def _grow_by_sampling(mask: torch.Tensor, n: int, generator: torch.Generator,
                      fired: torch.Tensor | None) -> torch.Tensor | None:
    """random: n inactive positions; unfired: n never-fired ones first, the rest among the fired."""
    inactive = ~mask
    if fired is None:
        picked = sample_without_replacement(inactive, n, generator)
        return None if picked is None else _set(mask, picked)
    unfired = inactive & ~fired
    n_unfired = int(unfired.sum())
    if n_unfired >= n:
        picked = sample_without_replacement(unfired, n, generator)
        return None if picked is None else _set(mask, picked)
    rest = sample_without_replacement(inactive & fired, n - n_unfired, generator)
    return None if rest is None else _set(mask | unfired, rest)


def _set(mask: torch.Tensor, flat_idx: torch.Tensor) -> torch.Tensor:
    new = mask.clone()
    new.view(-1)[flat_idx] = True
    return new


def grow(rule: str, weight: torch.Tensor, mask: torch.Tensor, n: int, *,
         generator: torch.Generator | None = None, fired: torch.Tensor | None = None,
         grad: torch.Tensor | None = None, optimizer_state: dict | None = None,
         bernoulli: bool = False, unfired_topup: bool = False) -> torch.Tensor:
    """Activate exactly ``n`` inactive positions of ``mask`` chosen by ``rule``; returns the new mask.

    ``bernoulli`` (random) and ``unfired_topup`` (unfired) select the reference code's inexact variants.
    """
    if n <= 0:
        return mask.clone()
    if rule == "random" and bernoulli:
        return grow_random_bernoulli(mask, n, generator)
    if rule == "unfired" and unfired_topup:
        return grow_unfired_topup(mask, n, generator, fired)
    if rule in ("random", "unfired"):
        sampled = _grow_by_sampling(mask, n, generator, fired if rule == "unfired" else None)
        if sampled is not None:
            return sampled
    score = GROWTH[rule](weight, mask, n, generator=generator, fired=fired, grad=grad,
                         optimizer_state=optimizer_state)
    score = score.masked_fill(mask, -1.0)  # active positions are never candidates
    return mask | top_k_mask(score, n)


# ---------------------------------------------------------------------- one task's topology


class DynamicSparsity:
    """Topology of the current task's mask: prune then grow every ``update_frequency`` steps."""

    def __init__(self, params: Sequence[torch.Tensor], masks: list[torch.Tensor], *, growth: str,
                 initial_prune_rate: float, total_steps: int, update_frequency: int,
                 generator: torch.Generator, bernoulli: bool = False, unfired_topup: bool = False):
        self.params = list(params)
        self.masks = masks
        self.growth = growth
        self.initial_prune_rate = initial_prune_rate
        self.total_steps = total_steps
        self.update_frequency = update_frequency
        self.generator = generator
        self.bernoulli = bernoulli
        self.unfired_topup = unfired_topup
        self.fired = [m.clone() for m in masks]  # positions ever active during this task

    def due(self, step: int) -> bool:
        return step % self.update_frequency == 0

    def update(self, step: int, optimizer: torch.optim.Optimizer) -> dict:
        """Prune and regrow every layer in place in ``self.masks``. Returns a summary for the log."""
        rate = prune_rate(step, self.total_steps, self.initial_prune_rate)
        moved = 0
        for i, (p, mask) in enumerate(zip(self.params, self.masks)):
            pruned, removed = magnitude_prune(p, mask, rate)
            new = grow(self.growth, p, pruned, removed, generator=self.generator,
                       fired=self.fired[i], grad=p.grad, optimizer_state=optimizer.state.get(p),
                       bernoulli=self.bernoulli, unfired_topup=self.unfired_topup)
            moved += int((new & ~mask).sum())
            mask.copy_(new)
            self.fired[i] |= new
        return {"step": step, "prune_rate": rate, "regrown_new": moved}
