"""The clean protocol's measurement rules, with exact numbers: DST moves only what the task can train,
each task owns its head rows, evaluation does not depend on batching, and dead starts are reported."""

import pytest
import torch

from cldst.method.bn_stats import batchnorm_layers, compute_statistics, using_statistics
from cldst.method.dst import DynamicSparsity
from cldst.method.growth import grow
from cldst.method.learner import ContinualLearner
from cldst.method.selection import top_k_mask
from cldst.runner.experiment import run_experiment

pytestmark = pytest.mark.usefixtures("one_thread")


def counts(mask, used):
    return [(int((m & u).sum()), int((m & ~u).sum())) for m, u in zip(mask, used, strict=True)]


@pytest.mark.parametrize("init", ["uniform", "ERK"])
@pytest.mark.parametrize("growth", ["random", "unfired", "gradient", "momentum"])
@pytest.mark.slow
def test_reused_and_trainable_counts_never_change_within_a_task(tiny_cfg, monkeypatch, init, growth):
    learner = ContinualLearner(tiny_cfg(sparse_init=init, growth=growth, update_frequency=2, num_tasks=2,
                                        num_classes=4, density=0.3), progress=False)
    learner.train_task(0)
    bb = learner.backbone
    used = [u.clone() for u in bb.owned]
    seen = {"updates": 0, "start": None}
    original = DynamicSparsity.update

    def checked(self, step, optimizer):
        before = counts(self.masks, used)
        reused_before = [m & u for m, u in zip(self.masks, used, strict=True)]
        seen["start"] = seen["start"] or before
        out = original(self, step, optimizer)
        assert counts(self.masks, used) == before == seen["start"]
        # the reused part is the very positions drawn, and nothing grew into a used position
        assert all(torch.equal(m & u, r) for m, u, r in zip(self.masks, used, reused_before, strict=True))
        assert out["regrown_new"] > 0 or step > 10  # the update really moved weights
        seen["updates"] += 1
        return out

    monkeypatch.setattr(DynamicSparsity, "update", checked)
    learner.train_task(1)
    assert seen["updates"] >= 5
    assert sum(r for r, _ in seen["start"]) > 0  # task 1 reuses frozen weights: the check has teeth


def test_growth_never_picks_a_fixed_position():
    g = torch.Generator().manual_seed(0)
    mask = torch.zeros(64, dtype=torch.bool)
    mask[:8] = True
    fixed = torch.zeros(64, dtype=torch.bool)
    fixed[8:40] = True
    score = torch.arange(64, 0, -1, dtype=torch.float)  # the fixed positions score highest
    for rule in ("random", "unfired", "gradient"):
        new = grow(rule, torch.zeros(64), mask, 20, generator=g, fired=mask.clone(), grad=score, fixed=fixed)
        assert int(new.sum()) == 28
        assert not bool((new & fixed).any())
    # gradient: the 20 best non-fixed candidates are positions 40..59
    new = grow("gradient", torch.zeros(64), mask, 20, grad=score, fixed=fixed)
    assert torch.nonzero(new & ~mask).squeeze(1).tolist() == list(range(40, 60))


def test_reference_dst_can_grow_into_frozen_positions(tiny_cfg, monkeypatch):
    learner = ContinualLearner(tiny_cfg(growth="random", update_frequency=2, num_tasks=2, num_classes=4,
                                        density=0.3, dst_moves_frozen=True), progress=False)
    learner.train_task(0)
    used = [u.clone() for u in learner.backbone.owned]
    start = {}
    original = DynamicSparsity.update

    def record(self, step, optimizer):
        start.setdefault("counts", counts(self.masks, used))
        return original(self, step, optimizer)

    monkeypatch.setattr(DynamicSparsity, "update", record)
    learner.train_task(1)
    final = counts(learner.backbone.task_masks[1], used)
    assert sum(r for r, _ in final) > sum(r for r, _ in start["counts"])  # the frozen share grew


def test_growth_ties_are_broken_at_random_not_by_index():
    scores = torch.zeros(1000)
    lowest = top_k_mask(scores, 10)
    assert torch.nonzero(lowest).squeeze(1).tolist() == list(range(10))
    g = torch.Generator().manual_seed(0)
    picks = torch.stack([top_k_mask(scores, 10, generator=g) for _ in range(200)]).float()
    assert picks.sum(1).eq(10).all()  # exactly k every time
    assert picks[:, :10].mean() < 0.05  # the first positions are not favoured (uniform: 0.01)
    assert int((picks.sum(0) > 0).sum()) > 800  # ties spread over the whole tensor
    # strict order is untouched: a clear winner is always chosen
    scores[500] = 1.0
    assert all(bool(top_k_mask(scores, 3, generator=g)[500]) for _ in range(20))


@pytest.mark.slow
def test_each_task_owns_only_its_head_rows(tiny_cfg):
    learner = ContinualLearner(tiny_cfg(sparse_init="ERK", num_tasks=3, num_classes=6), progress=False)
    bb = learner.backbone
    h = bb.head_index
    learner.train_task(0)
    head_used = bb.owned[h]
    assert bool(head_used[:2].all())  # ERK: the head is dense within task 0's own rows
    assert not bool(head_used[2:].any())  # and no later task's row is used
    theta0_rows = bb.theta0[h][2:4].clone()
    learner.train_task(1)
    assert torch.equal(bb.task_masks[1][h][2:4], torch.ones_like(bb.task_masks[1][h][2:4]))
    assert not bool(bb.task_masks[1][h][:2].any()) and not bool(bb.task_masks[1][h][4:].any())
    trained_rows = bb.merged[h][2:4]
    assert not torch.equal(trained_rows, theta0_rows)  # task 1's head rows trained
    assert int((trained_rows != theta0_rows).sum()) == trained_rows.numel()


@pytest.mark.slow
def test_shared_head_rows_quirk_lets_task_0_own_the_whole_head(tiny_cfg):
    learner = ContinualLearner(tiny_cfg(sparse_init="ERK", shared_head_rows=True), progress=False)
    learner.train_task(0)
    assert bool(learner.backbone.owned[learner.backbone.head_index].all())


@pytest.mark.slow
def test_evaluation_is_independent_of_order_and_batch_size(tiny_cfg):
    learner = ContinualLearner(tiny_cfg(num_tasks=2, num_classes=4), progress=False)
    learner.train_task(0)
    learner.train_task(1)
    base = [learner.evaluate(j) for j in range(2)]
    learner.images.test_idx = [idx.flip(0) for idx in learner.images.test_idx]
    assert [learner.evaluate(j) for j in range(2)] == base
    for size in (7, 1000):
        learner.cfg.eval_batch_size = size
        assert [learner.evaluate(j) for j in range(2)] == base
    learner.cfg.eval_batch_stats = True  # the original's batch statistics: batching matters
    learner.cfg.eval_batch_size = 7
    assert [learner.evaluate(j) for j in range(2)] != base


def test_statistics_are_the_inputs_mean_and_variance():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.BatchNorm2d(3, affine=False, track_running_stats=False))
    xs = [torch.randn(4, 3, 2, 2) * 3 + 1 for _ in range(3)]
    (mean, var), = compute_statistics(model, model, xs)
    all_x = torch.cat(xs).double()
    assert torch.allclose(mean.double(), all_x.mean((0, 2, 3)), atol=1e-6)
    assert torch.allclose(var.double(), all_x.var((0, 2, 3), unbiased=False), atol=1e-5)
    model.eval()
    with using_statistics(model, [(mean, var)]):
        one = model(xs[0][:1])
        assert torch.allclose(one, model(xs[0])[:1])  # a batch of one: the same prediction
    assert batchnorm_layers(model)[0].running_mean is None  # buffers removed again


@pytest.mark.slow
def test_statistics_survive_checkpoint_and_resume_bit_for_bit(tiny_cfg, tmp_path):
    cfg = tiny_cfg()
    run_experiment(cfg, tmp_path / "a", progress=False, max_tasks=2)
    resumed = ContinualLearner(cfg, progress=False)
    resumed.restore(torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=False))
    full = ContinualLearner(cfg, progress=False)
    full.run(max_tasks=2)
    assert len(resumed.state.bn_stats) == len(full.state.bn_stats) == 2
    for a, b in zip(resumed.state.bn_stats, full.state.bn_stats, strict=True):
        for (ma, va), (mb, vb) in zip(a, b, strict=True):
            assert torch.equal(ma, mb) and torch.equal(va, vb)
    m_resumed = run_experiment(cfg, tmp_path / "a", progress=False, resume=True)
    m_full = full.run()
    assert m_resumed["acc_matrix"] == m_full["acc_matrix"]


@pytest.mark.slow
def test_a_dead_start_is_reported_and_theta0_avoids_it(tiny_cfg, capsys):
    settings = dict(sparse_init="uniform", density=0.05, width=0.125)
    dead = ContinualLearner(tiny_cfg(free_init="zero", **settings), progress=False).run()
    assert dead["dead_tasks"] == [1, 2]
    assert dead["acc_matrix"][1][1] == 50.0 and dead["acc_matrix"][2][2] == 50.0
    assert "task 2 starts dead" in capsys.readouterr().err
    alive = ContinualLearner(tiny_cfg(**settings), progress=False).run()
    assert alive["config"]["free_init"] == "theta0"
    assert alive["dead_tasks"] == []


@pytest.mark.slow
def test_zero_started_head_rows_alone_are_not_a_dead_start(tiny_cfg):
    # ERK reuses most of task 0's backbone, so features depend on the input; the task's own head
    # rows start at 0 (constant logits), yet the head learns from the features.
    m = ContinualLearner(tiny_cfg(free_init="zero", sparse_init="ERK", num_tasks=2, num_classes=4),
                         progress=False).run()
    assert m["dead_tasks"] == []
    assert m["acc_matrix"][1][1] > 60.0
