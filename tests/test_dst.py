"""DST rules with exact numbers: sparse init (uniform, ERK), exact-count masks, top-k selection,
the prune-rate schedule, magnitude pruning, the four growth rules, and one full topology update."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from cldst.method.dst import (
    DynamicSparsity,
    active_count,
    layer_densities,
    magnitude_prune,
    prune_rate,
    random_mask,
)
from cldst.method.growth import GROWTH_RULES, grow
from cldst.method.masks import Backbone, TaskIsolation, like_param
from cldst.method.models import ResNet18
from cldst.method.selection import sample_mask, top_k_mask

T, F_ = True, False


pytestmark = pytest.mark.usefixtures("one_thread")


def _idx(mask: torch.Tensor) -> list[int]:
    return torch.nonzero(mask.reshape(-1)).squeeze(1).tolist()


def _bool(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.bool)


# ---------------------------------------------------------------------- layer_densities

# numel 72, 1152, 64 (N = 1288); raw = Σdims/Πdims = 15/72, 30/1152, 20/64; Σ raw·n = 15+30+20 = 65.
SHAPES = [(8, 1, 3, 3), (16, 8, 3, 3), (4, 16)]
NUMEL = [72, 1152, 64]
N = 1288


def test_uniform_gives_density_everywhere():
    assert layer_densities(SHAPES, 0.37, "uniform") == [0.37, 0.37, 0.37]


def test_erk_no_dense_layer():
    # d = 0.1: ε = 0.1·1288/65 = 1.98…; ε·raw = 0.4128, 0.0516, 0.6192, all ≤ 1.
    eps = 0.1 * 1288 / 65
    expected = [eps * 15 / 72, eps * 30 / 1152, eps * 20 / 64]
    got = layer_densities(SHAPES, 0.1, "ERK")
    assert got == pytest.approx(expected, rel=1e-12)
    assert sum(d * n for d, n in zip(got, NUMEL, strict=True)) == pytest.approx(0.1 * N, rel=1e-12)


def test_erk_one_layer_promoted_and_eps_resolved():
    # d = 0.2: first ε = 0.2·1288/65 = 3.963 → layer 2 gets 3.963·20/64 = 1.238 > 1: dense.
    eps_first = 0.2 * 1288 / 65
    assert eps_first * 20 / 64 > 1
    assert eps_first * 15 / 72 < 1  # layer 0 alone would not be promoted by the first ε
    # Re-solved over layers 0, 1: ε = (0.2·1288 − 64)/(15 + 30) = 4.302…
    eps = (0.2 * 1288 - 64) / 45
    expected = [eps * 15 / 72, eps * 30 / 1152, 1.0]
    got = layer_densities(SHAPES, 0.2, "ERK")
    assert got == pytest.approx(expected, rel=1e-12)
    assert got[2] == 1.0
    assert got[0] != pytest.approx(eps_first * 15 / 72, rel=1e-6)  # ε really was solved again
    assert sum(d * n for d, n in zip(got, NUMEL, strict=True)) == pytest.approx(0.2 * N, rel=1e-12)


def test_erk_two_layers_promoted_one_after_the_other():
    # d = 0.3: layer 2 dense (ε=5.94); then ε = (386.4−64)/45 = 7.16 → layer 0: 7.16·15/72 = 1.49 > 1,
    # dense too; then ε = (386.4 − 64 − 72)/30 = 8.3467, layer 1: ε·30/1152 = 0.21736.
    eps = (0.3 * 1288 - 64 - 72) / 30
    got = layer_densities(SHAPES, 0.3, "ERK")
    assert got == pytest.approx([1.0, eps * 30 / 1152, 1.0], rel=1e-12)
    assert got[0] == 1.0 and got[2] == 1.0
    assert sum(d * n for d, n in zip(got, NUMEL, strict=True)) == pytest.approx(0.3 * N, rel=1e-12)


@pytest.mark.parametrize("density", [0.05, 0.1, 0.2, 0.3, 0.5, 0.9])
def test_erk_total_active_count_is_budget_within_rounding(density):
    dens = layer_densities(SHAPES, density, "ERK")
    assert all(0 < d <= 1 for d in dens)
    total = sum(active_count(n, d) for n, d in zip(NUMEL, dens, strict=True))
    assert abs(total - density * N) <= 0.5 * len(SHAPES)
    # Non-dense layers keep the ERK proportion d_l ∝ raw_l (one ε).
    raw = [sum(s) / math.prod(s) for s in SHAPES]
    ratios = [d / r for d, r in zip(dens, raw, strict=True) if d < 1]
    assert ratios == pytest.approx([ratios[0]] * len(ratios), rel=1e-12)


def test_erk_density_one_is_all_dense_for_these_shapes():
    assert layer_densities(SHAPES, 1.0, "ERK") == [1.0, 1.0, 1.0]


def test_erk_density_one_never_divides_by_zero():
    # numel 10, 800; raw 1.1, 0.0425. Layer 0 dense, then ε = 800/34, ε·0.0425 = 1.0000000000000002.
    assert layer_densities([(1, 10), (1, 20, 8, 5)], 1.0, "ERK") == [1.0, 1.0]


def test_unknown_init_raises():
    with pytest.raises(ValueError, match="gaussian"):
        layer_densities(SHAPES, 0.1, "gaussian")


# ---------------------------------------------------------------------- random_mask / active_count


def test_active_count_rounding_and_bounds():
    assert active_count(1000, 0.1) == 100
    assert active_count(72, 0.5) == 36
    assert active_count(10, 0.25) == round(2.5) == 2  # Python rounding, as documented by round()
    assert active_count(10, 0.35) == round(3.5) == 4
    assert active_count(7, 0.01) == 1  # at least one weight per layer
    assert active_count(7, 1.0) == 7
    assert active_count(7, 0.999) == 7


@pytest.mark.parametrize("shape", [(50,), (3, 5), (8, 1, 3, 3), (16, 8, 3, 3), (4, 16)])
@pytest.mark.parametrize("density", [0.05, 0.1, 0.33, 0.5, 0.9, 1.0])
def test_random_mask_exact_count(shape, density):
    n = math.prod(shape)
    mask = random_mask(shape, density, torch.Generator().manual_seed(3))
    assert mask.dtype == torch.bool and tuple(mask.shape) == shape
    assert int(mask.sum()) == active_count(n, density)
    if round(density * n) >= 1:
        assert int(mask.sum()) == round(density * n)


def test_random_mask_seeded():
    a = random_mask((16, 8, 3, 3), 0.2, torch.Generator().manual_seed(7))
    b = random_mask((16, 8, 3, 3), 0.2, torch.Generator().manual_seed(7))
    c = random_mask((16, 8, 3, 3), 0.2, torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_random_mask_bernoulli():
    n, d = 1000, 0.3
    counts = []
    for seed in range(60):
        m = random_mask((n,), d, torch.Generator().manual_seed(seed), exact=False)
        # The Bernoulli draw is exactly "uniform score < density" on the same stream.
        assert torch.equal(m, torch.rand(n, generator=torch.Generator().manual_seed(seed)) < d)
        counts.append(int(m.sum()))
    assert any(c != active_count(n, d) for c in counts)
    mean = sum(counts) / len(counts)
    assert abs(mean - d * n) < 4 * math.sqrt(n * d * (1 - d) / len(counts))


@pytest.mark.parametrize("method", ["uniform", "ERK"])
@pytest.mark.parametrize("density", [0.05, 0.2, 0.5])
def test_backbone_new_task_mask_per_layer_counts(method, density):
    bb = Backbone(ResNet18(num_classes=4, in_channels=1, width=0.125))
    dens = layer_densities(bb.shapes, density, method)
    mask = bb.new_task_mask(density, method, torch.Generator().manual_seed(0))
    assert len(mask) == len(bb.params) == 21
    for m, p, d in zip(mask, bb.params, dens, strict=True):
        assert m.shape == p.shape and m.dtype == torch.bool
        assert int(m.sum()) == active_count(p.numel(), d)
    if method == "ERK":
        assert len(set(dens)) > 2  # really per-layer


# ---------------------------------------------------------------------- top_k_mask


def test_top_k_ties_lowest_index():
    s = torch.tensor([3.0, 1.0, 3.0, 3.0, 0.0])
    assert _idx(top_k_mask(s, 2)) == [0, 2]
    assert _idx(top_k_mask(s, 3)) == [0, 2, 3]
    assert _idx(top_k_mask(s, 4)) == [0, 1, 2, 3]
    assert _idx(top_k_mask(s, 0)) == []
    assert _idx(top_k_mask(s, 5)) == [0, 1, 2, 3, 4]
    assert _idx(top_k_mask(s, 9)) == [0, 1, 2, 3, 4]
    assert _idx(top_k_mask(-s, 2)) == [1, 4]  # the two smallest of s: 0 (index 4) and 1 (index 1)


def test_top_k_shape_and_reference():
    g = torch.Generator().manual_seed(0)
    s = torch.randint(0, 6, (4, 5, 3), generator=g).float()  # many ties
    flat = s.reshape(-1).tolist()
    for k in range(0, 61, 7):
        got = top_k_mask(s, k)
        assert got.shape == s.shape and int(got.sum()) == k
        want = sorted(range(len(flat)), key=lambda i: (-flat[i], i))[:k]
        assert _idx(got) == sorted(want)


# ---------------------------------------------------------------------- prune_rate


def test_prune_rate_schedule():
    S = 1000
    assert prune_rate(0, S) == pytest.approx(0.5, rel=1e-12)
    assert prune_rate(S, S) == pytest.approx(0.005, rel=1e-12)
    assert prune_rate(S // 2, S) == pytest.approx(0.2525, rel=1e-12)
    assert prune_rate(S // 4, S) == pytest.approx(0.005 + 0.495 * (1 + math.cos(math.pi / 4)) / 2, rel=1e-12)
    assert prune_rate(3 * S // 4, S) == pytest.approx(0.005 + 0.495 * (1 - math.cos(math.pi / 4)) / 2, rel=1e-12)
    # clamped outside [0, S]
    assert prune_rate(-10, S) == prune_rate(0, S)
    assert prune_rate(5 * S, S) == prune_rate(S, S)
    # custom initial (and final)
    assert prune_rate(0, S, initial=0.3) == pytest.approx(0.3, rel=1e-12)
    assert prune_rate(S // 2, S, initial=0.3) == pytest.approx(0.005 + 0.295 / 2, rel=1e-12)
    assert prune_rate(S, S, initial=0.3, final=0.01) == pytest.approx(0.01, rel=1e-12)
    # monotone non-increasing
    values = [prune_rate(s, S) for s in range(0, S + 1, 50)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))


# ---------------------------------------------------------------------- magnitude_prune

#                      0     1     2    3     4       5    6    7     8     9
PRUNE_W = torch.tensor([0.5, -0.1, 0.0, 2.0, -0.001, 0.3, 0.0, -0.7, 0.02, 1.5])
PRUNE_M = _bool([T, T, T, T, F_, T, F_, T, F_, T])  # 7 active; inactive ones have the smallest |w|


@pytest.mark.parametrize("rate, removed_idx", [
    (0.0, []),
    (0.1, [2]),               # ceil(0.7) = 1: the active exact zero first
    (0.25, [1, 2]),           # ceil(1.75) = 2: 0.0, 0.1
    (0.4, [1, 2, 5]),         # ceil(2.8) = 3: 0.0, 0.1, 0.3
    (0.5, [0, 1, 2, 5]),      # ceil(3.5) = 4: … and 0.5
    (1.0, [0, 1, 2, 3, 5, 7, 9]),
])
def test_magnitude_prune(rate, removed_idx):
    before = PRUNE_M.clone()
    new, removed = magnitude_prune(PRUNE_W, PRUNE_M, rate)
    assert removed == math.ceil(rate * 7) == len(removed_idx)
    assert _idx(PRUNE_M & ~new) == removed_idx
    assert not (new & ~PRUNE_M).any()  # nothing added; inactive positions stay inactive
    assert int(new.sum()) == 7 - removed
    assert torch.equal(PRUNE_M, before)  # input not modified
    assert new is not PRUNE_M


def test_magnitude_prune_negative_and_zero_ties():
    w = torch.tensor([[-0.0, 0.2, -0.2], [0.0, 5.0, 0.2]])
    m = _bool([[T, T, T], [T, T, F_]])
    new, removed = magnitude_prune(w, m, 0.5)  # ceil(2.5) = 3: both zeros, then |0.2| at index 1
    assert removed == 3
    assert _idx(m & ~new) == [0, 1, 3]


# ---------------------------------------------------------------------- growth rules


GROW_M = _bool([T, F_, F_, T, F_, F_, F_, F_])  # inactive: 1, 2, 4, 5, 6, 7


def _new(before: torch.Tensor, after: torch.Tensor) -> list[int]:
    assert not (before & ~after).any()  # growth never deactivates
    return _idx(after & ~before)


def test_grow_gradient():
    grad = torch.tensor([100.0, 0.5, -3.0, -50.0, 0.1, 2.0, -0.2, 1.0])  # 100, -50 sit on active positions
    w = torch.zeros(8)
    assert _new(GROW_M, grow("gradient", w, GROW_M, 2, grad=grad)) == [2, 5]
    assert _new(GROW_M, grow("gradient", w, GROW_M, 3, grad=grad)) == [2, 5, 7]
    assert _new(GROW_M, grow("gradient", w, GROW_M, 0, grad=grad)) == []
    # on a 2-D tensor
    out = grow("gradient", w.view(2, 4), GROW_M.view(2, 4), 1, grad=grad.view(2, 4))
    assert out.shape == (2, 4) and _idx(out & ~GROW_M.view(2, 4)) == [2]


def test_grow_momentum_adam():
    m = torch.tensor([10.0, 0.1, 1.0, 5.0, -0.5, 2.0, 0.0, 0.01])
    v = torch.tensor([1e-8, 1e-4, 1.0, 1e-8, 1e-6, 100.0, 1.0, 1.0])
    # scores |m/(√v+1e-8)| of the inactive: 1: 0.1/0.01 = 10, 2: 1, 4: 0.5/0.001 = 500, 5: 0.2, 6: 0,
    # 7: 0.01. Actives 0 and 3 score ~1e5 and are ignored. Largest |m| alone would pick 5 and 2.
    state = {"step": torch.tensor(3.0), "exp_avg": m, "exp_avg_sq": v}
    w = torch.zeros(8)
    assert _new(GROW_M, grow("momentum", w, GROW_M, 2, optimizer_state=state)) == [1, 4]
    assert _new(GROW_M, grow("momentum", w, GROW_M, 3, optimizer_state=state)) == [1, 2, 4]
    assert _new(GROW_M, grow("momentum", w, GROW_M, 4, optimizer_state=state)) == [1, 2, 4, 5]


def test_grow_momentum_adam_epsilon():
    # v = 0 at an inactive position: score |m|/1e-8, not inf/nan.
    m = torch.tensor([0.0, 1e-7, 1.0, 0.0])
    v = torch.tensor([0.0, 0.0, 1.0, 0.0])
    mask = _bool([F_, F_, F_, T])
    out = grow("momentum", torch.zeros(4), mask, 1, optimizer_state={"exp_avg": m, "exp_avg_sq": v})
    assert _new(mask, out) == [1]  # 1e-7/1e-8 = 10 > 1/(1+1e-8)


def test_grow_momentum_sgd():
    b = torch.tensor([-9.0, 0.3, -0.4, 8.0, 0.1, 0.35, -2.0, 0.0])
    state = {"momentum_buffer": b}
    w = torch.zeros(8)
    assert _new(GROW_M, grow("momentum", w, GROW_M, 1, optimizer_state=state)) == [6]
    assert _new(GROW_M, grow("momentum", w, GROW_M, 3, optimizer_state=state)) == [2, 5, 6]


def test_grow_unfired_prefers_never_fired():
    mask = _bool([T, T, F_, F_, F_, F_, F_, F_, F_, F_])
    fired = mask | _bool([F_, F_, T, T, T, T, F_, F_, F_, F_])  # 2..5 were active earlier this task
    w = torch.zeros(10)
    seen = set()
    for seed in range(30):
        new = _new(mask, grow("unfired", w, mask, 3, generator=torch.Generator().manual_seed(seed), fired=fired))
        assert len(new) == 3 and set(new) <= {6, 7, 8, 9}
        seen |= set(new)
    assert seen == {6, 7, 8, 9}
    # Fewer unfired than n: all four unfired, the rest from the fired-but-inactive 2..5.
    seen = set()
    for seed in range(30):
        new = _new(mask, grow("unfired", w, mask, 6, generator=torch.Generator().manual_seed(seed), fired=fired))
        assert len(new) == 6 and {6, 7, 8, 9} <= set(new) and set(new) <= set(range(2, 10))
        seen |= set(new)
    assert seen == set(range(2, 10))


def test_grow_random():
    mask = torch.zeros(20, dtype=torch.bool)
    mask[[0, 4, 9, 13, 17]] = True
    candidates = [i for i in range(20) if not mask[i]]
    w = torch.zeros(20)
    a = grow("random", w, mask, 3, generator=torch.Generator().manual_seed(5))
    b = grow("random", w, mask, 3, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    hits = torch.zeros(20)
    seeds = 3000
    for seed in range(seeds):
        new = grow("random", w, mask, 3, generator=torch.Generator().manual_seed(seed))
        assert int(new.sum()) == 8 and (new & mask).sum() == 5
        hits += (new & ~mask).float()
    assert hits[mask].sum() == 0
    freq = hits[candidates] / seeds
    p = 3 / len(candidates)
    assert (freq - p).abs().max() < 5 * math.sqrt(p * (1 - p) / seeds)
    assert not torch.equal(a, grow("random", w, mask, 3, generator=torch.Generator().manual_seed(6)))


@pytest.mark.parametrize("n", [2, 9])  # 9 of 12 allowed: drawn as the complement of 3
def test_sample_mask_is_a_uniform_subset_of_the_allowed_positions(n):
    allowed = torch.zeros(20, dtype=torch.bool)
    allowed[[1, 2, 3, 5, 6, 8, 10, 11, 14, 15, 18, 19]] = True
    hits = torch.zeros(20)
    draws = 3000
    for seed in range(draws):
        got = sample_mask(allowed, n, torch.Generator().manual_seed(seed))
        assert int(got.sum()) == n and not bool((got & ~allowed).any())
        hits += got.float()
    p = n / 12
    freq = hits[allowed] / draws
    assert (freq - p).abs().max() < 5 * math.sqrt(p * (1 - p) / draws)


def test_sample_mask_counts_on_a_large_layer_and_edge_cases():
    g = torch.Generator().manual_seed(0)
    allowed = (torch.rand(512, 64, 3, 3, generator=g) < 0.9)
    count = int(allowed.sum())
    for n in (1, 1000, count // 2, count // 2 + 1, count - 5):
        got = sample_mask(allowed, n, g)
        assert got.shape == allowed.shape and int(got.sum()) == n and not bool((got & ~allowed).any())
    assert not bool(sample_mask(allowed, 0, g).any())
    assert torch.equal(sample_mask(allowed, count, g), allowed)
    a = sample_mask(allowed, 5000, torch.Generator().manual_seed(7))
    assert torch.equal(a, sample_mask(allowed, 5000, torch.Generator().manual_seed(7)))  # seeded
    with pytest.raises(ValueError, match="cannot draw"):
        sample_mask(allowed, count + 1, g)


# ---------------------------------------------------------------------- one topology update, real state


def _trained_setup(method: str, optimizer: str, density: float = 0.2):
    torch.manual_seed(0)
    model = ResNet18(num_classes=4, in_channels=1, width=0.125)
    bb = Backbone(model)
    gen = torch.Generator().manual_seed(1)
    mask = bb.new_task_mask(density, method, gen)
    bb.start_weights(mask, free_from_theta0=True)
    iso = TaskIsolation(bb, mask, slice(0, 2))
    if optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9)
    x = torch.randn(8, 1, 12, 12, generator=gen)
    y = torch.randint(0, 2, (8,), generator=gen)
    for _ in range(2):
        opt.zero_grad(set_to_none=False)
        F.cross_entropy(model(x)[:, 0:2], y).backward()
        iso.zero_frozen_grads()
        opt.step()
        iso.after_step()
    return bb, mask, iso, opt, gen


@pytest.mark.parametrize("growth", ["random", "unfired", "gradient", "momentum"])
@pytest.mark.parametrize("method", ["uniform", "ERK"])
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_update_keeps_per_layer_counts(growth, method, optimizer):
    bb, mask, iso, opt, gen = _trained_setup(method, optimizer)
    assert all(p.grad is not None for p in bb.params)
    assert all(p in opt.state for p in bb.params)
    counts = [int(m.sum()) for m in mask]
    dst = DynamicSparsity(bb.params, mask, growth=growth, initial_prune_rate=0.5, total_steps=10,
                          update_frequency=2, generator=gen)
    before = [m.clone() for m in mask]
    out = dst.update(2, opt)
    iso.refresh()
    assert out["prune_rate"] == pytest.approx(prune_rate(2, 10), rel=1e-12)
    assert [int(m.sum()) for m in mask] == counts
    assert out["regrown_new"] == sum(int((m & ~b).sum()) for m, b in zip(mask, before, strict=True))
    assert out["regrown_new"] > 0  # the topology really moved
    assert all(bool((f >= m).all()) for f, m in zip(dst.fired, mask, strict=True))  # fired ⊇ current mask
    for p, m in zip(bb.params, mask, strict=True):  # refresh keeps weights zero off the mask
        assert bool((p[~m] == 0).all())
    # a second update at a later step keeps the counts too
    dst.update(4, opt)
    assert [int(m.sum()) for m in mask] == counts


@pytest.mark.parametrize("growth", ["random", "unfired", "gradient", "momentum"])
def test_update_of_a_channels_last_model_selects_what_the_contiguous_one_does(growth):
    """Flat indices follow the memory order of a channels_last layer; with no ties in the scores,
    the chosen positions are the same as in the contiguous layout (random draws: the same counts)."""
    bb, mask, iso, opt, gen = _trained_setup("ERK", "adam")
    for p in bb.params:  # continuous scores: a tiny net has many exact-zero gradients, hence ties
        p.grad = torch.randn(p.shape, generator=gen)
        opt.state[p]["exp_avg"] = torch.randn(p.shape, generator=gen)
        opt.state[p]["exp_avg_sq"] = torch.rand(p.shape, generator=gen) + 0.1
    twin = copy.deepcopy(bb.model).to(memory_format=torch.channels_last)
    bb_cl = Backbone(twin)
    for p, q in zip(bb.params, bb_cl.params, strict=True):
        q.grad = torch.empty_like(q).copy_(p.grad)  # in the weight's layout, as autograd makes it
    mask_cl = [like_param(m.clone(), p) for m, p in zip(mask, bb_cl.params, strict=True)]
    assert any(m.stride() != c.stride() for m, c in zip(mask, mask_cl, strict=True))
    opt_cl = torch.optim.Adam(twin.parameters(), lr=1e-2)
    opt_cl.load_state_dict(opt.state_dict())  # state in the contiguous layout: views fall back to copies
    outs = []
    for params, masks, optimizer in ((bb.params, mask, opt), (bb_cl.params, mask_cl, opt_cl)):
        dst = DynamicSparsity(params, masks, growth=growth, initial_prune_rate=0.5, total_steps=10,
                              update_frequency=2, generator=torch.Generator().manual_seed(3))
        outs.append(dst.update(2, optimizer))
    assert [int(m.sum()) for m in mask] == [int(m.sum()) for m in mask_cl]
    assert all(m.stride() == p.stride() for m, p in zip(mask_cl, bb_cl.params, strict=True))
    if growth in ("gradient", "momentum"):
        assert all(torch.equal(a, b) for a, b in zip(mask, mask_cl, strict=True))
        assert outs[0] == outs[1]


# ---------------------------------------------------------------------- CUDA: masks drawn with a CPU generator, as train.py does

@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_new_task_mask_on_cuda_with_cpu_generator():
    bb = Backbone(ResNet18(num_classes=4, in_channels=1, width=0.125).cuda())
    mask = bb.new_task_mask(0.2, "ERK", torch.Generator().manual_seed(0))
    assert all(m.device.type == "cuda" for m in mask)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("rule", ["random", "unfired"])
def test_random_growth_on_cuda_with_cpu_generator(rule):
    w = torch.zeros(20, device="cuda")
    mask = torch.zeros(20, dtype=torch.bool, device="cuda")
    mask[:5] = True
    new = grow(rule, w, mask, 3, generator=torch.Generator().manual_seed(0), fired=mask.clone())
    assert int(new.sum()) == 8


@pytest.mark.parametrize("trial", range(12))
def test_top_k_mask_on_large_tensors_equals_a_stable_sort(trial):
    """Large inputs take the sampled-threshold path; the result must still be exact, ties included."""
    g = torch.Generator().manual_seed(trial)
    n = int(torch.randint(9_000, 200_000, (1,), generator=g))
    x = torch.randint(0, 50, (n,), generator=g).float() if trial % 3 == 0 else torch.rand(n, generator=g)
    if trial % 2:
        x[torch.rand(n, generator=g) < 0.9] = -float("inf")
    k = int(torch.randint(1, n // 5, (1,), generator=g))
    expected = torch.zeros(n, dtype=torch.bool)
    expected[torch.argsort(-x, stable=True)[:k]] = True
    assert torch.equal(top_k_mask(x, k), expected)


@pytest.mark.parametrize("trial", range(8))
def test_top_k_mask_with_exclusions_equals_a_stable_sort_of_the_rest(trial):
    """Growth excludes the active positions: the k largest among the others, ties to the lowest index."""
    g = torch.Generator().manual_seed(100 + trial)
    n = int(torch.randint(9_000, 200_000, (1,), generator=g))
    x = torch.randint(0, 20, (n,), generator=g).float() if trial % 2 else torch.rand(n, generator=g)
    exclude = torch.rand(n, generator=g) < (0.1 if trial < 4 else 0.9)
    allowed = torch.nonzero(~exclude).squeeze(1)
    k = int(torch.randint(1, allowed.numel() // 2, (1,), generator=g))
    expected = torch.zeros(n, dtype=torch.bool)
    expected[allowed[torch.argsort(-x[allowed], stable=True)[:k]]] = True
    got = top_k_mask(x, k, exclude=exclude)
    assert int(got.sum()) == k and not bool((got & exclude).any())
    assert torch.equal(got, expected)


def test_growth_rules_are_the_config_growths_by_name():
    from cldst.config import GROWTHS

    assert tuple(GROWTH_RULES) == GROWTHS
    with pytest.raises(ValueError, match="unknown growth rule 'nope'"):
        grow("nope", torch.zeros(4), torch.zeros(4, dtype=torch.bool), 1)
