"""The study's seaborn figures over the results table (figures.ipynb): figures 1–4 and 6, named in
STUDY_FIGURES as figures.ipynb saves them. Figure 5, one picked run's accuracy matrix, is with the
other one-run figures in cldst/plots/run.py; the tables behind figure 6 (was every task learned?)
are in cldst/analysis/tasks_learned.py. Nothing here trains; every figure function returns a
matplotlib Figure.

Accuracies are in percent, sparsity = 1 − density is shown in percent. Where several runs share
a plotted point (seeds), the point is their mean and the band or label their standard deviation.
"""

from __future__ import annotations

import math

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D

from cldst.analysis.ordering import ordered
from cldst.analysis.results import at_main_update_frequency, json_column
from cldst.analysis.summary import cell_stats, growth_grid, spread_note
from cldst.analysis.tasks_learned import diagonal_accuracy, every_task_learned
from cldst.plots.style import styled


# ---------------------------------------------------------------------- the study
def _prepare(table: pd.DataFrame) -> pd.DataFrame:
    return table.assign(sparsity_pct=(100 * table["sparsity"]).round(2))


def _orders(table: pd.DataFrame) -> dict[str, list]:
    return {name: ordered(name, table[name].unique()) for name in ("sparse_init", "growth")}


def _legend_titles(g: sns.FacetGrid) -> None:
    """Legend entries say "sparse init", not the column name "sparse_init"."""
    for text in [g.legend.get_title(), *g.legend.get_texts()]:
        if text.get_text() == "sparse_init":
            text.set_text("sparse init")


def _one_frequency(table: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    d, main = at_main_update_frequency(table)
    return d, "" if main is None else f", update frequency {main} steps"


@styled
def acc_vs_sparsity(table: pd.DataFrame) -> plt.Figure:
    """Figure 1: final ACC against sparsity, one line per init; a panel per growth rule and benchmark."""
    d, freq_note = _one_frequency(_prepare(table))
    order = _orders(d)
    g = sns.relplot(d, x="sparsity_pct", y="acc", hue="sparse_init", hue_order=order["sparse_init"],
                    col="growth", col_order=order["growth"], row="benchmark", kind="line", marker="o",
                    errorbar="sd", height=3, aspect=1.0, facet_kws={"margin_titles": True})
    g.set_axis_labels("sparsity (%)", "final ACC (%)")
    g.set_titles(col_template="growth: {col_name}", row_template="{row_name}")
    _legend_titles(g)
    note = spread_note(d, ["benchmark", "sparse_init", "growth", "sparsity"])
    g.figure.suptitle(f"Final average accuracy vs sparsity ({note}{freq_note})", y=1.03)
    return g.figure


@styled
def init_growth_heatmaps(table: pd.DataFrame) -> plt.Figure:
    """Figure 2: ACC (%) by sparse init × growth rule, one heatmap per sparsity level (and benchmark)."""
    d, freq_note = _one_frequency(_prepare(table))
    order = _orders(d)
    benchmarks, levels = sorted(d["benchmark"].unique()), sorted(d["sparsity_pct"].unique())
    stats = cell_stats(d, ["benchmark", "sparsity_pct", "sparse_init", "growth"])
    vmin, vmax = stats["mean"].min(), stats["mean"].max()
    fig, axes = plt.subplots(len(benchmarks), len(levels), squeeze=False, layout="constrained",
                             figsize=(1.5 + 1.3 * len(order["growth"]) * len(levels), 1.0 + 2.0 * len(benchmarks)))
    for r, bench in enumerate(benchmarks):
        for c, level in enumerate(levels):
            ax = axes[r][c]
            try:
                s = stats.loc[(bench, level)]
            except KeyError:
                ax.set_axis_off()
                continue
            mean, labels = growth_grid(s, order["sparse_init"], order["growth"])
            sns.heatmap(mean, annot=labels, fmt="", vmin=vmin, vmax=vmax, cmap="viridis", ax=ax,
                        cbar=c == len(levels) - 1, cbar_kws={"label": "final ACC (%)"},
                        annot_kws={"size": 9})
            ax.set(title=f"{bench}, sparsity {level:g} %", xlabel="growth", ylabel="sparse init" if c == 0 else "")
            ax.tick_params(axis="x", rotation=0)
            ax.tick_params(axis="y", rotation=0)
    note = spread_note(d, ["benchmark", "sparse_init", "growth", "sparsity"])
    fig.suptitle(f"Final ACC (%) by sparse init and growth ({note}{freq_note})")
    return fig


@styled
def update_frequency_effect(table: pd.DataFrame) -> plt.Figure:
    """Figure 3: final ACC against the update frequency, one line per growth rule (style: init).

    Only the settings that were run at several update frequencies are drawn (a study's main grid at
    one frequency adds single points, not lines); a table with one frequency says so in the title.
    """
    d = _prepare(table)
    swept = d.groupby(["benchmark", "sparse_init", "growth", "sparsity"])["update_frequency"].transform("nunique") > 1
    if swept.any():
        d = d[swept]
    order = _orders(d)
    freqs = sorted(d["update_frequency"].unique())
    g = sns.relplot(d, x="update_frequency", y="acc", hue="growth", hue_order=order["growth"],
                    style="sparse_init", style_order=order["sparse_init"], col="sparsity_pct",
                    row="benchmark", kind="line", markers=True, errorbar="sd", height=3,
                    aspect=1.1 if d["sparsity_pct"].nunique() > 1 else 1.8, facet_kws={"margin_titles": True})
    g.set_axis_labels("update frequency (steps)", "final ACC (%)")
    g.set_titles(col_template="sparsity {col_name:g} %", row_template="{row_name}")
    _legend_titles(g)
    if len(freqs) > 1 and freqs[-1] / freqs[0] >= 10:
        g.set(xscale="log")
        for ax in g.axes.flat:
            ax.xaxis.set_minor_locator(mpl.ticker.NullLocator())
    g.set(xticks=freqs, xticklabels=[f"{f:g}" for f in freqs])
    if len(freqs) == 1:
        title = (f"Effect of the update frequency: this table has one update frequency only "
                 f"({int(freqs[0])} steps);\nsweep update_frequency to see its effect")
    else:
        note = spread_note(d, ["benchmark", "sparse_init", "growth", "sparsity", "update_frequency"])
        title = f"Final ACC vs update frequency: optimizer steps between topology updates\n({note}"
        title += "; only the settings run at several update frequencies)" if not swept.all() else ")"
    g.figure.suptitle(title, y=1.03 + 0.05 * title.count("\n"))
    return g.figure


def _panel_row(benchmark: str, sparsity_pct: float, n_benchmarks: int) -> str:
    return f"sparsity {sparsity_pct:g} %" if n_benchmarks == 1 else f"{benchmark}\nsparsity {sparsity_pct:g} %"


@styled
def capacity_vs_task(table: pd.DataFrame) -> plt.Figure:
    """Figure 4: capacity used (% of weights owned by some task) after each task; a panel per
    sparsity (row) and growth rule (column), one line per sparse init."""
    d, freq_note = _one_frequency(_prepare(table))
    order = _orders(d)
    benchmarks = sorted(d["benchmark"].unique())
    rows = [dict(panel=_panel_row(b, s, len(benchmarks)), sparse_init=i, growth=g, task=t + 1, capacity=100 * c)
            for b, s, i, g, caps in zip(d["benchmark"], d["sparsity_pct"], d["sparse_init"], d["growth"],
                                        json_column(d, "capacity"))
            for t, c in enumerate(caps)]
    panels = [_panel_row(b, s, len(benchmarks))
              for b in benchmarks for s in sorted(d.loc[d["benchmark"] == b, "sparsity_pct"].unique())]
    g = sns.relplot(pd.DataFrame(rows), x="task", y="capacity", hue="sparse_init", hue_order=order["sparse_init"],
                    style="sparse_init", style_order=order["sparse_init"], markers=True,  # told apart if they overlap
                    col="growth", col_order=order["growth"], row="panel", row_order=panels, kind="line",
                    errorbar="sd", height=2.6, aspect=1.1,
                    facet_kws={"margin_titles": True, "sharey": "row"})
    g.set_axis_labels("after training task", "capacity used (%)")
    g.set_titles(col_template="growth: {col_name}", row_template="{row_name}")
    _legend_titles(g)
    for ax in g.axes.flat:
        ax.xaxis.get_major_locator().set_params(integer=True)
    note = spread_note(d, ["benchmark", "sparse_init", "growth", "sparsity"])
    g.figure.suptitle(f"Capacity used after each task: % of the backbone's weights owned by some task\n"
                      f"({note}{freq_note})", y=1.08)
    return g.figure


# ---------------------------------------------------------------------- was every task learned?
@styled
def tasks_learned(table: pd.DataFrame) -> plt.Figure:
    """Figure 6: was every task learned? A[j][j] of every task of every run (small dots; a column of
    dots per seed), each run's lowest one marked, by growth rule and init; chance as a dashed line.
    A panel per sparsity (and benchmark)."""
    d, freq_note = _one_frequency(table)
    diag = diagonal_accuracy(d).assign(sparsity_pct=lambda x: (100 * x["sparsity"]).round(2))
    worst = every_task_learned(d).assign(sparsity_pct=lambda x: (100 * x["sparsity"]).round(2))
    order = _orders(d)
    inits, growths = order["sparse_init"], order["growth"]
    seeds = sorted(diag["seed"].unique())
    benchmarks, levels = sorted(diag["benchmark"].unique()), sorted(diag["sparsity_pct"].unique())
    colours = dict(zip(inits, sns.color_palette("deep", len(inits))))
    group = 0.8 / len(inits)  # width of one init's group of seeds

    def x_of(growth: str, init: str, seed) -> float:
        spread = 0.6 * group / max(len(seeds) - 1, 1)
        return (growths.index(growth) + (inits.index(init) - (len(inits) - 1) / 2) * group
                + (seeds.index(seed) - (len(seeds) - 1) / 2) * spread)

    fig, axes = plt.subplots(len(benchmarks), len(levels), squeeze=False, layout="constrained", sharey=True,
                             figsize=(0.8 + 1.3 * len(growths) * len(levels), 0.9 + 2.8 * len(benchmarks)))
    chance_lines = False
    for r, bench in enumerate(benchmarks):
        for c, level in enumerate(levels):
            ax = axes[r][c]
            cell = diag[(diag["benchmark"] == bench) & (diag["sparsity_pct"] == level)]
            low = worst[(worst["benchmark"] == bench) & (worst["sparsity_pct"] == level)]
            if cell.empty:
                ax.set_axis_off()
                continue
            for init in inits:
                these, lows = cell[cell["sparse_init"] == init], low[low["sparse_init"] == init]
                ax.scatter([x_of(g, init, s) for g, s in zip(these["growth"], these["seed"])], these["task_acc"],
                           s=12, color=colours[init], alpha=0.45, linewidths=0)
                ax.scatter([x_of(g, init, s) for g, s in zip(lows["growth"], lows["seed"])], lows["min_task_acc"],
                           s=42, color=colours[init], edgecolors="black", linewidths=0.8, zorder=3)
            chance = cell["chance"].dropna()
            if not chance.empty:
                ax.axhline(chance.iloc[0], color="0.35", linestyle="--", linewidth=1.2, zorder=1)
                chance_lines = True
            ax.set_xticks(range(len(growths)), growths)
            ax.set_xlim(-0.5, len(growths) - 0.5)
            ax.set(title=f"{bench}, sparsity {level:g} %" if len(benchmarks) > 1 else f"sparsity {level:g} %",
                   xlabel="growth", ylabel="A[j][j]: accuracy on task j\nright after training it (%)" if c == 0 else "")
    floor = min(diag["task_acc"].min(), diag["chance"].min() if diag["chance"].notna().any() else np.inf)
    axes[0][0].set_ylim(max(0.0, math.floor(floor / 10) * 10 - 5), 101)
    handles = [Line2D([], [], marker="o", linestyle="", color=colours[i], label=i) for i in inits]
    handles += [Line2D([], [], marker="o", linestyle="", color="0.5", alpha=0.45, markersize=4, label="a task"),
                Line2D([], [], marker="o", linestyle="", color="0.5", markeredgecolor="black", label="a run's lowest task")]
    if chance_lines:
        handles.append(Line2D([], [], color="0.35", linestyle="--", label="chance"))
    fig.legend(handles=handles, title="sparse init", loc="outside right center", frameon=False)
    fig.suptitle(f"Was every task learned? Accuracy on each task right after training it, "
                 f"{len(seeds)} seed{'s' if len(seeds) > 1 else ''} per group{freq_note}")
    return fig


STUDY_FIGURES = {
    "fig1-acc-vs-sparsity": acc_vs_sparsity,
    "fig2-init-growth-heatmaps": init_growth_heatmaps,
    "fig3-update-frequency": update_frequency_effect,
    "fig4-capacity-vs-task": capacity_vs_task,
    "fig6-tasks-learned": tasks_learned,
}
