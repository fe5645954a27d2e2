"""The methods study's comparison on a hand-made table: which method a run is, DST's best cell picked
by validation (never by test), the paired difference to DST's default, A[j][j] and capacity per task,
and both figures drawn."""

from __future__ import annotations

import json

import matplotlib
import pandas as pd
import pytest

from cldst.analysis.methods_study import (
    DST_BEST,
    DST_DEFAULT,
    LABELS,
    comparison,
    comparison_text,
    per_task,
    study_method,
)
from cldst.config import ConfigError
from cldst.plots.methods import acc_vs_training_flops, capacity_vs_task

matplotlib.use("Agg")
BENCH = "cifar10, 2 tasks"


def run(growth, density, seed, acc, val, method="dst", isolation=True, diagonal=(60.0, 70.0), capacity=(0.2, 0.3),
        flops=0.5):
    matrix = [[diagonal[0], None], [diagonal[0] - 5 * (not isolation), diagonal[1]]]
    return {"benchmark": BENCH, "method": method, "isolation": isolation, "sparse_init": "ERK", "growth": growth,
            "update_frequency": 20, "density": density, "sparsity": round(1 - density, 10), "seed": seed,
            "acc": acc, "val_acc": val, "bwt": -5.0 * (not isolation), "capacity_final": capacity[-1],
            "train_flops_vs_dense": flops, "acc_matrix": json.dumps(matrix), "capacity": json.dumps(list(capacity))}


@pytest.fixture
def table():
    rows = []
    for seed, shift in ((0, 0.0), (1, 2.0)):
        rows += [run("gradient", 0.2, seed, 70 + shift, 50.0),
                 run("momentum", 0.2, seed, 65 + shift, 52.0),  # best by validation, worse on test
                 run("none", 0.2, seed, 60 + shift, 45.0),
                 run("gradient", 0.2, seed, 72 + shift, 51.0, method="packnet", diagonal=(80.0, 50.0)),
                 run("gradient", 0.2, seed, 66 + shift, 49.0, method="supsup", capacity=(0.0, 0.0), flops=0.7),
                 run("none", 1.0, seed, 55 + shift, 40.0, isolation=False, capacity=(0.0, 0.0), flops=1.0)]
    return pd.DataFrame(rows)


def test_which_method_a_run_is(table):
    assert [study_method(r) for _, r in table.iloc[:6].iterrows()] == \
        ["dst", "dst", "static", "packnet", "supsup", "fine-tuning"]
    # a table written before the method setting: every run is DST's
    assert study_method(table.iloc[1].drop("method")) == "dst"


def test_dst_best_cell_is_picked_by_validation_and_compared_by_seed(table):
    c = comparison(table).set_index("method")
    assert c.loc[DST_BEST, "configuration"] == "ERK momentum"
    assert c.loc[DST_BEST, "ACC"] == 66.0
    assert c.loc[DST_DEFAULT, "ACC"] == 71.0 and c.loc[DST_DEFAULT, "Δ ACC vs DST default"] == 0.0
    assert c.loc[LABELS["packnet"], "Δ ACC vs DST default"] == 2.0  # (72-70 + 74-72) / 2
    assert c.loc[LABELS["static"], "Δ ACC vs DST default"] == -10.0
    assert c.loc[LABELS["packnet"], "min A[j][j]"] == 50.0 and c.loc[LABELS["packnet"], "mean A[j][j]"] == 65.0
    assert c.loc[LABELS["supsup"], "capacity after last task"] == 0.0
    assert c.loc[LABELS["supsup"], "training FLOPs vs dense"] == 0.7
    assert list(c["sparsity"]) == ["dense", *["80 %"] * 5]
    # fine-tuning, dense, has no DST default beside it to be paired with
    assert pd.isna(c.loc[LABELS["fine-tuning"], "Δ ACC vs DST default"])
    assert c.loc[LABELS["fine-tuning"], "BWT"] == -5.0
    text = comparison_text(comparison(table)).set_index("method")
    assert text.loc[DST_BEST, "ACC"] == "66.0 ± 1.4" and text.loc[LABELS["packnet"], "Δ ACC vs DST default"] == "+2.0"


def test_the_test_set_never_picks_dst_cell(table):
    with pytest.raises(ConfigError, match="val_fraction"):
        comparison(table.assign(val_acc=None))
    with pytest.raises(ConfigError, match="training FLOPs"):
        comparison(table.assign(train_flops_vs_dense=None))


def test_per_task_diagonal_and_capacity(table):
    t = per_task(table).set_index(["method", "task"])
    assert t.loc[(LABELS["packnet"], 1), "A[j][j]"] == 80.0 and t.loc[(LABELS["packnet"], 2), "A[j][j]"] == 50.0
    assert t.loc[(DST_DEFAULT, 2), "capacity"] == 0.3 and t.loc[(LABELS["supsup"], 2), "capacity"] == 0.0
    assert len(t) == 6 * 2  # DST best and default, static, PackNet, SupSup, fine-tuning × 2 tasks


def test_figures_draw_every_method(table):
    fig = acc_vs_training_flops(comparison(table))
    assert len(fig.axes) == 1 and len(fig.axes[0].containers) == 5  # an error bar per sparse row
    assert [t.get_text().split(":")[0] for t in fig.axes[0].texts] == ["fine-tuning (dense)"]
    fig = capacity_vs_task(per_task(table))
    assert len(fig.axes) == 1 and len(fig.axes[0].get_lines()) == 5  # dense fine-tuning not drawn


def test_diagonal_table_reads_per_method_and_task(table):
    from cldst.analysis.methods_study import diagonal_table, diagonal_text

    wide = diagonal_table(per_task(table))
    assert wide.loc[("80 %", LABELS["packnet"])].tolist() == [80.0, 50.0]
    assert list(wide.columns) == [1, 2] and len(wide) == 6
    assert diagonal_text(per_task(table)).startswith(f"{BENCH}\n")
