"""`cldst run --tensorboard`: the TensorBoard observer's tags, steps and counts (with a stub writer),
that it changes nothing a run computes, and its one-line error without the tensorboard package."""

from __future__ import annotations

import csv
import sys
from collections import Counter

import pytest

from cldst.cli import main
from cldst.config import ConfigError, ExperimentConfig
from cldst.method.events import LearnerObserver
from cldst.runner.experiment import run_experiment
from cldst.runner.run_dir import TENSORBOARD
from cldst.runner.tensorboard_log import MISSING, TensorBoardLog


class StubWriter:
    """Records what a SummaryWriter would write."""

    made: list[StubWriter] = []

    def __init__(self, log_dir):
        self.log_dir, self.scalars, self.closed = log_dir, [], False
        StubWriter.made.append(self)

    def add_scalar(self, tag, value, step):
        assert not self.closed
        self.scalars.append((tag, value, step))

    def flush(self):
        pass

    def close(self):
        self.closed = True


class Totals(LearnerObserver):
    """Each task's step count, as the task loop reports it."""

    def __init__(self):
        self.total: dict[int, int] = {}

    def step(self, t, epoch, steps, total, loss, seen, elapsed):
        self.total[t] = total


# tests/conftest.py's tiny_cfg, with 2 tasks, 1 epoch and an update every 2 steps (module-scoped here)
TINY = dict(dataset="split-mnist", num_tasks=2, num_classes=4, num_classes_per_task=2, width=0.125, epochs=1,
            batch_size=64, update_frequency=2, density=0.2, sparse_init="ERK", growth="gradient", device="cpu")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, one_thread):
    """A tiny run (2 tasks, 1 epoch, an update every 2 steps) without and with the observer."""
    cfg = ExperimentConfig(**TINY)
    root = tmp_path_factory.mktemp("tb")
    plain = run_experiment(cfg, root / "plain", progress=False)
    StubWriter.made = []
    totals = Totals()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(TensorBoardLog, "writer_factory", staticmethod(lambda: StubWriter))
        logged = run_experiment(cfg, root / "logged", progress=False, tensorboard=True, observer=totals)
    with open(root / "logged" / "history.csv") as f:
        history = list(csv.DictReader(f))
    return dict(root=root, plain=plain, logged=logged, writers=StubWriter.made, totals=totals.total,
                history=history)


@pytest.mark.slow
def test_tags_steps_and_counts(runs):
    (writer,) = runs["writers"]
    assert writer.log_dir == str(runs["root"] / "logged" / TENSORBOARD) and writer.closed
    t0, t1 = runs["totals"][0], runs["totals"][1]
    offsets = [0, t0, t0 + t1]
    epochs = [r for r in runs["history"] if r["kind"] == "epoch"]
    updates = [r for r in runs["history"] if r["kind"] == "update"]
    assert len(epochs) == 2 and len(updates) == t0 // 2 + t1 // 2 > 0
    counts = Counter(tag for tag, _, _ in writer.scalars)
    assert counts == {"train/loss": 2, "train/acc": 2, "train/lr": 2,  # epochs × 3
                      "topology/prune_rate": len(updates), "topology/regrown": len(updates),  # a pair per update
                      "acc/task_1": 2, "acc/task_2": 1, "acc/ACC": 2}  # row t of the matrix after task t

    def written(tag):
        return [(v, s) for g, v, s in writer.scalars if g == tag]

    # the global step: the task's own step plus every earlier task's steps
    assert written("train/loss") == [(pytest.approx(float(r["loss"])), offsets[int(r["task"])] + int(r["step"]))
                                     for r in epochs]
    assert [s for _, s in written("train/loss")] == [t0, t0 + t1]
    assert [s for _, s in written("topology/regrown")] == [offsets[int(r["task"])] + int(r["step"]) for r in updates]
    assert [v for v, _ in written("topology/regrown")] == [int(r["regrown_new"]) for r in updates]
    a = runs["logged"]["acc_matrix"]
    assert written("acc/task_1") == [(a[0][0], t0), (a[1][0], t0 + t1)]
    assert written("acc/task_2") == [(a[1][1], t0 + t1)]
    assert written("acc/ACC") == [(a[0][0], t0), (pytest.approx(runs["logged"]["acc"]), t0 + t1)]


@pytest.mark.slow  # the runs fixture: two tiny runs, about 5 s
def test_same_results_with_and_without(runs):
    plain, logged = runs["plain"], runs["logged"]
    assert logged["acc_matrix"] == plain["acc_matrix"]
    assert logged["run_id"] == plain["run_id"] and logged["config"] == plain["config"]
    assert logged["capacity"] == plain["capacity"]
    assert not (runs["root"] / "plain" / TENSORBOARD).exists()  # off by default


def test_missing_package_is_one_line_before_training(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # `import tensorboard` raises ImportError
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    out = tmp_path / "run"
    argv = ["run", "--dataset", "split-mnist", "--num_tasks", "2", "--num_classes", "4",
            "--num_classes_per_task", "2", "--epochs", "1", "--device", "cpu", "--no-progress",
            "--out", str(out), "--tensorboard"]
    assert main(argv) == 2
    assert capsys.readouterr().err == f"cldst: error: {MISSING}\n"
    assert MISSING == "--tensorboard needs the tensorboard package: pip install tensorboard"
    assert not out.exists()  # nothing loaded or trained
    with pytest.raises(ConfigError, match="pip install tensorboard"):
        run_experiment(ExperimentConfig(**TINY), out, progress=False, tensorboard=True)
    assert not out.exists()
