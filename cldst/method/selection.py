"""Selection on one layer's flat tensors: the exact top k (``top_k_mask``) and a uniform random
subset (``sample_mask``), for the DST rules in cldst/method/dst.py.

Selection returns exactly the number of positions asked for: ``kthvalue`` (linear time) with an
exact tie break, on a sampled band of candidates, never a sort of the whole tensor. Random
positions are drawn by marking random indices, not by a random number per position.
"""

from __future__ import annotations

import math

import torch


def top_k_mask(scores: torch.Tensor, k: int, exclude: torch.Tensor | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Bool mask of exactly the ``k`` largest scores, outside ``exclude`` if given (bool, same
    shape). Ties at the k-th value go to the lowest flat index, or, with ``generator``, to a
    uniform random subset of the tied positions. Needs k ≤ the number of positions not excluded."""
    flat = scores.reshape(-1)
    ex = None if exclude is None else exclude.reshape(-1)
    n = flat.numel()
    if k <= 0:
        return torch.zeros_like(scores, dtype=torch.bool)
    if k >= n and ex is None:
        return torch.ones_like(scores, dtype=torch.bool)
    band = _rank_band(flat, k, ex)
    if band is not None:
        lo, hi = band
        chosen = flat > hi  # surely among the k largest
        at_least_lo = flat >= lo
        if ex is not None:
            allowed = ~ex
            chosen &= allowed
            at_least_lo &= allowed
        n_above = int(torch.count_nonzero(chosen))
        if n_above <= k:
            between = torch.nonzero(at_least_lo ^ chosen).squeeze(1)  # lo ≤ value ≤ hi, ascending
            if n_above + between.numel() >= k:
                chosen[between] = _top_k_exact(flat[between], k - n_above, generator)  # all False so far
                return chosen.view_as(scores)
    if ex is None:
        return _top_k_exact(flat, k, generator).view_as(scores)
    candidates = torch.nonzero(~ex).squeeze(1)
    chosen = torch.zeros_like(flat, dtype=torch.bool)
    chosen[candidates] = _top_k_exact(flat[candidates], k, generator)
    return chosen.view_as(scores)


def _top_k_exact(values: torch.Tensor, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Bool mask of the ``k`` largest of a 1-d tensor by one ``kthvalue``; ties at the k-th value to
    the lowest index, or to a random subset of them with ``generator``."""
    n = values.numel()
    if k <= 0:
        return torch.zeros_like(values, dtype=torch.bool)
    thr = torch.kthvalue(values, n - k + 1).values  # the k-th largest
    chosen = values > thr
    need = k - int(torch.count_nonzero(chosen))
    tied = torch.nonzero(values == thr).squeeze(1)
    if generator is not None and tied.numel() > need:
        tied = tied[torch.randperm(tied.numel(), generator=generator)[:need].to(tied.device)]
    chosen[tied[:need]] = True
    return chosen


_SAMPLE = 16384  # at most; an eighth of the tensor below that


def _rank_band(flat: torch.Tensor, k: int, exclude: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Values (lo, hi) that very probably bracket the k-th largest of ``flat``, or None.

    Selecting in a whole large tensor costs a copy and a slow linear-time pass on the CPU. The
    k-th largest of a sample estimates where the k-th largest of the tensor lies; a band of ±4
    standard deviations of that estimate around it holds a few percent of the values. Everything
    above the band is chosen outright and the exact selection runs on the band alone. The caller
    checks the counts, so a band that misses only costs the fallback to the exact pass: the
    sample changes the cost, never the result. It is every p-th value, p prime and ≥ 5, so that it
    steps across the kernel taps and channels of a weight tensor; a strided read is faster than
    random indices into a tensor that is not in cache. Excluded positions enter the sample as −∞,
    below every candidate.
    """
    n = flat.numel()
    size = min(_SAMPLE, n // 8)
    if size < 1024:
        return None
    step = _prime_at_most(n // size)
    sample = flat[::step][:size]
    if exclude is not None:
        sample = sample.masked_fill(exclude[::step][:size], -float("inf"))
    p = k / n
    rank = p * size  # of the k-th largest, counted from the top of the sample
    spread = 4 * math.sqrt(size * p * (1 - p)) + 16
    top, bottom = int(rank - spread), int(rank + spread)  # 1-based ranks from the top
    hi = torch.kthvalue(sample, size - top + 1).values if top >= 1 else sample.new_tensor(float("inf"))
    lo = torch.kthvalue(sample, size - bottom + 1).values if bottom <= size else sample.new_tensor(-float("inf"))
    return lo, hi


def _prime_at_most(m: int) -> int:
    return next(p for p in range(m, 4, -1) if all(p % d for d in range(2, math.isqrt(p) + 1)))


def sample_mask(allowed: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """Bool mask of ``n`` positions drawn uniformly without replacement from ``allowed`` (bool).

    Random positions over the whole tensor are marked until at least ``n`` allowed ones are hit;
    the surplus is then dropped at random. The marked set is exchangeable (its law is invariant
    under any permutation of the allowed positions), so the result is a uniform ``n``-subset. It
    costs O(numel) cheap bool work and about ``n`` random numbers instead of one per position.
    More than half of ``allowed`` is drawn as the complement of a draw of the rest.
    """
    flat = allowed.reshape(-1)
    total, count = flat.numel(), int(torch.count_nonzero(flat))
    if not 0 <= n <= count:
        raise ValueError(f"cannot draw {n} of {count} allowed positions")
    if 2 * n > count:
        return allowed & ~sample_mask(allowed, count - n, generator)
    hit = torch.zeros_like(flat)
    got = 0
    while got < n:
        # draws for an expected (need + 3·sqrt(need) + 1) new allowed hits among the count − got left
        need = n - got
        share = min(0.9, (need * 1.05 + 3 * math.sqrt(need) + 1) / (count - got))
        draws = math.ceil(-total * math.log1p(-share))
        hit[torch.randint(total, (draws,), generator=generator).to(flat.device)] = True
        hit &= flat
        got = int(torch.count_nonzero(hit))
    if got > n:
        picked = torch.nonzero(hit).squeeze(1)
        drop = torch.randperm(got, generator=generator)[: got - n].to(flat.device)
        hit[picked[drop]] = False
    return hit.view_as(allowed)
