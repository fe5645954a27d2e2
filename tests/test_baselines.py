"""The baselines as settings of the same loop (clean protocol): static sparse, no reuse, fine-tuning."""

import pytest
import torch

from cldst.config import ConfigError, ExperimentConfig
from cldst.method.learner import ContinualLearner

pytestmark = pytest.mark.usefixtures("one_thread")


def masks_during(learner, t):
    """Train task t; return the mask as drawn and after every topology update."""
    seen = []
    update = learner.backbone.new_task_mask

    def capture(*args, **kwargs):
        seen.append(update(*args, **kwargs))
        return seen[-1]

    learner.backbone.new_task_mask = capture
    snapshots = []
    step = learner.train_task.__func__

    from cldst.method import task_trainer
    original = task_trainer.DynamicSparsity.update

    def record(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        snapshots.append([m.clone() for m in self.masks])
        return out

    task_trainer.DynamicSparsity.update = record
    try:
        step(learner, t)
    finally:
        task_trainer.DynamicSparsity.update = original
        del learner.backbone.new_task_mask
    return seen[-1], snapshots


@pytest.mark.parametrize("static", [dict(growth="none"), dict(update_frequency=0)])
def test_static_mask_never_changes(tiny_cfg, static):
    learner = ContinualLearner(tiny_cfg(num_tasks=2, num_classes=4, **static), progress=False)
    for t in range(2):
        mask, updates = masks_during(learner, t)
        assert updates == []  # no topology update ran
        assert all(torch.equal(a, b) for a, b in zip(learner.backbone.task_masks[t], mask))
    rows = [r for r in learner.state.history if r["kind"] == "update"]
    assert rows == []


@pytest.mark.slow
def test_dst_updates_do_run_without_the_static_setting(tiny_cfg):
    learner = ContinualLearner(tiny_cfg(num_tasks=2, num_classes=4), progress=False)
    _, updates = masks_during(learner, 0)
    assert len(updates) == learner.steps_per_epoch(0) // 4


@pytest.mark.slow
def test_no_reuse_gives_disjoint_task_masks(tiny_cfg):
    cfg = tiny_cfg(sparse_init="uniform", density=0.2, reuse="none")
    learner = ContinualLearner(cfg, progress=False)
    learner.run()
    masks = learner.backbone.task_masks
    for t in range(1, 3):
        for layer in range(len(masks[t])):
            earlier = torch.zeros_like(masks[t][layer])
            for s in range(t):
                earlier |= masks[s][layer]
            assert int((masks[t][layer] & earlier).sum()) == 0  # m_t ∩ used = ∅, every layer
    assert learner.metrics()["reuse_matrix"][2][:2] == [0.0, 0.0]  # nothing owned by an earlier task
    assert learner.metrics()["reuse_shortfall"] == []  # 3 × 20 % fits in every layer


@pytest.mark.slow
def test_no_reuse_reports_layers_that_run_out(tiny_cfg, capsys):
    learner = ContinualLearner(tiny_cfg(sparse_init="ERK", reuse="none"), progress=False)
    learner.run()  # ERK makes the stem dense: task 1 finds it full
    shortfall = learner.metrics()["reuse_shortfall"]
    assert [s["task"] for s in shortfall] == [1, 2]
    assert shortfall[0]["conv1.weight"] == learner.backbone.params[0].numel()
    assert "too few free positions" in capsys.readouterr().err


@pytest.mark.slow
def test_fine_tuning_changes_an_earlier_tasks_weights_and_forgets(tiny_cfg):
    learner = ContinualLearner(tiny_cfg(isolation=False, num_tasks=2, num_classes=4), progress=False)
    learner.train_task(0)
    after_task0 = [w.clone() for w in learner.backbone.merged]
    m0 = [m.clone() for m in learner.backbone.task_masks[0]]
    learner.train_task(1)
    changed = sum(int((a != b)[m].sum()) for a, b, m in zip(after_task0, learner.backbone.merged, m0))
    assert changed > 0  # task 1 overwrote weights task 0 had trained
    isolated = ContinualLearner(tiny_cfg(num_tasks=2, num_classes=4), progress=False)
    isolated.train_task(0)
    before = [w.clone() for w in isolated.backbone.merged]
    isolated.train_task(1)
    assert all(torch.equal(a[m], b[m]) for a, b, m in zip(before, isolated.backbone.merged,
                                                          isolated.backbone.task_masks[0]))


@pytest.mark.slow
def test_fine_tuning_has_a_real_backward_transfer(tiny_cfg):
    m = ContinualLearner(tiny_cfg(isolation=False, epochs=2), progress=False).run()
    a = m["acc_matrix"]
    assert m["bwt"] != 0.0 and any(a[2][j] != a[j][j] for j in range(2))


def test_no_reuse_needs_isolation():
    with pytest.raises(ConfigError, match="reuse='none' needs isolation"):
        ExperimentConfig(reuse="none", isolation=False)


def test_baseline_defaults_leave_run_ids_unchanged():
    cfg = ExperimentConfig()
    assert ExperimentConfig(reuse="all", isolation=True).run_id() == cfg.run_id()
    assert ExperimentConfig(reuse="none").run_id() != cfg.run_id()
    assert ExperimentConfig(isolation=False).run_id() != cfg.run_id()


@pytest.mark.slow
def test_flops_are_recorded_per_task(tiny_cfg):
    dense = ContinualLearner(tiny_cfg(num_tasks=2, num_classes=4, density=1.0, growth="random"), progress=False)
    m = dense.run()
    # the clean head has only the task's own rows: 2 of 4 rows of the linear layer are active
    head = dense.backbone.params[dense.backbone.head_index]
    head_share = head.shape[1] * 1 / dense.dense_macs  # one head row, per example
    for f in m["flops"]:
        assert f["inference_vs_dense"] == pytest.approx(1 - 2 * head_share)
        assert f["train_vs_dense"] == pytest.approx(f["inference_vs_dense"])  # random growth: 3 f_S per step
    static = ContinualLearner(tiny_cfg(num_tasks=2, num_classes=4, growth="none", sparse_init="uniform"),
                              progress=False).run()
    for f in static["flops"]:  # a constant mask: training costs 3 f_S per example, f_S the task's network
        assert f["train_vs_dense"] == pytest.approx(f["inference_vs_dense"])
        assert f["train_vs_dense"] == pytest.approx(0.2, abs=0.002)  # uniform 20 % in every layer
    gradient = ContinualLearner(tiny_cfg(num_tasks=2, num_classes=4), progress=False).run()
    assert all(f["train_vs_dense"] > f["inference_vs_dense"] for f in gradient["flops"])  # dense gradients
