"""Growth rules: which inactive positions a topology update activates, one small function per rule,
registered by name (as rigl-reproducibility's ``funcs/grow.py``).

A rule takes one layer's weight, its pruned mask, the number ``n`` to grow, the ``blocked``
positions (active, or fixed: growth must not touch them) and the :class:`GrowthInputs` it may read,
and returns the new mask. random and unfired draw positions; gradient and momentum score every
position and take the top n. The reference protocol's inexact variants are options of the same
rules (``bernoulli``, ``unfired_topup``, ``ranks_active``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from cldst.method.selection import sample_mask, top_k_mask


@dataclass
class GrowthInputs:
    """What a growth rule may read, for one layer (tensors shaped like the weight)."""

    generator: torch.Generator | None = None  # random draws and random tie breaks
    fired: torch.Tensor | None = None  # positions ever active during the task (unfired)
    grad: torch.Tensor | None = None  # the dense gradient (gradient)
    optimizer_state: dict | None = None  # Adam's exp_avg/exp_avg_sq or SGD's momentum_buffer (momentum)
    fixed: torch.Tensor | None = None  # positions growth must not touch
    random_ties: bool = False  # score ties (gradient, momentum) broken at random, not by index
    bernoulli: bool = False  # reference quirk (random): Bernoulli draws, an inexact count
    unfired_topup: bool = False  # reference quirk (unfired): short counts topped up by Bernoulli draws
    # reference quirk (gradient, momentum): the original's sort over every position, active ones
    # scored 0, in the weight's logical (row-major) order, which ``logical`` gives
    ranks_active: bool = False
    logical: Callable[[torch.Tensor], torch.Tensor] | None = None


Rule = Callable[[torch.Tensor, torch.Tensor, int, torch.Tensor, GrowthInputs], torch.Tensor]
GROWTH_RULES: dict[str, Rule] = {}


def growth_rule(name: str) -> Callable[[Rule], Rule]:
    def register(rule: Rule) -> Rule:
        GROWTH_RULES[name] = rule
        return rule
    return register


def grow_by(rule: str, weight: torch.Tensor, mask: torch.Tensor, n: int, inputs: GrowthInputs) -> torch.Tensor:
    """Activate ``n`` candidates chosen by ``rule``; returns the new mask. The candidates are the
    positions neither active in ``mask`` nor ``inputs.fixed``."""
    if rule not in GROWTH_RULES:
        raise ValueError(f"unknown growth rule {rule!r}; one of {', '.join(GROWTH_RULES)}")
    if n <= 0:
        return mask.clone()
    blocked = mask if inputs.fixed is None else mask | inputs.fixed
    return GROWTH_RULES[rule](weight, mask, n, blocked, inputs)


def grow(rule: str, weight: torch.Tensor, mask: torch.Tensor, n: int, **inputs) -> torch.Tensor:
    """:func:`grow_by` with the inputs as keywords (the fields of :class:`GrowthInputs`)."""
    return grow_by(rule, weight, mask, n, GrowthInputs(**inputs))


# ---------------------------------------------------------------------- the rules


@growth_rule("random")
def grow_random(weight, mask, n, blocked, inputs: GrowthInputs) -> torch.Tensor:
    """n candidates uniformly at random (SET); ``bernoulli``: each with p = n / #candidates."""
    if inputs.bernoulli:
        p = n / max(int((~blocked).sum()), 1)
        return mask | ((_uniform(mask.shape, inputs.generator, mask.device) < p) & ~blocked)
    return mask | sample_mask(~blocked, n, inputs.generator)


@growth_rule("unfired")
def grow_unfired(weight, mask, n, blocked, inputs: GrowthInputs) -> torch.Tensor:
    """n never-fired candidates at random; if there are fewer, all of them and the rest at random
    among the fired candidates (``unfired_topup``: the rest by Bernoulli draws, an inexact count)."""
    candidates = ~blocked
    unfired = candidates & ~inputs.fired
    n_unfired = int(torch.count_nonzero(unfired))
    if inputs.unfired_topup:
        if n_unfired >= n:
            score = _uniform(mask.shape, inputs.generator, mask.device).masked_fill(~unfired, -1.0)
            return mask | top_k_mask(score, n)
        rest = candidates & inputs.fired
        p = (n - n_unfired) / max(int(rest.sum()), 1)
        return mask | unfired | ((_uniform(mask.shape, inputs.generator, mask.device) < p) & rest)
    if n_unfired >= n:
        return mask | sample_mask(unfired, n, inputs.generator)
    return mask | unfired | sample_mask(candidates & inputs.fired, n - n_unfired, inputs.generator)


@growth_rule("gradient")
def grow_gradient(weight, mask, n, blocked, inputs: GrowthInputs) -> torch.Tensor:
    """The n largest |dense gradient| (RigL)."""
    score = torch.zeros_like(weight, dtype=torch.float) if inputs.grad is None else inputs.grad.detach().float().abs()
    return _top_scores(score, mask, n, blocked, inputs)


@growth_rule("momentum")
def grow_momentum(weight, mask, n, blocked, inputs: GrowthInputs) -> torch.Tensor:
    """The n largest |momentum| (SNFS): Adam's |m / (√v + 1e-8)| without bias correction, as the
    original, or SGD's |momentum buffer|."""
    state = inputs.optimizer_state or {}
    if "exp_avg" in state:
        denom = state["exp_avg_sq"].float().sqrt().add_(1e-8)
        score = torch.div(state["exp_avg"].float(), denom, out=denom).abs_()
    elif state.get("momentum_buffer") is not None:
        score = state["momentum_buffer"].float().abs()
    else:
        score = torch.zeros_like(weight, dtype=torch.float)
    return _top_scores(score, mask, n, blocked, inputs)


# ---------------------------------------------------------------------- selection helpers


def _top_scores(score: torch.Tensor, mask: torch.Tensor, n: int, blocked: torch.Tensor,
                inputs: GrowthInputs) -> torch.Tensor:
    if inputs.ranks_active:
        return mask | _sorted_first(score.masked_fill(mask, 0.0), n, inputs.fixed, inputs.logical)
    chosen = top_k_mask(score, n, exclude=blocked, generator=inputs.generator if inputs.random_ties else None)
    return chosen.logical_or_(mask)


def _uniform(shape, generator: torch.Generator, device) -> torch.Tensor:
    """U(0,1) drawn from a CPU generator (reproducible on any device), then moved to ``device``."""
    return torch.rand(tuple(shape), generator=generator).to(device)


def _sorted_first(score: torch.Tensor, n: int, fixed: torch.Tensor | None,
                  logical: Callable[[torch.Tensor], torch.Tensor] | None) -> torch.Tensor:
    """Reference quirk (``ranks_active``): the first n positions of a descending ``torch.sort`` of
    ``score`` in logical order (fixed ones last). A tied slot that falls on an active position is
    lost, so fewer than n grow. The sort is not stable: ties come in the order of the device's sort
    algorithm (on the CPU, largely from the high indices), as in the original on the same device."""
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
