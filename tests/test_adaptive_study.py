"""The adaptive study's comparison on a hand-made table: the fixed cell is picked by validation,
the oracle by test (and labelled an upper bound), adaptive runs are paired by seed with the
validation-picked cell, and per-task choices are counted."""

from __future__ import annotations

import json

import matplotlib
import pandas as pd
import pytest

from cldst.analysis.adaptive_study import (
    choice_counts,
    comparison,
    comparison_text,
    nominal_sparsity,
    run_kind,
)

matplotlib.use("Agg")
BENCH = "tinyimagenet, 10 tasks"


def run(init, growth, density, seed, acc, val, budget=0.0, chosen=None, flops=0.5, rules=None):
    return {"benchmark": BENCH, "num_tasks": 10, "sparse_init": init, "growth": growth, "density": density, "seed": seed,
            "capacity_budget": budget, "acc": acc, "val_acc": val, "bwt": 0.0, "train_flops_vs_dense": flops,
            "capacity_final": 0.9, "sparsity": None if "|" in str(density) else round(1 - float(density), 10),
            "chosen_init": json.dumps(chosen[0]) if chosen else None,
            "chosen_growth": json.dumps(chosen[1]) if chosen else None,
            "chosen_density": json.dumps(chosen[2]) if chosen else None,
            "bandit_rules": json.dumps(rules) if rules else None}


@pytest.fixture
def table():
    rows = []
    for seed, shift in ((0, 0.0), (1, 2.0)):
        rows += [run("ERK", "random", 0.2, seed, 30 + shift, 40.0),  # best by validation
                 run("ERK", "gradient", 0.2, seed, 33 + shift, 39.0),  # best by test: the oracle
                 run("uniform|ERK", "random|gradient", 0.2, seed, 31 + shift, 41.0, flops=2.5,
                     chosen=(["ERK", "uniform"], ["random", "random"], [0.2, 0.2])),
                 run("ERK", "bandit", 0.2, seed, 29 + shift, 38.0, rules={"random": 1 + seed, "gradient": 3 - seed}),
                 run("ERK", "gradient", "0.2|0.1", seed, 32 + shift, 38.5, budget=1.0,
                     chosen=(["ERK", "ERK"], ["gradient", "gradient"], [0.1, 0.2]))]
    return pd.DataFrame(rows)


def test_kinds_and_nominal_sparsity(table):
    assert [run_kind(r) for _, r in table.iloc[:5].iterrows()] == ["fixed", "fixed", "adaptive", "bandit", "budget"]
    assert nominal_sparsity("0.05|0.025") == 0.95 and nominal_sparsity(0.2) == 0.8


def test_the_fixed_cell_is_picked_by_validation_and_the_oracle_labelled(table):
    c = comparison(table).set_index("method")
    assert c.loc["best fixed, picked by validation", "configuration"] == "ERK random"
    assert c.loc["oracle: best fixed by test (upper bound)", "configuration"] == "ERK gradient"
    assert c.loc["best fixed, picked by validation", "ACC"] == 31.0
    # paired by seed with the validation-picked cell: (31-30 + 33-32) / 2
    assert c.loc["adaptive init × growth", "Δ ACC vs val-picked"] == 1.0
    assert c.loc["oracle: best fixed by test (upper bound)", "Δ ACC vs val-picked"] == 3.0
    assert c.loc["growth bandit", "Δ ACC vs val-picked"] == -1.0
    assert c.loc["density under a budget", "Δ ACC vs val-picked"] == 2.0
    assert c.loc["adaptive init × growth", "training FLOPs vs dense"] == 2.5
    assert c.loc["adaptive init × growth", "configuration"] == "4 candidates"
    assert c.loc["density under a budget", "configuration"] == "ERK gradient, density 0.2|0.1, 1 point"
    assert set(c["sparsity"]) == {"80 %"} and set(c["seeds"]) == {2}
    text = comparison_text(comparison(table))
    assert text.set_index("method").loc["adaptive init × growth", "ACC"] == "32.0 ± 1.4"


def test_choices_are_counted_over_tasks_and_seeds(table):
    counts = choice_counts(table).set_index(["method", "chosen"])["tasks"]
    assert counts[("adaptive init × growth", "ERK random 0.2")] == 2
    assert counts[("adaptive init × growth", "uniform random 0.2")] == 2
    assert counts[("density under a budget", "ERK gradient 0.1")] == 2
    assert counts.sum() == 8


def test_the_bandits_picks_are_shares_of_all_its_updates(table):
    from cldst.analysis.adaptive_study import bandit_shares
    from cldst.analysis.results import _bandit_rules

    assert _bandit_rules([[{"rule": "random"}, {"rule": "gradient"}], [{"rule": "random"}]]) == \
        '{"gradient": 1, "random": 2}'
    assert _bandit_rules(None) is None
    shares = bandit_shares(table).iloc[0]
    assert (shares["random"], shares["gradient"]) == (37.5, 62.5)  # (1 + 2) and (3 + 2) of 8 updates


def test_the_figures_draw_the_choices_and_the_costs(table):
    from cldst.plots import choices

    fig = choices.chosen_per_task(table)
    assert len(fig.axes[0].get_yticklabels()) == 4  # the adaptive and budget runs, two seeds each
    assert choices.chosen_per_task(table[table["chosen_init"].isna()]) is None
    fig = choices.acc_vs_cost(comparison(table))
    assert len(fig.axes) == 1 and len(fig.legends[0].get_texts()) == 6


def test_a_run_shows_its_choices_or_says_it_made_none():
    from cldst.plots import choices

    chosen = [{"task": t, "chosen": {"sparse_init": "ERK", "growth": g, "density": 0.2}}
              for t, g in enumerate(["random", "momentum", "random"])]
    config = {"sparse_init": "ERK", "growth": ["random", "momentum"], "density": 0.2}
    fig = choices.run_choices({"choices": chosen, "config": config})
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["growth"]
    shares = [[{"rule": "random"}, {"rule": "gradient"}], [{"rule": "gradient"}]]
    fig = choices.run_choices({"growth_choices": shares, "config": {}})
    heights = sorted(round(p.get_height()) for p in fig.axes[0].patches if p.get_height() > 0)
    assert heights == [50, 50, 100]
    assert choices.run_choices({"config": {}}) is None
