"""growth: bandit: a UCB1 choice among the growth rules at each topology update, rewarded by the
share of the last update's grown weights that survive the next prune (training data only)."""

from __future__ import annotations

import math

import pytest
import torch

from cldst.config import GROWTHS
from cldst.method.dst import DynamicSparsity
from cldst.method.flops import TrainingFlops
from cldst.method.growth_bandit import GrowthBandit
from cldst.method.learner import ContinualLearner


def test_every_rule_is_tried_once_in_a_seeded_order_then_ucb1():
    bandit = GrowthBandit(torch.Generator().manual_seed(0))
    first = [bandit.update(None, None)] + [bandit.update(s, 10) for s in (1, 2, 3)]
    assert sorted(first) == sorted(GROWTHS) and first == bandit.first
    assert bandit.first == GrowthBandit(torch.Generator().manual_seed(0)).first
    # rewards so far: first[0] 1/10, first[1] 2/10, first[2] 3/10; this update rewards first[3] with 9/10
    rule = bandit.update(9, 10)
    assert bandit.plays == {r: 1 for r in GROWTHS}
    assert bandit.reward_sum == {first[0]: 0.1, first[1]: 0.2, first[2]: 0.3, first[3]: 0.9}
    bonus = math.sqrt(2 * math.log(4))  # equal for every arm: the best mean wins
    assert rule == first[3] and bandit.choices[-1] == {"rule": first[3], "reward": 0.9} and bonus > 0
    assert bandit.choices[0] == {"rule": first[0], "reward": None}


def test_a_rule_that_grew_nothing_is_played_without_reward():
    bandit = GrowthBandit(torch.Generator().manual_seed(1))
    bandit.update(None, None)
    bandit.update(0, 0)
    assert sum(bandit.plays.values()) == 1 and sum(bandit.reward_sum.values()) == 0.0
    assert bandit.choices[1]["reward"] is None


def test_state_round_trips():
    bandit = GrowthBandit(torch.Generator().manual_seed(2))
    for s in (None, 3, 5, 1, 4):
        bandit.update(s, 6 if s is not None else None)
    other = GrowthBandit(torch.Generator().manual_seed(99))
    other.load_state_dict(bandit.state_dict())
    assert other.update(2, 6) == bandit.update(2, 6) and other.state_dict() == bandit.state_dict()


def test_the_topology_update_keeps_exact_counts_and_records_each_choice():
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(40, 30))
    mask = torch.zeros(40, 30, dtype=torch.bool)
    mask.view(-1)[torch.randperm(1200)[:240]] = True
    w.grad = torch.randn(40, 30)
    opt = torch.optim.Adam([w])
    w.grad = torch.randn(40, 30)
    opt.step()
    dst = DynamicSparsity([w], [mask], growth="bandit", initial_prune_rate=0.5, total_steps=100,
                          update_frequency=1, generator=torch.Generator().manual_seed(0))
    rules = []
    for step in range(1, 9):
        before = mask.clone()
        out = dst.update(step, opt)
        rules.append(out["growth_rule"])
        assert int(mask.sum()) == 240  # as many grown as pruned, whatever the rule
        grown = dst.grown[0]
        assert not (grown & ~mask).any()  # all it grew is active
        assert ((mask & ~before) & ~grown).sum() == 0  # every newly active position was grown now
    assert sorted(rules[:4]) == sorted(GROWTHS)
    assert [c["rule"] for c in dst.bandit.choices] == rules
    assert dst.bandit.choices[0]["reward"] is None and all(0 <= c["reward"] <= 1 for c in dst.bandit.choices[1:])


@pytest.mark.slow
def test_a_bandit_run_records_its_choices_and_is_deterministic(tiny_cfg, one_thread):
    cfg = tiny_cfg(num_tasks=2, num_classes=4, growth="bandit", update_frequency=2)
    runs = [ContinualLearner(cfg, progress=False) for _ in range(2)]
    a, b = (r.run() for r in runs)
    assert a["growth_choices"] == b["growth_choices"] and a["acc_matrix"] == b["acc_matrix"]
    updates = [r for r in runs[0].state.history if r["kind"] == "update"]
    assert len(a["growth_choices"]) == 2
    assert [c["rule"] for task in a["growth_choices"] for c in task] == [r["growth_rule"] for r in updates]
    assert all(v > 50.0 for v in a["acc_matrix"][-1])  # 2-way tasks, learned
    # its FLOPs: the dense gradient at every step, as momentum growth (any update may choose momentum)
    flops = [TrainingFlops(10.0, g) for g in ("bandit", "momentum")]
    assert [f.step(4.0, 3) for f in flops] == [(2 * 4 + 10) * 3] * 2
    assert "growth_choices" not in ContinualLearner(tiny_cfg(num_tasks=1, num_classes=2), progress=False).run()
