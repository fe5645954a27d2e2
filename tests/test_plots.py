"""The figures, drawn from the committed results table (tests/fixtures/results-small.csv: split-mnist,
3 tasks; uniform/ERK × 4 growth rules × sparsity 80/95 % × update frequency 4/16 × seeds 0, 1)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from cldst.analysis import cells, tasks_learned
from cldst.analysis.results import json_column, read_results
from cldst.config import ConfigError
from cldst.plots import run as plots
from cldst.plots import study as study_plots
from cldst.plots import style

ROOT = Path(__file__).resolve().parents[1]
SMALL = ROOT / "tests" / "fixtures" / "results-small.csv"


@pytest.fixture(scope="module")
def table():
    return read_results(SMALL)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def lines(ax) -> list:
    """The plotted lines of an axes (seaborn also adds empty ones, for the legend)."""
    return [line for line in ax.lines if len(line.get_xdata())]


def rc_snapshot() -> dict:
    return {k: v for k, v in mpl.rcParams.items() if k != "backend"}


@pytest.mark.slow
def test_importing_plots_changes_no_global_style():
    code = ("import matplotlib as mpl, matplotlib.colors as mc\n"
            "before = dict(mpl.rcParams); codes = dict(mc.get_named_colors_mapping())\n"
            "import cldst.plots.baselines, cldst.plots.protocol_ablation, cldst.plots.reuse\n"
            "import cldst.plots.run, cldst.plots.study\n"
            "assert dict(mpl.rcParams) == before, [k for k in before if mpl.rcParams[k] != before[k]]\n"
            "assert dict(mc.get_named_colors_mapping()) == codes\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_making_figures_changes_no_global_style(table):
    before = rc_snapshot()
    for draw in study_plots.STUDY_FIGURES.values():
        draw(table)
    plots.run_accuracy_matrix(table)
    matrix = json_column(table, "acc_matrix")[0]
    plots.accuracy_over_time(matrix)
    plots.capacity_per_task(json_column(table, "capacity")[0])
    after = rc_snapshot()
    assert after == before, [k for k in before if after[k] != before[k]]


def test_figures_have_the_style_inside():
    fig = plots.accuracy_over_time([[90.0, None], [90.0, 80.0]])
    spine = fig.axes[0].spines["left"].get_edgecolor()
    assert spine == mpl.colors.to_rgba(style.theme()["axes.edgecolor"]) != mpl.colors.to_rgba(mpl.rcParams["axes.edgecolor"])


def test_acc_vs_sparsity(table):
    fig = study_plots.acc_vs_sparsity(table)
    assert len(fig.axes) == 4  # a panel per growth rule (one benchmark)
    for ax in fig.axes:
        assert len(lines(ax)) == 2  # one per init, each over the 2 sparsities
        assert all(len(line.get_xdata()) == 2 for line in lines(ax))
    assert "update frequency 4 steps" in fig._suptitle.get_text()  # the main frequency (a tie: the smallest)


def test_init_growth_heatmaps(table):
    fig = study_plots.init_growth_heatmaps(table)
    heatmaps = [ax for ax in fig.axes if ax.get_title()]
    assert len(heatmaps) == 2 and len(fig.axes) == 3  # a heatmap per sparsity, and one colour bar
    assert [t.get_text() for t in heatmaps[0].get_xticklabels()] == ["random", "unfired", "gradient", "momentum"]


def test_update_frequency_every_setting_swept(table):
    fig = study_plots.update_frequency_effect(table)
    assert len(fig.axes) == 2  # a panel per sparsity
    for ax in fig.axes:
        assert len(lines(ax)) == 8  # 4 growth rules × 2 inits
        assert all(list(line.get_xdata()) == [4, 16] for line in lines(ax))
    assert "only the settings" not in fig._suptitle.get_text()


def test_update_frequency_draws_only_the_settings_swept(table):
    # a main study at 4 steps, and a slice at 16 steps: random and gradient growth at sparsity 80 %
    slice_ = (table["growth"].isin(["random", "gradient"])) & (table["density"] == 0.2)
    fig = study_plots.update_frequency_effect(table[(table["update_frequency"] == 4) | slice_])
    assert len(fig.axes) == 1 and fig.axes[0].get_title() == "sparsity 80 %"
    assert len(lines(fig.axes[0])) == 4 and all(len(line.get_xdata()) == 2 for line in lines(fig.axes[0]))
    assert "only the settings run at several update frequencies" in fig._suptitle.get_text()


def test_update_frequency_single_frequency_is_said(table):
    fig = study_plots.update_frequency_effect(table[table["update_frequency"] == 16])
    assert "one update frequency only (16 steps)" in fig._suptitle.get_text()


def test_capacity_vs_task_a_panel_per_sparsity_and_growth(table):
    fig = study_plots.capacity_vs_task(table)
    assert len(fig.axes) == 8  # rows: 2 sparsities, columns: 4 growth rules
    titles = [ax.get_title() for ax in fig.axes[:4]]
    assert titles == ["growth: random", "growth: unfired", "growth: gradient", "growth: momentum"]
    for ax in fig.axes:
        assert len(lines(ax)) == 2 and all(len(line.get_xdata()) == 3 for line in lines(ax))  # 2 inits, 3 tasks
    styles = {line.get_linestyle() for line in lines(fig.axes[0])}
    assert len(styles) == 2  # uniform and ERK told apart by dashes too, not only colour


def cell_runs(table, init="ERK", growth="momentum", density=0.2, uf=4):
    d = table[(table["sparse_init"] == init) & (table["growth"] == growth) & (table["density"] == density)
              & (table["update_frequency"] == uf)]
    return d.sort_values(["acc", "run_id"])


def test_fig5_is_the_median_run_of_a_named_cell_with_its_settings_in_the_title(table):
    runs = cell_runs(table, "uniform", "random", 0.05)
    assert len(runs) == 2
    expected = runs.iloc[0]  # of two, the lower middle one
    run = cells.pick_run(table, "median", {"sparse_init": "uniform", "growth": "random", "sparsity": 0.95})
    assert run["run_id"] == expected["run_id"] and run["cell_runs"] == 2
    fig = plots.run_accuracy_matrix(table, "median", {"sparse_init": "uniform", "growth": "random", "sparsity": 0.95})
    title = fig.axes[0].get_title()
    for text in ("median run by ACC of 2 seeds", "uniform init", "random growth", "sparsity 95 %",
                 "update every 4 steps", f"seed {expected['seed']}", f"ACC {expected['acc']:.1f} %",
                 "split-mnist, 3 tasks"):
        assert text in title, (text, title)
    heatmap = fig.axes[0]
    assert len(heatmap.get_xticklabels()) == 3  # 3 tasks


def test_fig5_default_cell_and_odd_count(table):
    run = cells.pick_run(table)  # ERK, momentum, sparsity 80 %, at the main update frequency (4)
    runs = cell_runs(table)
    assert run["run_id"] == runs.iloc[0]["run_id"]
    three = pd.concat([table.drop(index=runs.index[0]), runs.iloc[[0]].assign(run_id="x-low", acc=0.0),
                       runs.iloc[[0]].assign(run_id="x-high", acc=100.0)])
    # now the cell has 3 runs: x-low, the remaining original one, x-high → the middle one
    assert cells.pick_run(three, "median")["run_id"] == runs.iloc[1]["run_id"]


def test_fig5_best_must_be_asked_for_and_says_so(table):
    fig = plots.run_accuracy_matrix(table, "best")
    best = table.sort_values("acc").iloc[-1]
    title = fig.axes[0].get_title()
    assert f"the best run by ACC of all {len(table)}" in title and f"ACC {best['acc']:.1f} %" in title


def test_fig5_a_named_run(table):
    row = table.iloc[5]
    fig = plots.run_accuracy_matrix(table, row["run_id"])
    title = fig.axes[0].get_title()
    assert "median" not in title and f"seed {row['seed']}" in title and f"ACC {row['acc']:.1f} %" in title
    assert cells.pick_run(table, f"sweeps/x/{row['run_id']}/")["run_id"] == row["run_id"]


@pytest.mark.parametrize("which, cell, message", [
    ("top", None, "run_dir='top' is not in the results table"),
    ("median", {"growth": "grow"}, "no run with growth='grow' in the results table (growth there: random, unfired"),
    ("median", {"sparsity": 0.5}, "no run with sparsity=0.5"),
    ("median", {"sparsty": 0.8}, "cell setting 'sparsty' is not a column"),
])
def test_fig5_bad_choice_is_one_line(table, which, cell, message):
    with pytest.raises(ConfigError) as info:
        cells.pick_run(table, which, cell)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_every_task_learned_is_the_lowest_diagonal_entry(table):
    worst = tasks_learned.every_task_learned(table)
    assert len(worst) == len(table) and worst["min_task_acc"].is_monotonic_increasing
    for run_id, matrix in zip(table["run_id"], json_column(table, "acc_matrix")):
        diagonal = [matrix[j][j] for j in range(len(matrix))]
        row = worst[worst["run_id"] == run_id].iloc[0]
        assert row["min_task_acc"] == min(diagonal)
        assert diagonal[row["worst_task"] - 1] == min(diagonal)
    assert set(worst["chance"]) == {50.0}  # 2 classes per task
    diag = tasks_learned.diagonal_accuracy(table)
    assert len(diag) == 3 * len(table) and set(diag["task"]) == {1, 2, 3}


def test_chance_level():
    assert tasks_learned.chance_level({"num_classes_per_task": 2, "num_classes": 10, "eval_all_classes": False}) == 50.0
    assert tasks_learned.chance_level({"num_classes_per_task": 2, "num_classes": 10, "eval_all_classes": True}) == 10.0
    assert tasks_learned.chance_level({}) is None


def test_tasks_learned_summary(table):
    summary = tasks_learned.tasks_learned_summary(table)
    assert list(summary.columns) == ["random", "unfired", "gradient", "momentum"]
    assert len(summary) == 2 * 2 * 2  # sparsity × update frequency × init
    assert all("(task " in v for v in summary.to_numpy().ravel())


def test_tasks_learned_figure(table):
    fig = study_plots.tasks_learned(table)
    assert len(fig.axes) == 2  # a panel per sparsity
    for ax in fig.axes:
        assert len(ax.collections) == 4  # per init: every task, and each run's lowest
        chance = [line for line in ax.lines if set(line.get_ydata()) == {50.0}]
        assert len(chance) == 1
        every_task = sum(len(c.get_offsets()) for c in ax.collections[0::2])
        assert every_task == 4 * 2 * 2 * 3  # growth × init × seed × task, at update frequency 4
        lowest = ax.collections[1].get_offsets()[:, 1]
        assert len(lowest) == 4 * 2 and np.all(lowest <= 100)
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert texts == ["uniform", "ERK", "a task", "a run's lowest task", "chance"]


def test_tasks_learned_without_class_counts_draws_no_chance_line(table):
    fig = study_plots.tasks_learned(table.drop(columns=["num_classes_per_task", "num_classes", "eval_all_classes"]))
    assert all(not ax.lines for ax in fig.axes)
    assert "chance" not in [t.get_text() for t in fig.legends[0].get_texts()]


def test_no_file_is_left_behind_unless_asked(table, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    figures = {name: draw(table) for name, draw in study_plots.STUDY_FIGURES.items()}
    figures["fig5-accuracy-matrix"] = plots.run_accuracy_matrix(table)
    for name, fig in figures.items():
        assert style.save_figure(fig, None, name) == []
    assert list(tmp_path.iterdir()) == []
    written = style.save_figure(figures["fig6-tasks-learned"], tmp_path / "out", "fig6-tasks-learned")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["fig6-tasks-learned.pdf", "fig6-tasks-learned.png"]
    assert all(p.stat().st_size > 1000 for p in written)


def test_study_figures_are_the_notebooks(table):
    notebook = json.loads((ROOT / "notebooks" / "figures.ipynb").read_text())
    source = "".join("".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code")
    for name, draw in study_plots.STUDY_FIGURES.items():
        assert f'"{name}"' in source and f"study_plots.{draw.__name__}(" in source
