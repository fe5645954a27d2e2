"""Parameter isolation, bit for bit: frozen weights never move (any optimizer, momentum, weight
decay), start values of a new task, zeros off the mask, evaluation weights, capacity, and masks
drawn independently of the initial weights."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cldst.config import ExperimentConfig
from cldst.data import ImageSplit
from cldst.method.dst import DynamicSparsity
from cldst.method.learner import ContinualLearner
from cldst.method.masks import Backbone, TaskIsolation
from cldst.method.models import MobileNetV2, ResNet18, head
from cldst.method.seeds import derived_seed, task_seed

C = 2  # classes per task
TASKS = 3
STEPS = 4  # optimizer steps per task; a topology update after steps 2 and 4
CHECKS = TASKS * (STEPS + STEPS // 2 + 1)  # simulate's checks: after every step, update and merge


pytestmark = pytest.mark.usefixtures("one_thread")


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.detach().contiguous().view(torch.int32)


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and torch.equal(bits(a), bits(b))


OPTIMIZERS = {
    "adam": lambda ps: torch.optim.Adam(ps, lr=1e-2),
    "adam_wd": lambda ps: torch.optim.Adam(ps, lr=1e-2, weight_decay=0.1),
    "sgd_momentum": lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9),
    "sgd_momentum_wd": lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=0.1),
    "adamw": lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.1),
}
ARCHS = {
    "resnet18": lambda: ResNet18(num_classes=C * TASKS, in_channels=1, width=0.125),
    "mobilenetv2": lambda: MobileNetV2(num_classes=C * TASKS, in_channels=1, width=0.125),
}


class Frozen:
    """What the finished tasks own, snapshotted right after each merge."""

    def __init__(self):
        self.owned: list[list[torch.Tensor]] = []  # per finished task: positions it owns
        self.values: list[list[torch.Tensor]] = []  # merged weights right after its merge
        self.bias: list[tuple[slice, dict[str, torch.Tensor]]] = []  # its classes' biases

    def record(self, bb: Backbone, mask, used_before, sl: slice) -> None:
        self.owned.append([m & ~u for m, u in zip(mask, used_before, strict=True)])
        self.values.append([w.clone() for w in bb.merged])
        self.bias.append((sl, {n: p.detach()[sl].clone() for n, p in bb.biases}))

    def moved(self, bb: Backbone, mask=None) -> tuple[list[str], int]:
        """What moved of the finished tasks' weights and biases (a line each; [] when nothing did), and
        how many of their weights are live in ``mask`` (those must keep their merged value, the others
        in the network must be 0)."""
        moved, live_frozen = [], 0
        for own, vals, (sl, bias) in zip(self.owned, self.values, self.bias, strict=True):
            for li, (o, v, w, p) in enumerate(zip(own, vals, bb.merged, bb.params, strict=True)):
                if not same_bits(w[o], v[o]):
                    moved.append(f"merged layer {bb.names[li]} moved")
                if mask is not None:
                    live = o & mask[li]
                    if not same_bits(p.detach()[live], v[live]):
                        moved.append(f"live frozen weight moved in {bb.names[li]}")
                    if not bool((p.detach()[o & ~mask[li]] == 0).all()):
                        moved.append(f"frozen weight off the mask not 0 in {bb.names[li]}")
                    live_frozen += int(live.sum())
            for n, p in bb.biases:
                if not same_bits(p.detach()[sl], bias[n]):
                    moved.append(f"bias {n} of classes {sl} moved")
        return moved, live_frozen


def off_mask_nonzero(bb: Backbone, mask) -> list[str]:
    """The layers with a non-zero weight off ``mask``."""
    return [bb.names[li] for li, (p, m) in enumerate(zip(bb.params, mask, strict=True))
            if not bool((p.detach()[~m] == 0).all())]


def simulate(arch: str = "resnet18", opt_name: str = "adam", *, method: str = "ERK", growth: str = "gradient",
             density: float = 0.3, free_init: str = "zero", check: bool = True, channels_last: bool = False):
    """The loop of ``ContinualLearner.train_task`` on random data. With ``check``, after every step,
    every topology update and every merge: ``stats["checks"]`` counts them, ``stats["moved"]`` lists
    what moved of the finished tasks' weights and biases, ``stats["off_mask"]`` the layers with a
    non-zero weight off the current mask (each line says when)."""
    torch.manual_seed(0)
    model = ARCHS[arch]()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    bb = Backbone(model)
    gen = torch.Generator().manual_seed(1)
    xs = torch.randn(TASKS, 8, 1, 12, 12, generator=gen)
    ys = torch.randint(0, C, (TASKS, 8), generator=gen)
    frozen = Frozen()
    bias0 = {n: p.detach().clone() for n, p in bb.biases}
    stats = {"live_frozen": [], "raw_step_moved_frozen": False, "raw_step_moved_bias": False,
             "end_weights": [], "start_weights": [], "capacity": [], "trained_moved": [],
             "bias0": bias0, "start_masks": [], "checks": 0, "moved": [], "off_mask": []}

    def run_checks(when: str, mask=None) -> int:
        moved, live_frozen = frozen.moved(bb, mask)
        stats["moved"] += [f"{when}: {m}" for m in moved]
        if mask is not None:
            stats["off_mask"] += [f"{when}: {name}" for name in off_mask_nonzero(bb, mask)]
        stats["checks"] += 1
        return live_frozen

    for t in range(TASKS):
        sl = slice(t * C, (t + 1) * C)
        mask = bb.new_task_mask(density, method, gen)
        bb.start_weights(mask, free_from_theta0=(t == 0 or free_init == "theta0"))
        stats["start_weights"].append([p.detach().clone() for p in bb.params])
        stats["start_masks"].append([m.clone() for m in mask])
        iso = TaskIsolation(bb, mask, sl)
        opt = OPTIMIZERS[opt_name](model.parameters())
        dst = DynamicSparsity(bb.params, mask, growth=growth, initial_prune_rate=0.5, total_steps=STEPS,
                              update_frequency=2, generator=gen)
        live = 0
        for step in range(1, STEPS + 1):
            opt.zero_grad(set_to_none=False)
            F.cross_entropy(model(xs[t])[:, sl], ys[t]).backward()
            iso.zero_frozen_grads()
            before = [p.detach().clone() for p in bb.params]
            bias_before = [p.detach().clone() for _, p in bb.biases]
            opt.step()
            if check and t > 0:
                # Without after_step, weight decay would move frozen weights (shows the check has teeth).
                stats["raw_step_moved_frozen"] |= any(
                    not same_bits(p.detach()[m & u], b[m & u])
                    for p, b, m, u in zip(bb.params, before, mask, bb.owned, strict=True))
                stats["raw_step_moved_bias"] |= any(
                    not same_bits(p.detach()[: sl.start], b[: sl.start])
                    for (_, p), b in zip(bb.biases, bias_before, strict=True))
            iso.after_step()
            if check:
                live = max(live, run_checks(f"task {t} step {step}", mask))
            if dst.due(step):
                dst.update(step, opt)
                iso.refresh()
                if check:
                    live = max(live, run_checks(f"task {t} update at step {step}", mask))
        stats["live_frozen"].append(live)
        stats["trained_moved"].append(sum(
            int((p.detach()[tm.bool()] != s[tm.bool()]).sum()) for p, tm, s in
            zip(bb.params, iso.train_mask, stats["start_weights"][-1], strict=True)))
        stats["end_weights"].append([p.detach().clone() for p in bb.params])
        used_before = [u.clone() for u in bb.owned]
        bb.merge(mask)
        frozen.record(bb, mask, used_before, sl)
        if check:
            run_checks(f"task {t} merged")
        stats["capacity"].append(bb.capacity())
    return bb, frozen, stats


# ---------------------------------------------------------------------- frozen weights


@pytest.mark.parametrize("opt_name", list(OPTIMIZERS))
def test_frozen_weights_bit_for_bit_resnet(opt_name):
    bb, frozen, stats = simulate("resnet18", opt_name)
    assert len(bb.task_masks) == TASKS
    # Non-vacuous: later tasks had frozen weights active in their masks, and trained their free ones.
    assert stats["live_frozen"][0] == 0
    assert all(n > 0 for n in stats["live_frozen"][1:])
    assert all(n > 0 for n in stats["trained_moved"])
    if opt_name in ("adam_wd", "sgd_momentum_wd", "adamw"):
        assert stats["raw_step_moved_frozen"]  # the optimizer alone would have moved them
    assert stats["checks"] == CHECKS and stats["moved"] == [] and stats["off_mask"] == []
    assert frozen.moved(bb) == ([], 0)  # and once more at the very end


@pytest.mark.parametrize("opt_name", ["adam_wd", "sgd_momentum_wd"])
def test_frozen_weights_and_head_bias_mobilenet(opt_name):
    bb, frozen, stats = simulate("mobilenetv2", opt_name, method="uniform", growth="momentum")
    lin = head(bb.model)
    assert lin.bias is not None and [n for n, _ in bb.biases] == ["linear.bias"]
    assert all(n > 0 for n in stats["live_frozen"][1:])
    assert stats["raw_step_moved_frozen"]
    assert stats["raw_step_moved_bias"]  # weight decay alone would move earlier tasks' biases
    assert stats["checks"] == CHECKS and stats["moved"] == [] and stats["off_mask"] == []
    # each task trained its own classes' biases, and they stayed as it left them
    for sl, bias in frozen.bias:
        assert same_bits(lin.bias.detach()[sl], bias["linear.bias"])
        assert bool((bias["linear.bias"] != stats["bias0"]["linear.bias"][sl]).all())


@pytest.mark.parametrize("growth", ["random", "unfired", "gradient", "momentum"])
def test_frozen_weights_every_growth_rule(growth):
    bb, frozen, stats = simulate("resnet18", "sgd_momentum_wd", method="uniform", growth=growth, density=0.4)
    assert stats["checks"] == CHECKS
    assert stats["moved"] == []  # no finished task's weight or bias moved, at any step, update or merge
    assert stats["off_mask"] == []  # every weight off the current task's mask stayed 0
    # Non-vacuous: frozen weights were live in later tasks' masks, weight decay alone would have moved
    # them, and each task trained its free weights.
    assert stats["live_frozen"][0] == 0 and all(n > 0 for n in stats["live_frozen"][1:])
    assert stats["raw_step_moved_frozen"]
    assert all(n > 0 for n in stats["trained_moved"])
    assert frozen.moved(bb) == ([], 0)


@pytest.mark.parametrize("growth", ["random", "momentum"])
def test_frozen_weights_channels_last(growth):
    """The task loop's layout on every device: masks follow the weights' layout, nothing moves."""
    bb, frozen, stats = simulate("resnet18", "adam_wd", growth=growth, channels_last=True)
    conv = [(p, m) for p, m in zip(bb.params, bb.task_masks[-1], strict=True) if p.dim() == 4]
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p, _ in conv)
    assert any(p.stride() != p.contiguous().stride() for p, _ in conv)  # the layout really differs
    assert all(m.stride() == p.stride() for p, m in conv)
    assert all(n > 0 for n in stats["live_frozen"][1:])
    assert stats["checks"] == CHECKS and stats["moved"] == [] and stats["off_mask"] == []
    assert frozen.moved(bb) == ([], 0)


# ---------------------------------------------------------------------- start values


def _train_one_task(bb: Backbone, mask, sl: slice, steps: int = 2) -> None:
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(8, 1, 12, 12, generator=gen)
    y = torch.randint(0, C, (8,), generator=gen)
    iso = TaskIsolation(bb, mask, sl)
    opt = torch.optim.Adam(bb.model.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad(set_to_none=False)
        F.cross_entropy(bb.model(x)[:, sl], y).backward()
        iso.zero_frozen_grads()
        opt.step()
        iso.after_step()


@pytest.mark.parametrize("free_from_theta0", [False, True])
def test_start_weights(free_from_theta0):
    torch.manual_seed(0)
    bb = Backbone(ResNet18(num_classes=C * TASKS, in_channels=1, width=0.125))
    gen = torch.Generator().manual_seed(2)
    m0 = bb.new_task_mask(0.3, "uniform", gen)
    bb.start_weights(m0, free_from_theta0=True)  # task 0: θ0 ⊙ m0
    for p, w0, m in zip(bb.params, bb.theta0, m0, strict=True):
        assert same_bits(p.detach()[m], w0[m]) and bool((p.detach()[~m] == 0).all())
    _train_one_task(bb, m0, slice(0, C))
    bb.merge(m0)
    m1 = bb.new_task_mask(0.3, "uniform", gen)
    bb.start_weights(m1, free_from_theta0=free_from_theta0)
    n_frozen = n_free = 0
    for p, w0, m, u, w in zip(bb.params, bb.theta0, m1, bb.owned, bb.merged, strict=True):
        p = p.detach()
        assert same_bits(p[m & u], w[m & u])  # frozen positions: the merged value
        expected_free = w0[m & ~u] if free_from_theta0 else torch.zeros_like(w0[m & ~u])
        assert same_bits(p[m & ~u], expected_free)  # free positions: exactly 0 (+0.0) or θ0
        assert bool((p[~m] == 0).all())  # inactive: 0
        n_frozen += int((m & u).sum())
        n_free += int((m & ~u).sum())
    assert n_frozen > 0 and n_free > 0


def test_later_task_free_weights_start_at_zero_or_theta0_in_loop():
    bz, _, zero = simulate("resnet18", "adam", free_init="zero", check=False)
    bt, _, theta = simulate("resnet18", "adam", free_init="theta0", check=False)
    # Task 0 is the same in both runs, so task 1 draws the same mask.
    assert all(torch.equal(a, b) for a, b in zip(zero["start_masks"][1], theta["start_masks"][1], strict=True))
    n_free = 0
    for li, w0 in enumerate(bt.theta0):
        m1, u1 = theta["start_masks"][1][li], bt.task_masks[0][li]  # used before task 1 = m_0
        sz, st = zero["start_weights"][1][li], theta["start_weights"][1][li]
        free = m1 & ~u1
        assert bool((sz[free] == 0).all()) and not bool(torch.signbit(sz[free]).any())
        assert same_bits(st[free], w0[free])
        assert same_bits(sz[m1 & u1], st[m1 & u1])  # frozen: the merged value in both
        assert bool((sz[~m1] == 0).all()) and bool((st[~m1] == 0).all())  # inactive: 0 (θ0·0 may be −0.0)
        assert same_bits(st[m1 & u1], bt.merged[li][m1 & u1])
        n_free += int(free.sum())
    assert n_free > 0


# ---------------------------------------------------------------------- zeros off the mask


def test_after_step_zero_outside_mask_with_weight_decay():
    torch.manual_seed(0)
    bb = Backbone(ResNet18(num_classes=C * TASKS, in_channels=1, width=0.125))
    gen = torch.Generator().manual_seed(3)
    mask = bb.new_task_mask(0.2, "ERK", gen)
    # start dense (not ⊙ mask), so the optimizer has non-zero inactive weights to move
    iso = TaskIsolation(bb, mask, slice(0, C))
    opt = torch.optim.SGD(bb.model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.1)
    x = torch.randn(8, 1, 12, 12, generator=gen)
    y = torch.randint(0, C, (8,), generator=gen)
    for _ in range(2):
        opt.zero_grad(set_to_none=False)
        F.cross_entropy(bb.model(x)[:, :C], y).backward()
        iso.zero_frozen_grads()
        opt.step()
        assert any(bool((p.detach()[~m] != 0).any()) for p, m in zip(bb.params, mask, strict=True))
        iso.after_step()
        for p, m in zip(bb.params, mask, strict=True):
            assert bool((p.detach()[~m] == 0).all())
            assert bool((p.detach()[m] != 0).any())
    # a topology change, then refresh: zero off the new mask
    dst = DynamicSparsity(bb.params, mask, growth="random", initial_prune_rate=0.5, total_steps=4,
                          update_frequency=1, generator=gen)
    old = [m.clone() for m in mask]
    dst.update(1, opt)
    assert any(not torch.equal(a, b) for a, b in zip(old, mask, strict=True))
    iso.refresh()
    for p, m in zip(bb.params, mask, strict=True):
        assert bool((p.detach()[~m] == 0).all())


# ---------------------------------------------------------------------- evaluation weights, capacity


def test_load_task_weights_is_merged_times_mask_and_the_trained_network():
    bb, _, stats = simulate("resnet18", "adam_wd", check=False)
    for j in range(TASKS):
        bb.load_task_weights(j)
        for li, (p, w, m, end) in enumerate(zip(bb.params, bb.merged, bb.task_masks[j], stats["end_weights"][j], strict=True)):
            p = p.detach()
            assert torch.equal(p, w * m)
            assert same_bits(p[m], w[m])
            assert bool((p[~m] == 0).all())
            # the very weights task j had at the end of its own training
            assert same_bits(p[m], end[m]), f"task {j} layer {bb.names[li]}"
            assert bool((end[~m] == 0).all())


def test_capacity_is_union_fraction_and_increases():
    bb, _, stats = simulate("resnet18", "adam", method="uniform", check=False)
    total = sum(p.numel() for p in bb.params)
    for t in range(TASKS):
        union = [torch.zeros_like(p, dtype=torch.bool) for p in bb.params]
        for ms in bb.task_masks[: t + 1]:
            union = [u | m for u, m in zip(union, ms, strict=True)]
        assert stats["capacity"][t] == sum(int(u.sum()) for u in union) / total
    assert all(a < b for a, b in zip(stats["capacity"], stats["capacity"][1:], strict=False))
    assert stats["capacity"][0] == pytest.approx(0.3, abs=2e-3)  # one uniform mask of density 0.3
    assert bb.capacity() == stats["capacity"][-1]
    assert all(torch.equal(u, un) for u, un in zip(bb.owned, union, strict=True))


# ---------------------------------------------------------------------- masks vs initial weights


def test_derived_seeds_differ():
    assert derived_seed(0, 0) != derived_seed(0, 1, 0)
    assert derived_seed(0, 0) == derived_seed(0, 0)
    seeds = {derived_seed(0, 0)} | {task_seed(0, t) for t in range(5)} | {derived_seed(1, 0)}
    assert len(seeds) == 7
    assert all(task_seed(0, t) == derived_seed(0, 1, t) for t in range(5))
    assert all(0 <= s < 2**63 for s in seeds)


def _kept_theta0_z(theta0, mask) -> list[float]:
    """Per layer: mean of θ0 over kept positions, in units of its standard error."""
    out = []
    for w, m in zip(theta0, mask, strict=True):
        v = w[m].double()
        out.append(float(v.mean() / (v.std() / v.numel() ** 0.5)))
    return out


def test_same_seed_for_init_and_mask_would_keep_the_largest_weights():
    # The failure derived_seed guards against: same seed → mask scores = the init's uniform draws.
    torch.manual_seed(7)
    bb = Backbone(ResNet18(num_classes=10, in_channels=1, width=0.125))
    mask = bb.new_task_mask(0.2, "uniform", torch.Generator().manual_seed(7))
    z = _kept_theta0_z(bb.theta0, mask)
    assert all(v > 3 for v in z)


def test_masks_independent_of_initial_weights_in_the_learner():
    g = torch.Generator().manual_seed(0)
    n_train, n_test = 8, 2
    train_y = torch.arange(10).repeat_interleave(n_train)
    test_y = torch.arange(10).repeat_interleave(n_test)
    data = ImageSplit(torch.randint(0, 256, (80, 1, 28, 28), generator=g, dtype=torch.uint8), train_y,
                      torch.randint(0, 256, (20, 1, 28, 28), generator=g, dtype=torch.uint8), test_y,
                      (0.13,), (0.31,), hflip=False)
    cfg = ExperimentConfig(dataset="split-mnist", width=0.125, epochs=1, batch_size=8, density=0.2,
                           sparse_init="uniform", update_frequency=1000, device="cpu")
    learner = ContinualLearner(cfg, progress=False, data=data)
    # θ0 comes from derived_seed(seed, 0); the mask from task_seed(seed, 0) = derived_seed(seed, 1, 0).
    torch.manual_seed(derived_seed(cfg.seed, 0))
    ref = ResNet18(num_classes=10, in_channels=1, width=0.125)
    assert all(same_bits(a.detach(), b) for a, b in zip(ref.parameters(), learner.backbone.theta0, strict=True))
    learner.train_task(0)  # no topology update (update_frequency > steps): the drawn mask is m_0
    bb = learner.backbone
    expected = Backbone(ref).new_task_mask(0.2, "uniform", torch.Generator().manual_seed(task_seed(cfg.seed, 0)),
                                          head_rows=slice(0, 2))
    assert all(torch.equal(a, b) for a, b in zip(bb.task_masks[0], expected, strict=True))
    z = _kept_theta0_z(bb.theta0, bb.task_masks[0])
    assert all(abs(v) < 3 for v in z), z
    assert abs(sum(z)) / len(z) ** 0.5 < 3  # pooled over layers too


def test_backbone_state_round_trips_and_reads_checkpoints_written_before_the_rename():
    """``owned`` was called ``used`` in checkpoints written before the layered layout: both load."""
    torch.manual_seed(0)
    bb = Backbone(ResNet18(num_classes=4, in_channels=1, width=0.125))
    mask = bb.new_task_mask(0.2, "uniform", torch.Generator().manual_seed(0))
    bb.start_weights(mask, free_from_theta0=True)
    bb.merge(mask)
    state = bb.state_dict()
    for saved in (state, {("used" if k == "owned" else k): v for k, v in state.items()}):
        torch.manual_seed(1)
        other = Backbone(ResNet18(num_classes=4, in_channels=1, width=0.125))
        other.load_state_dict(saved)
        assert all(torch.equal(a, b) for a, b in zip(other.owned, bb.owned, strict=True))
        assert all(torch.equal(a, b) for a, b in zip(other.merged, bb.merged, strict=True))
        assert sum(int(o.sum()) for o in other.owned) == sum(int(m.sum()) for m in mask) > 0
