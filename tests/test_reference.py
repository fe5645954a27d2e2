"""One test per reference-protocol quirk, each on a tiny model (docs/reference-protocol.md)."""

import pytest
import torch

from cldst.config import ExperimentConfig
from cldst.config.schedule import lr_milestones, steps_per_epoch
from cldst.method import evaluation
from cldst.method.dst import active_count, layer_densities, magnitude_prune, magnitude_prune_threshold
from cldst.method.growth import grow
from cldst.method.learner import ContinualLearner
from cldst.method.masks import Backbone, TaskIsolation
from cldst.method.models import ResNet18
from cldst.method.task_trainer import epoch_batches, make_optimizer

pytestmark = pytest.mark.usefixtures("one_thread")


def trained(cfg, tasks=1):
    learner = ContinualLearner(cfg, progress=False)
    for t in range(tasks):
        learner.train_task(t)
    return learner


@pytest.mark.slow
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

    learner.evaluator.forward = task1_class_wins
    assert learner.evaluate(0) > 0  # within task 0's classes, class 0 wins: right for label 0
    learner.cfg.eval_all_classes = True
    assert learner.evaluate(0) == 0.0  # over all classes, task 1's class 2 wins every time


@pytest.mark.slow
def test_final_model_matrix_rows_are_identical_below_the_diagonal(tiny_cfg):
    m = ContinualLearner(tiny_cfg(final_model_matrix=True), progress=False).run()
    a = m["acc_matrix"]
    for j in range(3):
        assert all(a[i][j] == a[j][j] for i in range(j, 3))  # one final model: one value per column
        assert all(a[i][j] is not None for i in range(j))  # the "FWT" entries above the diagonal
    assert m["bwt"] == 0.0


@pytest.mark.slow
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
    snapshots, mask_snapshots, drawn = [], [], []
    step = torch.optim.lr_scheduler.MultiStepLR.step
    new_task_mask = Backbone.new_task_mask

    def capture(self, *args, **kwargs):  # the task's mask list, which DST updates in place
        drawn.append(new_task_mask(self, *args, **kwargs))
        return drawn[-1]

    def record(self, *args, **kwargs):  # called at construction, then at the end of every epoch
        snapshots.append([p.detach().clone() for p in learner.backbone.params])
        mask_snapshots.append([m.clone() for m in drawn[-1]])
        step(self, *args, **kwargs)
        if len(snapshots) == 4:  # wreck the last epoch, so that the best one is earlier
            for group in self.optimizer.param_groups:
                group["lr"] = 10.0

    monkeypatch.setattr(torch.optim.lr_scheduler.MultiStepLR, "step", record)
    monkeypatch.setattr(Backbone, "new_task_mask", capture)
    learner.train_task(0)
    accs = [r["train_acc"] for r in learner.state.history if r["kind"] == "epoch"]
    best = accs.index(max(accs))
    assert best != len(accs) - 1
    assert len(snapshots) == 1 + 4
    for merged, w in zip(learner.backbone.merged, snapshots[1 + best]):
        assert torch.equal(merged, w)  # nonzero rule onto an all-zero merged model: the snapshot itself
    # the mask saved with those weights is the task's mask: for freezing, merging and evaluation
    best_mask, last_mask = mask_snapshots[1 + best], mask_snapshots[-1]
    assert any(not torch.equal(b, m) for b, m in zip(best_mask, last_mask))  # DST moved it after
    for recorded, used, b, merged in zip(learner.backbone.task_masks[0], learner.backbone.owned, best_mask,
                                         learner.backbone.merged):
        assert torch.equal(recorded, b) and torch.equal(used, b)
        assert int(torch.count_nonzero(merged[~b])) == 0  # no trained value outside every mask


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


@pytest.mark.slow
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


def test_threshold_prune_removes_every_tied_weight():
    weight = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.5, 0.7, 0.9, 1.1, 0.3, 0.0])
    mask = torch.tensor([True] * 9 + [False])  # 4 active exact zeros, 5 nonzero, 1 inactive
    exact, removed = magnitude_prune(weight, mask, 0.2)  # k = ceil(0.2 · 9) = 2
    assert removed == 2 and int(exact.sum()) == 7
    ref, removed = magnitude_prune_threshold(weight, mask, 0.2)
    assert removed == 4 and ref.tolist() == [False] * 4 + [True] * 5 + [False]  # every zero goes
    ref, removed = magnitude_prune_threshold(weight, mask, 0.6)  # k = 6: thr = 0.5, the 6th smallest
    assert removed == 6 and ref.tolist() == [False] * 5 + [True, True, True, False, False]
    ref, removed = magnitude_prune_threshold(weight, mask, 0.0)  # k = 0: the original keeps w != 0
    assert removed == 4 and int(ref.sum()) == 5


def test_threshold_prune_is_what_the_reference_topology_update_uses(tiny_cfg):
    from cldst.method.task_trainer import TaskTrainer

    for quirk, expected in ((False, magnitude_prune), (True, magnitude_prune_threshold)):
        learner = ContinualLearner(tiny_cfg(threshold_prune=quirk), progress=False)
        bb = learner.backbone
        mask = bb.new_task_mask(0.2, "ERK", torch.Generator().manual_seed(0))
        trainer = TaskTrainer(learner.cfg, learner.model, learner.forward, bb, mask, slice(0, 2), 10,
                              torch.Generator().manual_seed(0), learner.autocast)
        assert trainer.topology.prune is expected


def test_sgd_nesterov_masks_the_momentum_buffer(tiny_cfg):
    from cldst.method.task_trainer import TaskTrainer

    params = [torch.nn.Parameter(torch.ones(3))]
    assert make_optimizer(tiny_cfg(optimizer="sgd", sgd_nesterov=True), params).defaults["nesterov"] is True
    assert make_optimizer(tiny_cfg(optimizer="sgd"), params).defaults["nesterov"] is False
    inactive_momentum = {}
    for quirk in (False, True):
        learner = ContinualLearner(tiny_cfg(optimizer="sgd", lr=0.01, sgd_nesterov=quirk, update_frequency=1000),
                                   progress=False)
        bb = learner.backbone
        mask = bb.new_task_mask(0.2, "ERK", torch.Generator().manual_seed(0))
        bb.start_weights(mask, free_from_theta0=True)
        trainer = TaskTrainer(learner.cfg, learner.model, learner.forward, bb, mask, slice(0, 2), 10,
                              torch.Generator().manual_seed(0), learner.autocast)
        x = learner.images.transform.normalise(learner.images.train_x[:32])
        y = (learner.images.train_y[:32] % 2).long()
        for _ in range(2):
            trainer.step(x, y)
        inactive_momentum[quirk] = sum(
            float(trainer.optimizer.state[p]["momentum_buffer"][~m].abs().sum()) for p, m in zip(bb.params, mask))
    assert inactive_momentum[False] > 0 and inactive_momentum[True] == 0.0


def test_sgd_nesterov_needs_momentum():
    from cldst.config import ConfigError

    with pytest.raises(ConfigError, match="momentum=0"):
        ExperimentConfig(optimizer="sgd", momentum=0, protocol="reference")
    ExperimentConfig(optimizer="sgd", momentum=0)  # clean: plain SGD


@pytest.mark.parametrize("n,batch,steps,sizes", [(50, 16, 4, [16, 16, 16, 2]), (49, 16, 3, [16, 16, 17]),
                                                 (48, 16, 3, [16, 16, 16]), (10, 16, 1, [10])])
def test_keep_last_batch_trains_every_image(n, batch, steps, sizes):
    from cldst.data.transforms import BatchTransform

    images = torch.zeros(n, 1, 4, 4, dtype=torch.uint8)
    labels = torch.arange(n)
    transform = BatchTransform((0.5,), (0.5,), "cpu", pad=0, hflip=False)
    got = list(epoch_batches(images, labels, torch.arange(n), batch, transform, torch.Generator().manual_seed(0),
                             keep_last_batch=True))
    assert steps_per_epoch(n, batch, keep_last_batch=True) == steps
    assert [y.numel() for _, y in got] == sizes
    assert sorted(torch.cat([y for _, y in got]).tolist()) == list(range(n))  # every image, once
    assert steps_per_epoch(n, batch) == max(1, n // batch)  # clean: full batches only


@pytest.mark.slow
def test_keep_last_batch_sets_the_steps_and_the_prune_schedule(tiny_cfg):
    for quirk in (False, True):
        learner = ContinualLearner(tiny_cfg(num_tasks=2, num_classes=4, batch_size=48, keep_last_batch=quirk),
                                   progress=False)
        n = learner.images.train_idx[0].numel()
        learner.train_task(0)
        row = next(r for r in learner.state.history if r["kind"] == "epoch")
        assert n % 48 > 1
        assert row["step"] == (-(-n // 48) if quirk else n // 48)


@pytest.mark.slow
def test_lr_drop_at_zero_trains_one_epoch_at_a_hundredth(tiny_cfg):
    assert lr_milestones(1) == [] and lr_milestones(1, drop_at_zero=True) == [0, 0]
    assert lr_milestones(4) == lr_milestones(4, drop_at_zero=True) == [2, 3]
    for quirk, factor in ((False, 1.0), (True, 0.01)):
        learner = ContinualLearner(tiny_cfg(num_tasks=2, num_classes=4, lr_drop_at_zero=quirk), progress=False)
        learner.train_task(0)
        row = next(r for r in learner.state.history if r["kind"] == "epoch")
        assert row["lr"] == pytest.approx(1e-3 * factor)


@pytest.mark.parametrize("dataset,expected", [("cifar100", 128), ("split-mnist", 16), ("miniimagenet", 16)])
def test_reference_test_batch_is_the_original_scripts(dataset, expected):
    num_classes = 10 if dataset == "split-mnist" else 100
    cfg = ExperimentConfig(dataset=dataset, num_classes=num_classes, num_tasks=5 if num_classes == 10 else 10,
                           batch_size=16, protocol="reference")
    assert evaluation.reference_test_batch(cfg) == expected


def test_test_augment_batches_are_the_training_batch_size(tiny_cfg, monkeypatch):
    learner = trained(tiny_cfg(num_tasks=2, num_classes=4, batch_size=16, test_augment=True,
                               eval_batch_stats=True))
    sizes = []
    count = evaluation.Evaluator._count_correct
    monkeypatch.setattr(evaluation.Evaluator, "_count_correct",
                        lambda ev, x, y, sl, shift: sizes.append(y.numel()) or count(ev, x, y, sl, shift))
    learner.evaluate(0)
    n = learner.images.test_idx[0].numel()
    assert sum(sizes) == n and max(sizes) == 16 and len(sizes) == -(-n // 16) - (n % 16 == 1)


@pytest.mark.slow
def test_forgetting_is_null_under_a_final_model_matrix(tiny_cfg):
    m = ContinualLearner(tiny_cfg(final_model_matrix=True), progress=False).run()
    assert m["forgetting"] is None and "test-augmentation noise" in m["forgetting_note"]
    clean = ContinualLearner(tiny_cfg(), progress=False).run()
    assert clean["forgetting"] == 0.0 and "forgetting_note" not in clean


def test_new_quirks_leave_clean_run_ids_unchanged_and_change_reference_ones():
    clean = ExperimentConfig()
    d = clean.to_dict()
    assert all(d[k] is False for k in ("threshold_prune", "sgd_nesterov", "keep_last_batch", "lr_drop_at_zero",
                                       "growth_ranks_active"))
    assert ExperimentConfig(threshold_prune=False).run_id() == clean.run_id()
    ref = ExperimentConfig(protocol="reference")
    assert ExperimentConfig(protocol="reference", threshold_prune=False).run_id() != ref.run_id()


@pytest.mark.parametrize("rule", ["gradient", "momentum"])
def test_growth_ranking_active_positions_can_fall_short(rule):
    mask = torch.zeros(100, dtype=torch.bool)
    mask[40:] = True  # 60 active; 40 inactive, of which only 2 have a nonzero score
    score = torch.zeros(100)
    score[[10, 20]] = torch.tensor([0.5, 0.2])
    kwargs = dict(grad=score) if rule == "gradient" else dict(optimizer_state={"momentum_buffer": score})
    exact = grow(rule, torch.zeros(100), mask, 10, generator=torch.Generator().manual_seed(0), random_ties=True,
                 **kwargs)
    assert int(exact.sum()) == 70 and bool(exact[[10, 20]].all())
    ref = grow(rule, torch.zeros(100), mask, 10, ranks_active=True, **kwargs)
    first = torch.sort(score.masked_fill(mask, 0.0), descending=True).indices[:10]  # the original's pick
    expected = mask.clone()
    expected[first] = True
    assert torch.equal(ref, expected) and bool(ref[[10, 20]].all())
    assert int(ref.sum()) - 60 == 2 + int((first[2:] < 40).sum()) < 10  # tied slots on active positions are lost


def test_growth_ranking_uses_the_logical_order_of_a_channels_last_weight():
    from cldst.method.dst import DynamicSparsity

    torch.manual_seed(0)
    weight, grad = torch.randn(8, 4, 3, 3), torch.randn(8, 4, 3, 3) * (torch.rand(8, 4, 3, 3) < 0.05)
    drawn = torch.rand(8, 4, 3, 3) < 0.5
    results = []
    for layout in (torch.contiguous_format, torch.channels_last):
        w = torch.nn.Parameter((weight * drawn).to(memory_format=layout))
        w.grad = grad.to(memory_format=layout)
        mask = torch.empty_like(w, dtype=torch.bool).copy_(drawn)
        dst = DynamicSparsity([w], [mask], growth="gradient", initial_prune_rate=0.5, total_steps=10,
                              update_frequency=1, generator=torch.Generator().manual_seed(0),
                              random_ties=False, threshold_prune=True, ranks_active=True)
        dst.update(1, torch.optim.Adam([w]))
        results.append(mask.clone().contiguous())
    assert torch.equal(results[0], results[1])
