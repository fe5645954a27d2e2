"""What adaptive DST chose: per task, the chosen sparse init, growth rule and density of one run
(experiment.ipynb), the chosen configuration of every adaptive run across seeds (figures.ipynb), and
the share of each growth rule the growth bandit picked at a task's topology updates.

Every function returns a matplotlib Figure, or None when the run or table made no choice.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.patches import Patch

from cldst.analysis.adaptive_study import nominal_sparsity
from cldst.analysis.results import json_column
from cldst.config.candidates import CHOOSABLE
from cldst.plots.style import styled

SHORT = {"uniform": "uni", "ERK": "ERK", "random": "rand", "unfired": "unf", "gradient": "grad", "momentum": "mom"}
ROW = {"sparse_init": "init"}  # a chosen setting's row label, where it is not the setting's name


def _text(value) -> str:
    return f"{value:g}" if isinstance(value, float) else SHORT.get(value, str(value))


def _strip(rows: Sequence[str], cells: Sequence[Sequence[str]], title: str, legend_title: str) -> plt.Figure:
    """One coloured, labelled cell per (row, task): a colour per distinct label, with a legend."""
    labels = sorted({c for row in cells for c in row})
    colour = dict(zip(labels, sns.color_palette("Set2" if len(labels) <= 8 else "tab20", len(labels))))
    tasks = max(len(row) for row in cells)
    image = np.ones((len(rows), tasks, 3))
    fig, ax = plt.subplots(figsize=(1.6 + 0.7 * tasks, 0.8 + 0.45 * len(rows)))
    for i, row in enumerate(cells):
        for j, label in enumerate(row):
            image[i, j] = colour[label]
            ax.text(j, i, label.replace(" ", "\n"), ha="center", va="center", fontsize=7)
    ax.imshow(image, aspect="auto")
    ax.set_xticks(range(tasks), [str(t + 1) for t in range(tasks)])
    ax.set_yticks(range(len(rows)), rows)
    ax.set(xlabel="task", title=title)
    ax.grid(False)
    ax.legend(handles=[Patch(color=colour[k], label=k) for k in labels], title=legend_title,
              bbox_to_anchor=(1.01, 1), loc="upper left", fontsize=8)
    return fig


@styled
def run_choices(metrics: dict) -> plt.Figure | None:
    """One run: per task, each chosen setting (adaptive), or each growth rule's share of the task's
    topology updates (growth bandit); None for a fixed run."""
    if metrics.get("choices"):
        chosen = [c["chosen"] for c in sorted(metrics["choices"], key=lambda c: c["task"])]
        names = [key for key in CHOOSABLE if len({json.dumps(c[key]) for c in chosen}) > 1
                 or isinstance(metrics["config"][key], list)]
        return _strip([ROW.get(key, key) for key in names], [[_text(c[key]) for c in chosen] for key in names],
                      "Chosen on validation images, per task", "chosen")
    if metrics.get("growth_choices"):
        return bandit_shares(metrics["growth_choices"])
    return None


def bandit_shares(growth_choices: Sequence[Sequence[dict]]) -> plt.Figure:
    """Per task, the share (%) of its topology updates at which the bandit picked each growth rule."""
    counts = pd.DataFrame([Counter(c["rule"] for c in task) for task in growth_choices]).fillna(0)
    shares = 100 * counts.div(counts.sum(axis=1).where(lambda s: s > 0, 1), axis=0)
    shares.index = [str(t + 1) for t in range(len(shares))]
    fig, ax = plt.subplots(figsize=(1.6 + 0.5 * len(shares), 3.2))
    shares.plot.bar(stacked=True, ax=ax, width=0.8, color=sns.color_palette("Set2", shares.shape[1]), rot=0)
    ax.set(xlabel="task", ylabel="updates (%)", ylim=(0, 100), title="Growth rule the bandit picked, per task")
    ax.legend(title="growth", bbox_to_anchor=(1.01, 1), loc="upper left", fontsize=8)
    return fig


def adaptive_runs(table: pd.DataFrame) -> pd.DataFrame:
    """The table's runs that chose per task (their chosen_init column is set)."""
    if "chosen_init" not in table.columns:
        return table.iloc[0:0]
    return table[table["chosen_init"].notna()]


@styled
def chosen_per_task(table: pd.DataFrame) -> plt.Figure | None:
    """Every adaptive run of a results table (a row per run: sparsity, budget and seed), per task:
    the chosen init / growth (and density, where the run chose among several)."""
    runs = adaptive_runs(table)
    if runs.empty:
        return None
    order = runs.assign(budget=runs.get("capacity_budget", pd.Series(0.0, index=runs.index)).fillna(0.0),
                        sparsity=[nominal_sparsity(d) for d in runs["density"]])
    runs = runs.loc[order.sort_values(["num_tasks", "budget", "sparsity", "seed"], kind="stable").index]
    inits, growths, densities = (json_column(runs, c) for c in ("chosen_init", "chosen_growth", "chosen_density"))
    rows, cells = [], []
    for (_, run), i, g, d in zip(runs.iterrows(), inits, growths, densities, strict=True):
        several = "|" in str(run["density"])
        rows.append(_run_label(run))
        cells.append([f"{_text(x)} {_text(y)}" + (f" {z:g}" if several else "") for x, y, z in zip(i, g, d)])
    return _strip(rows, cells, "Configuration each task chose on its validation images", "init growth (density)")


def _run_label(run: pd.Series) -> str:
    """Sparsity (or the density candidates), the capacity budget where set, and the seed."""
    head = f"{run['num_tasks']} tasks, " + (
        f"sparsity {run['sparsity'] * 100:g} %" if pd.notna(run["sparsity"]) else f"density {run['density']}")
    budget = run.get("capacity_budget", 0.0)
    return head + (f", budget {budget:g}" if pd.notna(budget) and budget > 0 else "") + f", seed {run['seed']}"


@styled
def acc_vs_cost(summary: pd.DataFrame) -> plt.Figure:
    """``cldst.analysis.adaptive_study.comparison``: ACC (mean ± std over seeds) against training
    FLOPs relative to dense training, a panel per benchmark and sparsity, a marker per method."""
    panels = list(summary.groupby(["benchmark", "sparsity"], sort=False))
    methods = list(dict.fromkeys(summary["method"]))
    colour = dict(zip(methods, sns.color_palette("deep", len(methods))))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    for ax, ((bench, sparsity), rows) in zip(axes[0], panels):
        for _, r in rows.iterrows():
            ax.errorbar(r["training FLOPs vs dense"], r["ACC"], yerr=0 if pd.isna(r["ACC std"]) else r["ACC std"],
                        fmt="o", color=colour[r["method"]], capsize=3, label=r["method"])
        ax.set(title=f"{bench}, sparsity {sparsity}", xlabel="training FLOPs vs dense", ylabel="ACC (%)")
    handles = {h.get_label(): h for ax in axes[0] for h in ax.get_legend_handles_labels()[0]}
    fig.legend(handles.values(), handles.keys(), loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3, fontsize=8)
    fig.tight_layout()
    return fig
