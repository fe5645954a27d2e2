"""The field's sub-network methods beside DST (cfg.method: packnet, supsup, wsn; docs/method.md):
their exact invariants, zero forgetting, exact resume, FLOPs by hand, refusals and run ids."""

import itertools

import pytest
import torch
from tiny_net import Tiny

from cldst import ConfigError, ExperimentConfig, run_experiment
from cldst.method.events import Preempted
from cldst.method.flops import TaskFlops, dense_forward_macs, layer_output_sizes
from cldst.method.learner import ContinualLearner
from cldst.method.masks import Backbone
from cldst.method.methods import SUBNETWORK_METHODS
from cldst.method.subnetwork import layer_counts


def two_tasks(tiny_cfg, method, **kw):
    return tiny_cfg(method=method, num_tasks=2, num_classes=4, epochs=2, **kw)


def watch_steps(task, check):
    """After every optimizer step of ``task``, calls ``check(before)``, ``before`` being what
    ``check.capture()`` returned just before the step."""
    step = task.trainer.step

    def wrapped(x, y):
        before = check.capture()
        out = step(x, y)
        check(before)
        return out

    task.trainer.step = wrapped


def run_task(learner, t, watch=None):
    task = learner.begin_task(t)
    if watch is not None:
        watch_steps(task, watch)
    while task.pos.epoch < learner.cfg.epochs:
        learner.train_epoch(task)
    learner.end_task(task)
    return task


# ---------------------------------------------------------------------- PackNet
class PackNetCheck:
    """After every step of a PackNet task: earlier tasks' weights (all but their head rows) are read
    bit for bit, and once pruned, the pruned weights are 0."""

    def __init__(self, bb, task, owned_before, merged_before):
        self.bb, self.task, self.owned, self.merged = bb, task, owned_before, merged_before
        self.steps = {"train": 0, "retrain": 0}

    def capture(self):
        return None

    def __call__(self, _):
        bb, task = self.bb, self.task
        for i, (p, u, w, m) in enumerate(zip(bb.params, self.owned, self.merged, task.mask)):
            assert i == bb.head_index or bool((m | ~u).all())
            assert torch.equal(p.detach()[u & m], w[u & m])
        if task.trainer.rule.pruned:  # pruned weights stay 0 through retraining
            self.steps["retrain"] += 1
            for p, m in zip(bb.params, task.mask):
                assert not bool(p.detach()[~m].any())
        else:
            self.steps["train"] += 1


@pytest.mark.parametrize("init", [pytest.param("ERK", marks=pytest.mark.slow), "uniform"])
def test_packnet_prune_retrain_freeze(tiny_cfg, one_thread, init):
    learner = ContinualLearner(two_tasks(tiny_cfg, "packnet", sparse_init=init), progress=False)
    bb = learner.backbone
    head = bb.head_index
    for t in range(2):
        owned_before = [u.clone() for u in bb.owned]
        merged_before = [w.clone() for w in bb.merged]
        task = learner.begin_task(t)
        rule = task.trainer.rule
        counts = layer_counts(bb, learner.cfg, task.classes)
        check = PackNetCheck(bb, task, owned_before, merged_before)
        watch_steps(task, check)
        while task.pos.epoch < learner.cfg.epochs:
            learner.train_epoch(task)
        assert rule.pruned and check.steps["train"] == check.steps["retrain"] > 0  # 1 epoch each
        # after pruning, the task's own weights: exactly its count per layer (all free ones if fewer)
        for name, m, u, k in zip(bb.names, task.mask, owned_before, counts):
            free = int((~u).sum()) if name != bb.names[head] else int((~u)[task.classes].sum())
            assert int((m & ~u).sum()) == min(k, free), name
        learner.end_task(task)
        for w, w_old, u in zip(bb.merged, merged_before, owned_before):
            assert torch.equal(w[u], w_old[u])  # the merge leaves earlier tasks' weights alone
    if init == "uniform":  # uniform leaves free positions in every layer: no shortfall
        assert learner.state.reuse_shortfall == []
    m0, m1 = bb.task_masks
    for i, (a, b) in enumerate(zip(m0, m1)):
        if i != head:
            assert bool((b | ~a).all())  # m_1 ⊇ m_0: cumulative
            # and task 1 owns weights of its own (ERK's dense layers are all task 0's)
            assert init == "ERK" or bool((b & ~a).any())
    assert not bool((m0[head] & m1[head]).any())  # each task its own head rows


# ---------------------------------------------------------------------- SupSup
def test_supsup_weights_never_change_and_masks_are_exact_top_k(tiny_cfg, one_thread):
    learner = ContinualLearner(tiny_cfg(method="supsup", sparse_init="uniform"), progress=False)
    bb = learner.backbone
    theta0 = [p.detach().clone() for p in bb.params]
    for t in range(3):
        task = learner.begin_task(t)
        rule = task.trainer.rule
        counts = layer_counts(bb, learner.cfg, task.classes)
        while task.pos.epoch < learner.cfg.epochs:
            learner.train_epoch(task)
        for i, (s, m, k) in enumerate(zip(rule.scores, task.mask, counts)):
            assert int(m.sum()) == k  # exact top-k per layer
            score = s.detach().abs()
            inside = score[m]
            if i == bb.head_index:
                outside = score[task.classes][~m[task.classes]]
                assert not bool(m[: task.classes.start].any() or m[task.classes.stop:].any())
            else:
                outside = score[~m]
            assert outside.numel() == 0 or float(inside.min()) >= float(outside.max())
        learner.end_task(task)
        # after any number of tasks every weight is bit for bit its initial value
        for w0, w, th, ws in zip(theta0, bb.merged, bb.theta0, rule.weights):
            assert torch.equal(w, w0) and torch.equal(th, w0) and torch.equal(ws, w0)
        for p, w0, m in zip(bb.params, theta0, task.mask):
            assert torch.equal(p.detach(), w0 * m)
    assert learner.backbone.capacity() == 0.0  # nothing is owned or frozen
    for t, masks in enumerate(bb.task_masks):
        assert [int(m.sum()) for m in masks] == layer_counts(bb, learner.cfg, slice(2 * t, 2 * t + 2))


# ---------------------------------------------------------------------- WSN
@pytest.mark.parametrize("init", [pytest.param("ERK", marks=pytest.mark.slow), "uniform"])
def test_wsn_reuses_owned_weights_and_trains_only_free_ones(tiny_cfg, one_thread, init):
    learner = ContinualLearner(two_tasks(tiny_cfg, "wsn", sparse_init=init), progress=False)
    bb = learner.backbone
    run_task(learner, 0)
    owned = [u.clone() for u in bb.owned]
    merged = [w.clone() for w in bb.merged]
    task = learner.begin_task(1)
    rule = task.trainer.rule
    start = [w.detach().clone() for w in rule.weights]
    counts = layer_counts(bb, learner.cfg, task.classes)
    seen = {"owned_score_grad": False, "reused": False, "steps": 0}

    class Check:
        @staticmethod
        def capture():
            return [w.detach().clone() for w in rule.weights], [m.clone() for m in task.mask]

        def __call__(self, before):
            weights, masks = before
            seen["steps"] += 1
            for w, w_old, m_old, u, merged_w, s, m, k in zip(rule.weights, weights, masks, owned, merged,
                                                              rule.scores, task.mask, counts):
                w = w.detach()
                assert torch.equal(w[u], merged_w[u])  # owned weights bit for bit
                changed = w != w_old
                assert not bool((changed & ~(m_old & ~u)).any())  # only free weights in the mask change
                assert int(m.sum()) == k  # exact top-c per layer
                if bool(u.any()) and bool(s.grad[u].ne(0).any()):
                    seen["owned_score_grad"] = True  # reuse is learned: owned positions' scores get gradient
                seen["reused"] |= bool((m & u).any())

    watch_steps(task, Check())
    while task.pos.epoch < learner.cfg.epochs:
        learner.train_epoch(task)
    assert seen["steps"] > 0 and seen["owned_score_grad"] and seen["reused"]
    assert any(bool((w.detach() != w0)[~u].any()) for w, w0, u in zip(rule.weights, start, owned))  # free ones trained
    learner.end_task(task)
    for w, w_old, u in zip(bb.merged, merged, owned):
        assert torch.equal(w[u], w_old[u])


# ---------------------------------------------------------------------- all methods
@pytest.mark.parametrize("method", ["packnet", "supsup", "wsn"])
@pytest.mark.slow
def test_zero_forgetting(tiny_cfg, one_thread, method):
    m = ContinualLearner(tiny_cfg(method=method, epochs=2), progress=False).run()
    a = m["acc_matrix"]
    for j in range(3):
        for i in range(j, 3):
            assert a[i][j] == a[j][j]
    assert m["bwt"] == 0.0 and m["forgetting"] == 0.0
    assert m["acc"] > 60  # two classes per task: chance is 50


def after_steps(k):
    calls = itertools.count(1)
    return lambda: next(calls) >= k


# 2 tasks of 2 epochs, 12 steps each: stop checks 1..25 are task 0's, task 1's epoch 1 ends at 37
@pytest.mark.parametrize("method, stop_at", [
    ("packnet", 25 + 12 + 5),  # task 1, retraining, mid-epoch: the prune and its mask are resumed
    ("packnet", 25 + 12),  # task 1, at the end of the training phase: the prune is still to come
    ("supsup", 25 + 5),
    ("wsn", 25 + 12 + 5),
])
@pytest.mark.slow
def test_resume_mid_task_equals_uninterrupted(tiny_cfg, tmp_path, one_thread, method, stop_at):
    cfg = two_tasks(tiny_cfg, method)
    full = run_experiment(cfg, tmp_path / "full", progress=False, progress_file=False)
    with pytest.raises(Preempted):
        run_experiment(cfg, tmp_path / "cut", progress=False, stop=after_steps(stop_at))
    resumed = run_experiment(cfg, tmp_path / "cut", resume=True, progress=False)
    for key in ("acc_matrix", "acc", "bwt", "capacity", "layer_density", "flops"):
        assert resumed[key] == full[key], key


@pytest.mark.parametrize("method", ["packnet", "supsup", "wsn"])
def test_flops_of_a_hand_made_layer(tiny_cfg, method):
    cfg = tiny_cfg(method=method, sparse_init="uniform", density=0.5, epochs=2)
    model = Tiny()
    bb = Backbone(model)
    sizes = layer_output_sizes(model, (2, 4, 4))
    dense = dense_forward_macs(model, sizes)
    assert dense == 3 * 2 * 3 * 3 * 16 + 3 * 5 == 879
    rule = SUBNETWORK_METHODS[method](cfg, bb, slice(0, 2), torch.Generator().manual_seed(0))
    mask = rule.draw_mask()
    flops = TaskFlops(bb.names, sizes, dense, rule.flops_rule, mask)
    flops.step(4, updated=False)
    # the task's counts: conv round(0.5 · 54) = 27 of 16 positions each; head: its 2 rows × 3, half: 3
    sparse = 27 * 16 + 3
    if method == "packnet":
        # training phase: every conv weight and its own 2 head rows, 3 forward passes per example
        assert flops.total == 3 * (54 * 16 + 6) * 4
        rule.prune()
        flops.mask_changed()
        flops.step(4, updated=False)
        assert flops.total == 3 * (54 * 16 + 6) * 4 + 3 * sparse * 4
    else:
        # sparse forward and input gradient, the dense gradient of every score
        assert flops.total == (2 * sparse + 879) * 4


def test_method_dst_leaves_run_ids_unchanged():
    # the ids these configs had before the method setting existed
    ids = {(): "split-mnist-ERK-gradient-d0.2-s0-0562952166",
           (("dataset", "cifar100"), ("density", 0.1)): "cifar100-ERK-gradient-d0.1-s0-7d98e83a74",
           (("protocol", "reference"),): "split-mnist-ERK-gradient-d0.2-s0-b60dd0af87",
           (("growth", "random,gradient"), ("val_fraction", 0.1)): "split-mnist-ERK-adaptive-d0.2-s0-ea3fa77806"}
    for kw, run_id in ids.items():
        assert ExperimentConfig(**dict(kw)).run_id() == run_id
        assert ExperimentConfig(**dict(kw), method="dst", retrain_epochs=2, score_lr=0.1).run_id() == run_id
    packnet = ExperimentConfig(method="packnet")
    assert packnet.run_id().startswith("split-mnist-ERK-packnet-d0.2-s0-")
    # settings a method does not read leave its run id alone
    assert ExperimentConfig(method="wsn", growth="random", update_frequency=3).run_id() == \
        ExperimentConfig(method="wsn").run_id()
    assert ExperimentConfig(method="packnet", retrain_epochs=2).run_id() != packnet.run_id()


@pytest.mark.parametrize("values, message", [
    (dict(method="packnet", protocol="reference"), "method=packnet runs the clean protocol only: set protocol=clean"),
    (dict(method="wsn", keep_best_epoch=True), "method=wsn runs the clean protocol only: turn off keep_best_epoch"),
    (dict(method="supsup", growth="bandit"), "candidate lists and growth=bandit are DST's"),
    (dict(method="wsn", growth="random,gradient", val_fraction=0.1), "candidate lists and growth=bandit are DST's"),
    (dict(method="packnet", isolation=False), "needs isolation=true, reuse=all and free_init=theta0"),
    (dict(method="wsn", reuse="none"), "needs isolation=true, reuse=all and free_init=theta0"),
    (dict(method="packnet", epochs=3, retrain_epochs=3), "retrain_epochs=3 is not allowed"),
    (dict(method="supsup", score_lr=0), "score_lr=0 is not allowed"),
    (dict(method="hat"), "method='hat' is not allowed"),
])
def test_refused(values, message):
    with pytest.raises(ConfigError, match=message):
        ExperimentConfig(**values)
