"""The validation split (val_fraction): held out of each task's training images, class-balanced,
the same for every run with the same data seed, never trained on, and absent at 0."""

from __future__ import annotations

import pytest
import torch

from cldst import ExperimentConfig
from cldst.data.validation import held_out_count, hold_out
from cldst.method.events import LearnerObserver
from cldst.method.learner import ContinualLearner


def _labels() -> torch.Tensor:
    # classes 0, 1, 2 with 10, 7 and 1 images, interleaved
    return torch.tensor([0, 1] * 7 + [0, 0, 0, 2])


def test_held_out_count_rounds_and_leaves_one_to_train():
    assert [held_out_count(n, 0.1) for n in (1, 2, 4, 10, 15, 400)] == [0, 1, 1, 1, 2, 40]
    assert held_out_count(10, 0.0) == 0 and held_out_count(3, 0.9) == 2


def test_hold_out_is_class_balanced_disjoint_and_covers_the_task():
    labels = _labels()
    idx = torch.arange(labels.numel())
    train, val = hold_out(labels, idx, 0.3, data_seed=0, task=0)
    assert set(train.tolist()).isdisjoint(val.tolist())
    assert sorted(train.tolist() + val.tolist()) == idx.tolist()
    held = {c: int((labels[val] == c).sum()) for c in (0, 1, 2)}
    assert held == {0: 3, 1: 2, 2: 0}  # round(0.3 · 10), round(0.3 · 7), a single image stays
    assert train.tolist() == sorted(train.tolist()) and val.tolist() == sorted(val.tolist())  # idx's order


def test_hold_out_depends_on_the_data_seed_and_task_only():
    labels = _labels()
    idx = torch.arange(labels.numel())
    a = hold_out(labels, idx, 0.3, data_seed=0, task=0)[1]
    assert torch.equal(a, hold_out(labels, idx, 0.3, data_seed=0, task=0)[1])
    others = [hold_out(labels, idx, 0.3, data_seed=s, task=t)[1] for s, t in ((1, 0), (0, 1), (2, 0), (0, 2))]
    assert any(not torch.equal(a, o) for o in others)


def test_no_fraction_holds_out_nothing_and_keeps_the_indices():
    labels = _labels()
    idx = torch.arange(labels.numel())
    train, val = hold_out(labels, idx, 0.0, data_seed=0, task=0)
    assert train is idx and val.numel() == 0


def test_the_run_id_is_unchanged_at_zero_and_the_fraction_is_checked():
    assert ExperimentConfig(val_fraction=0.0).run_id() == ExperimentConfig().run_id()
    assert ExperimentConfig(val_fraction=0.1).run_id() != ExperimentConfig().run_id()
    for bad in (-0.1, 1.0, "0.1", True):
        with pytest.raises(ValueError, match="val_fraction"):
            ExperimentConfig(val_fraction=bad)


class Seen(LearnerObserver):
    """The training images each epoch went through."""

    def __init__(self):
        self.per_epoch = []

    def epoch(self, t, row, seen, total, steps):
        self.per_epoch.append(seen)


def test_a_run_trains_on_the_rest_and_measures_the_held_out_images(tiny_cfg, one_thread):
    images_seen = Seen()
    held = ContinualLearner(tiny_cfg(num_tasks=2, num_classes=4, val_fraction=0.1), observers=[images_seen],
                            progress=False)
    full = ContinualLearner(tiny_cfg(num_tasks=2, num_classes=4), progress=False)
    for t in range(2):
        train, val, everything = held.images.train_idx[t], held.images.val_idx[t], full.images.train_idx[t]
        assert val.numel() == 80 and train.numel() == 720 == everything.numel() - 80  # 400 per digit
        assert set(train.tolist()).isdisjoint(val.tolist())
        assert set(train.tolist()) | set(val.tolist()) == set(everything.tolist())
        assert torch.equal(held.images.test_idx[t], full.images.test_idx[t])  # the test set is untouched
        # another run with the same data seed holds out the same images, whatever it trains
        other = ContinualLearner(tiny_cfg(num_tasks=2, num_classes=4, val_fraction=0.1, seed=5,
                                          growth="random"), progress=False)
        assert torch.equal(other.images.val_idx[t], val)
    m = held.run()
    assert images_seen.per_epoch == [720 // 64 * 64] * 2  # one epoch per task over the 720 training images, full batches
    assert len(m["val_acc_matrix"]) == 2 and all(v is not None for v in m["val_acc_matrix"][1])
    assert m["val_acc"] == pytest.approx(sum(m["val_acc_matrix"][1]) / 2)
    assert m["data"]["val_images"] == [80, 80]
    assert all(50.0 < v <= 100.0 for v in m["val_acc_matrix"][1])  # 2-way tasks, learned


def test_without_a_fraction_the_metrics_have_no_validation_keys(tiny_cfg, one_thread):
    m = ContinualLearner(tiny_cfg(num_tasks=2, num_classes=4), progress=False).run()
    assert "val_acc" not in m and "val_acc_matrix" not in m and "val_images" not in m["data"]


def test_a_choice_reads_validation_and_the_oracle_is_labelled():
    import pandas as pd

    from cldst.analysis.choice import best_by_validation, oracle_by_test
    from cldst.config import ConfigError

    table = pd.DataFrame({"growth": ["random", "random", "gradient", "gradient"], "seed": [0, 1, 0, 1],
                          "val_acc": [90.0, 92.0, 89.0, 90.0], "acc": [80.0, 81.0, 85.0, 86.0]})
    best = best_by_validation(table, ["growth"])
    assert best["growth"] == "random" and best["mean val_acc"] == 91.0 and best["size"] == 2
    oracle = oracle_by_test(table, ["growth"])
    assert oracle["growth"] == "gradient" and oracle["mean acc"] == 85.5 and "upper bound" in oracle["label"]
    with pytest.raises(ConfigError, match="val_fraction > 0"):
        best_by_validation(table.drop(columns="val_acc"), ["growth"])
    with pytest.raises(ConfigError, match="val_fraction > 0"):
        best_by_validation(table.assign(val_acc=[90.0, None, 89.0, 90.0]), ["growth"])
