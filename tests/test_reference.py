"""One test per reference-protocol quirk, each on a tiny model (REFERENCE.md, items marked quirk)."""

import pytest
import torch

from cldst.dst import active_count, grow, layer_densities
from cldst.masks import Backbone, TaskIsolation
from cldst.models import ResNet18
from cldst.train import ContinualLearner

pytestmark = pytest.mark.usefixtures("one_thread")


def trained(cfg, tasks=1):
    learner = ContinualLearner(cfg, progress=False)
    for t in range(tasks):
        learner.train_task(t)
    return learner


def test_test_augment_makes_evaluation_random_and_clean_is_deterministic(tiny_cfg):
    clean = trained(tiny_cfg(num_tasks=2, num_classes=4))
    assert clean.evaluate(0) == clean.evaluate(0)
    ref = trained(tiny_cfg(num_tasks=2, num_classes=4, test_augment=True))
    values = {ref.evaluate(0) for _ in range(4)}
    assert len(values) > 1  # another shuffle and augmentation at every call


def test_all_class_argmax_can_pick_another_tasks_class(tiny_cfg):
    learner = trained(tiny_cfg(num_tasks=2, num_classes=4))

    def task1_class_wins(x):  # logits where class 2 (task 1's) is always the largest
        logits = torch.zeros(x.shape[0], 4)
        logits[:, 2] = 10.0
        logits[:, 0] = torch.linspace(0, 1, x.shape[0])
        return logits

    learner.forward = task1_class_wins
    assert learner.evaluate(0) > 0  # within task 0's classes, class 0 wins: right for label 0
    learner.cfg.eval_all_classes = True
    assert learner.evaluate(0) == 0.0  # over all classes, task 1's class 2 wins every time


def test_final_model_matrix_rows_are_identical_below_the_diagonal(tiny_cfg):
    m = ContinualLearner(tiny_cfg(final_model_matrix=True), progress=False).run()
    a = m["acc_matrix"]
    for j in range(3):
        assert all(a[i][j] == a[j][j] for i in range(j, 3))  # one final model: one value per column
        assert all(a[i][j] is not None for i in range(j))  # the "FWT" entries above the diagonal
    assert m["bwt"] == 0.0


def test_reference_metrics_have_the_originals_names(tiny_cfg):
    m = ContinualLearner(tiny_cfg(protocol="reference"), progress=False).run()
    ref = m["reference_metrics"]
    assert set(ref) == {"incremental accuracy", "BWT", "Average BWT", "FWT", "Average FWT"}
    a = m["acc_matrix"]
    assert ref["incremental accuracy"][0] == pytest.approx(a[2][0])
    assert ref["FWT"][0] == pytest.approx((a[0][1] + a[0][2]) / 2)
    assert ref["Average BWT"] == pytest.approx(((a[2][0] - a[0][0]) + (a[2][1] - a[1][1])) / 2)


def test_keep_best_epoch_merges_the_best_training_accuracy_epoch(tiny_cfg, monkeypatch):
    cfg = tiny_cfg(num_tasks=2, num_classes=4, epochs=4, keep_best_epoch=True)
    learner = ContinualLearner(cfg, progress=False)
    snapshots = []
    step = torch.optim.lr_scheduler.MultiStepLR.step

    def record(self, *args, **kwargs):  # called at construction, then at the end of every epoch
        snapshots.append([p.detach().clone() for p in learner.backbone.params])
        step(self, *args, **kwargs)
        if len(snapshots) == 4:  # wreck the last epoch, so that the best one is earlier
            for group in self.optimizer.param_groups:
                group["lr"] = 10.0

    monkeypatch.setattr(torch.optim.lr_scheduler.MultiStepLR, "step", record)
    learner.train_task(0)
    accs = [r["train_acc"] for r in learner.state.history if r["kind"] == "epoch"]
    best = accs.index(max(accs))
    assert best != len(accs) - 1
    assert len(snapshots) == 1 + 4
    for merged, w in zip(learner.backbone.merged, snapshots[1 + best]):
        assert torch.equal(merged, w)  # nonzero rule onto an all-zero merged model: the snapshot itself


@pytest.mark.parametrize("quirk", [False, True])
def test_grown_frozen_position_stays_zero_in_training(quirk):
    torch.manual_seed(0)
    bb = Backbone(ResNet18(num_classes=4, in_channels=1, width=0.125))
    gen = torch.Generator().manual_seed(1)
    m0 = bb.new_task_mask(0.3, "uniform", gen)
    bb.start_weights(m0, free_from_theta0=True)
    bb.merge(m0)
    m1 = bb.new_task_mask(0.3, "uniform", gen)
    layer = 1
    q = torch.nonzero((m0[layer] & ~m1[layer]).flatten())[0, 0]  # frozen by task 0, not drawn by task 1
    bb.start_weights(m1, free_from_theta0=False)
    iso = TaskIsolation(bb, m1, slice(2, 4), grown_frozen_zero=quirk)
    m1[layer].view(-1)[q] = True  # grown by a topology update
    iso.refresh()
    opt = torch.optim.Adam(bb.model.parameters(), lr=0.01)
    old = bb.merged[layer].view(-1)[q].item()
    assert old != 0
    for _ in range(3):
        loss = bb.model(torch.randn(8, 1, 12, 12))[:, 2:4].sum()
        opt.zero_grad()
        loss.backward()
        iso.zero_frozen_grads()
        opt.step()
        iso.after_step()
        value = bb.params[layer].view(-1)[q].item()
        assert value == (0.0 if quirk else old)
    bb.merge(m1)
    bb.load_task_weights(1)
    assert bb.params[layer].view(-1)[q].item() == old  # at evaluation it has its old value either way


def test_bernoulli_masks_have_inexact_counts(tiny_cfg):
    shapes_and_density = []
    learner = ContinualLearner(tiny_cfg(num_tasks=2, num_classes=4, bernoulli_masks=True,
                                        sparse_init="uniform", density=0.3), progress=False)
    mask = learner.backbone.new_task_mask(0.3, "uniform", torch.Generator().manual_seed(0), exact=False)
    for p, m in zip(learner.backbone.params, mask):
        shapes_and_density.append(int(m.sum()) == active_count(p.numel(), 0.3))
    assert not all(shapes_and_density)  # Bernoulli draws: the realised count varies by layer
    exact = learner.backbone.new_task_mask(0.3, "uniform", torch.Generator().manual_seed(0))
    dens = layer_densities(learner.backbone.shapes, 0.3, "uniform")
    assert [int(m.sum()) for m in exact] == [active_count(p.numel(), d) for p, d in
                                              zip(learner.backbone.params, dens)]


def test_bernoulli_random_growth_count_is_inexact():
    mask = torch.zeros(1000, dtype=torch.bool)
    mask[:100] = True
    counts = {int(grow("random", torch.zeros(1000), mask, 50, generator=torch.Generator().manual_seed(s),
                       bernoulli=True).sum()) for s in range(5)}
    exact = {int(grow("random", torch.zeros(1000), mask, 50,
                      generator=torch.Generator().manual_seed(s)).sum()) for s in range(5)}
    assert exact == {150} and counts != {150}


def test_unfired_topup_is_bernoulli_when_too_few_unfired():
    mask = torch.zeros(1000, dtype=torch.bool)
    mask[:100] = True
    fired = torch.zeros(1000, dtype=torch.bool)
    fired[:990] = True  # only 10 never-fired positions, 50 to grow
    clean = grow("unfired", torch.zeros(1000), mask, 50, generator=torch.Generator().manual_seed(0), fired=fired)
    assert int(clean.sum()) == 150 and bool(clean[990:].all())
    counts = set()
    for s in range(5):
        ref = grow("unfired", torch.zeros(1000), mask, 50, generator=torch.Generator().manual_seed(s),
                   fired=fired, unfired_topup=True)
        assert bool(ref[990:].all())  # every unfired position first
        counts.add(int(ref.sum()))
    assert counts != {150}  # the top-up is a Bernoulli draw


def test_cli_reference_and_clean_both_finish(tmp_path):
    import json

    from cldst.cli import main

    base = ["run", "--dataset", "split-mnist", "--num_tasks", "2", "--num_classes", "4", "--width", "0.125",
            "--epochs", "1", "--batch_size", "64", "--update_frequency", "4", "--device", "cpu", "--no-progress"]
    for protocol in ("clean", "reference"):
        assert main(base + ["--protocol", protocol, "--out", str(tmp_path / protocol)]) == 0
    clean = json.loads((tmp_path / "clean" / "metrics.json").read_text())
    ref = json.loads((tmp_path / "reference" / "metrics.json").read_text())
    assert clean["bwt"] == 0.0 and "reference_metrics" not in clean
    assert ref["acc_matrix"][0][1] is not None and "Average BWT" in ref["reference_metrics"]
