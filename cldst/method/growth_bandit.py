"""``growth: bandit``: at each topology update, a UCB1 bandit chooses the growth rule, among
random, unfired, gradient and momentum (cldst/method/growth.py), for every layer of that update.

The reward of a choice comes from training alone, never from evaluation data: it is the share of
the weights that update grew which survive the next update's magnitude prune. A grown weight
that the task's own training made large enough to keep was worth growing. So the reward of the
rule chosen at update k is known at update k + 1, before its prune; the last update's choice of a
task is never rewarded. One bandit per task, started anew: its first updates try each rule once,
in an order drawn from the task's generator; then UCB1 takes the rule with the largest
mean reward + sqrt(2 ln N / n), ties by the arms' order. Every choice and reward is recorded.
"""

from __future__ import annotations

import math

import torch

from cldst.config import GROWTHS


class GrowthBandit:
    def __init__(self, generator: torch.Generator, arms: tuple[str, ...] = GROWTHS):
        self.arms = arms
        self.first = [arms[i] for i in torch.randperm(len(arms), generator=generator).tolist()]
        self.plays = {a: 0 for a in arms}
        self.reward_sum = {a: 0.0 for a in arms}
        self.pending: str | None = None  # the rule of the last update, whose reward comes next
        self.choices: list[dict] = []  # per update: {"rule", "reward" of the previous update's rule}

    def choose(self) -> str:
        untried = [a for a in self.first if self.plays[a] == 0]
        if untried:
            return untried[0]
        total = sum(self.plays.values())
        return max(self.arms, key=lambda a: self.reward_sum[a] / self.plays[a]
                   + math.sqrt(2 * math.log(total) / self.plays[a]))

    def update(self, survived: int | None, grown: int | None) -> str:
        """Reward the last choice with ``survived / grown`` (its grown weights that survive this
        update's prune; none when it grew nothing), then choose this update's rule."""
        reward = None
        if self.pending is not None and grown:
            reward = survived / grown
            self.plays[self.pending] += 1
            self.reward_sum[self.pending] += reward
        elif self.pending is not None:  # it grew nothing: a play without reward
            self.plays[self.pending] += 1
        rule = self.choose()
        self.pending = rule
        self.choices.append({"rule": rule, "reward": reward})
        return rule

    def state_dict(self) -> dict:
        return {"first": list(self.first), "plays": dict(self.plays), "reward_sum": dict(self.reward_sum),
                "pending": self.pending, "choices": [dict(c) for c in self.choices]}

    def load_state_dict(self, state: dict) -> None:
        self.first, self.pending = list(state["first"]), state["pending"]
        self.plays, self.reward_sum = dict(state["plays"]), dict(state["reward_sum"])
        self.choices = [dict(c) for c in state["choices"]]
