"""Adaptive DST: each task chooses among candidate (sparse_init, growth, density) by successive
halving on its validation images; the winner trains on. Exact checks: a list of one is the fixed
run, a choice leaves the state of a fixed run of the winner, probes are counted, the test set is
never read, and resume redoes the same choice."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from cldst import ExperimentConfig, run_experiment
from cldst.config import ConfigError
from cldst.method.adaptive import Candidate, ranked, successive_halving
from cldst.method.learner import ContinualLearner

CANDIDATES = dict(sparse_init="uniform,ERK", growth="random,gradient")


def adaptive_cfg(tiny_cfg, **kw):
    return tiny_cfg(num_tasks=2, num_classes=4, epochs=3, val_fraction=0.1, **{**CANDIDATES, **kw})


def test_a_list_of_one_is_the_fixed_run_and_its_run_id():
    fixed = ExperimentConfig(sparse_init="uniform", growth="random", density=0.1)
    listed = ExperimentConfig(sparse_init=["uniform"], growth="random,random", density=[0.1])
    assert listed == fixed and listed.run_id() == fixed.run_id() and not listed.adaptive
    adaptive = ExperimentConfig(sparse_init="adaptive", growth="adaptive", val_fraction=0.1)
    assert adaptive.sparse_init == ("uniform", "ERK") and adaptive.growth == ("random", "unfired", "gradient", "momentum")
    assert len(adaptive.choices()) == 8 and adaptive.run_id().startswith("split-mnist-adaptive-adaptive-d0.2-")


def test_candidates_need_validation_images_and_the_clean_protocol():
    with pytest.raises(ConfigError, match="val_fraction > 0"):
        ExperimentConfig(growth="random,gradient")
    with pytest.raises(ConfigError, match="protocol=clean"):
        ExperimentConfig(growth="random,gradient", val_fraction=0.1, protocol="reference")
    with pytest.raises(ConfigError, match="probe_epochs"):
        ExperimentConfig(growth="random,gradient", val_fraction=0.1, epochs=2, probe_epochs=2)
    with pytest.raises(ConfigError, match="growth='bandit'"):
        ExperimentConfig(growth="random,bandit", val_fraction=0.1)


def test_successive_halving_keeps_the_better_half_each_round():
    scores = {"a": [1, 5], "b": [4, 2], "c": [3, 9], "d": [2]}  # per round
    rounds = []

    def train(c):
        c.scores.append(scores[c.choice["name"]][len(c.scores)])
        rounds.append(c.choice["name"])

    cands = [Candidate({"name": n}) for n in "abcd"]
    winner = successive_halving(cands, train, lambda survivors: True)
    assert rounds == ["a", "b", "c", "d", "b", "c"] and winner.choice["name"] == "c"
    # no room for another round: the best of the first
    cands = [Candidate({"name": n}) for n in "abcd"]
    assert successive_halving(cands, train, lambda survivors: False).choice["name"] == "b"


class Poisoned:
    """Stands for the test set: any use fails."""

    def __getitem__(self, _):
        raise AssertionError("the test set was read during a choice")

    def __getattr__(self, _):
        raise AssertionError("the test set was read during a choice")


@pytest.mark.slow
def test_a_choice_never_reads_the_test_set_and_leaves_a_fixed_run_of_the_winner(tiny_cfg, one_thread):
    cfg = adaptive_cfg(tiny_cfg)
    learner = ContinualLearner(cfg, progress=False)
    learner.images.test_x, learner.images.test_y = Poisoned(), Poisoned()
    learner.images.test_idx = [Poisoned(), Poisoned()]
    learner.train_task(0)
    (record,) = learner.state.choices
    assert len(record["candidates"]) == 4
    assert [len(c["val_scores"]) for c in record["candidates"]].count(2) == 2  # two rounds for the better half
    chosen = record["chosen"]
    fixed = ContinualLearner(dataclasses.replace(cfg, **chosen), progress=False)
    fixed.train_task(0)
    a, b = learner.backbone, fixed.backbone
    for name in ("merged", "owned", "theta0"):
        assert all(torch.equal(x, y) for x, y in zip(getattr(a, name), getattr(b, name), strict=True)), name
    assert all(torch.equal(x, y) for x, y in zip(a.task_masks[0], b.task_masks[0], strict=True))
    for (ma, va), (mb, vb) in zip(learner.state.bn_stats[0], fixed.state.bn_stats[0], strict=True):
        assert torch.equal(ma, mb) and torch.equal(va, vb)
    assert all(torch.equal(x, y) for x, y in zip(learner.model.parameters(), fixed.model.parameters()))
    # the probes' training is counted: the losers' MACs on top of the winner's own
    (flops,) = learner.state.flops
    losers = sum(c["train_macs"] for c in record["candidates"] if {k: c[k] for k in chosen} != chosen)
    assert flops["probe_macs"] == losers > 0
    assert flops["train_macs"] == fixed.state.flops[0]["train_macs"] + losers


@pytest.mark.slow
def test_choices_are_deterministic_recorded_and_resume_redoes_them(tiny_cfg, tmp_path, one_thread):
    cfg = adaptive_cfg(tiny_cfg)
    full = run_experiment(cfg, tmp_path / "full", progress=False)
    again = run_experiment(cfg, tmp_path / "again", progress=False)
    assert full["choices"] == again["choices"] and full["acc_matrix"] == again["acc_matrix"]
    assert [c["task"] for c in full["choices"]] == [0, 1]
    assert all(v > 50.0 for v in full["acc_matrix"][-1]) and "val_acc" in full
    # stopped after task 0 (a task boundary): task 1's choice is made again, the same
    run_experiment(cfg, tmp_path / "cut", progress=False, max_tasks=1)
    resumed = run_experiment(cfg, tmp_path / "cut", resume=True, progress=False)
    for key in ("choices", "acc_matrix", "capacity", "flops", "val_acc_matrix"):
        assert resumed[key] == full[key], key


def test_the_results_table_has_each_tasks_choice():
    from cldst.analysis.results import _chosen_columns

    choices = [{"task": 1, "chosen": {"sparse_init": "ERK", "growth": "random", "density": 0.2}},
               {"task": 0, "chosen": {"sparse_init": "uniform", "growth": "gradient", "density": 0.05}}]
    assert _chosen_columns(choices) == {"chosen_init": '["uniform", "ERK"]', "chosen_growth": '["gradient", "random"]',
                                        "chosen_density": "[0.05, 0.2]"}
    assert _chosen_columns(None) == {"chosen_init": None, "chosen_growth": None, "chosen_density": None}


def test_under_a_capacity_budget_the_sparsest_candidate_within_it_wins():
    def cands():
        scored = [(0.2, 50.0), (0.1, 49.5), (0.05, 45.0)]  # (density, validation accuracy in %)
        return [Candidate({"density": d}, scores=[s]) for d, s in scored]

    def pick(budget):
        return successive_halving(cands(), lambda c: None, lambda survivors: False, budget).choice["density"]

    assert [pick(b) for b in (0.0, 0.4, 0.5, 1.0, 4.9, 5.0, 50.0)] == [0.2, 0.2, 0.1, 0.1, 0.1, 0.05, 0.05]
    # halving keeps the candidates within the budget, sparsest first; outside it, by score
    assert [c.choice["density"] for c in ranked(cands(), 1.0)] == [0.1, 0.2, 0.05]
    assert [c.choice["density"] for c in ranked(cands(), 0.0)] == [0.2, 0.1, 0.05]


def test_a_capacity_budget_needs_several_densities_and_leaves_run_ids_alone():
    with pytest.raises(ConfigError, match="capacity_budget chooses among several densities"):
        ExperimentConfig(capacity_budget=1.0)
    with pytest.raises(ConfigError, match="capacity_budget"):
        ExperimentConfig(density="0.2,0.1", val_fraction=0.1, capacity_budget=100)
    assert ExperimentConfig(capacity_budget=0.0).run_id() == ExperimentConfig().run_id()
    budget = ExperimentConfig(density="0.2,0.1", val_fraction=0.1, capacity_budget=1.0)
    assert budget.run_id() != ExperimentConfig(density="0.2,0.1", val_fraction=0.1).run_id()


@pytest.mark.slow
def test_a_generous_budget_takes_the_sparsest_density_every_task(tiny_cfg, tmp_path, one_thread):
    cfg = adaptive_cfg(tiny_cfg, sparse_init="ERK", growth="random", density="0.2,0.1", capacity_budget=99.0)
    metrics = run_experiment(cfg, tmp_path / "run", progress=False)
    assert [c["chosen"]["density"] for c in metrics["choices"]] == [0.1, 0.1]
    fixed = run_experiment(cfg.fixed({"density": 0.1}), tmp_path / "fixed", progress=False)
    for key in ("acc_matrix", "capacity", "layer_density"):
        assert metrics[key] == fixed[key], key
