"""Seaborn figures of one run: its metrics (experiment.ipynb), one run picked from the results table
(figure 5 of figures.ipynb; cldst/analysis/cells.py picks it), and the runs of several protocols
side by side (protocols.ipynb). The study's figures over the whole results table are in
cldst/plots/study.py, the shared style and save_figure in cldst/plots/style.py. Nothing here trains;
every function returns a matplotlib Figure.

Accuracies are in percent.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from cldst.analysis.cells import pick_run
from cldst.analysis.results import json_column
from cldst.method.metrics import as_matrix, forgetting_text
from cldst.plots.style import styled


# ---------------------------------------------------------------------- one run
@styled
def accuracy_matrix(matrix: Sequence[Sequence[float | None]], title: str = "Accuracy matrix") -> plt.Figure:
    """A[i][j]: accuracy (%) on task j after training task i; blank where not measured."""
    a = as_matrix(matrix)
    t = a.shape[0]
    fig, ax = plt.subplots(figsize=(1.2 + 0.75 * t, 0.9 + 0.6 * t))
    labels = [str(i + 1) for i in range(t)]
    sns.heatmap(pd.DataFrame(a, index=labels, columns=labels), annot=True, fmt=".1f", mask=np.isnan(a),
                vmin=max(0.0, math.floor(np.nanmin(a) / 10) * 10), vmax=100, cmap="viridis", ax=ax,
                cbar_kws={"label": "accuracy (%)"}, annot_kws={"size": 8 if t > 6 else 10})
    ax.set(xlabel="evaluated on task j", ylabel="after training task i", title=title)
    ax.grid(False)
    return fig


@styled
def accuracy_over_time(matrix: Sequence[Sequence[float | None]]) -> plt.Figure:
    """One line per task j: its accuracy after each task i ≥ j."""
    rows = [dict(after=i + 1, task=f"task {j + 1}", acc=v)
            for i, row in enumerate(matrix) for j, v in enumerate(row) if v is not None]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    sns.lineplot(pd.DataFrame(rows), x="after", y="acc", hue="task", marker="o", ax=ax)
    ax.set(xlabel="after training task", ylabel="test accuracy (%)", title="Accuracy of each task over time")
    ax.set_xticks(range(1, len(matrix) + 1))
    ax.legend(loc="lower left", fontsize=8, ncols=2)
    return fig


@styled
def capacity_per_task(capacity: Sequence[float]) -> plt.Figure:
    """Fraction of the backbone's weights owned by some task, after each task."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    tasks = np.arange(1, len(capacity) + 1)
    sns.barplot(x=tasks, y=100 * np.asarray(capacity), color="C0", ax=ax)
    ax.set(xlabel="after training task", ylabel="capacity used (% of weights)",
           title="Capacity used: weights owned by some task")
    return fig


@styled
def layer_density(densities: dict[str, Sequence[float]], task: int = -1) -> plt.Figure:
    """Density (%) of one task's final mask in every masked layer (default: the last task)."""
    names = list(densities)
    values = [100 * densities[n][task] for n in names]
    which = len(next(iter(densities.values()))) if task == -1 else task + 1
    fig, ax = plt.subplots(figsize=(6, 0.25 * len(names) + 1.2))
    sns.barplot(x=values, y=names, color="C2", orient="h", ax=ax)
    ax.set(xlabel="density of the mask (%)", ylabel="", title=f"Per-layer density of task {which}'s mask")
    ax.tick_params(axis="y", labelsize=8)
    return fig


# ---------------------------------------------------------------------- one run of the results table
def run_title(run: pd.Series) -> str:
    """Which run, with its settings and results: the title of figure 5."""
    chosen = (f", the median run by ACC of {int(run['cell_runs'])} seeds" if "cell_runs" in run.index else
              f", the best run by ACC of all {int(run['table_runs'])}" if "table_runs" in run.index else "")
    return (f"Accuracy matrix (%){chosen}\n"
            f"{run['benchmark']}: {run['sparse_init']} init, {run['growth']} growth, sparsity {100 * run['sparsity']:g} %,\n"
            f"update every {int(run['update_frequency'])} steps, seed {int(run['seed'])}: ACC {run['acc']:.1f} %, "
            f"BWT {run['bwt']:+.2f}, forgetting {forgetting_text(run['forgetting'])} (points)")


def run_accuracy_matrix(table: pd.DataFrame, which: str = "median",
                        cell: Mapping[str, Any] | None = None) -> plt.Figure:
    """Figure 5: the accuracy matrix of one run of the table (see cells.pick_run), its settings in the title."""
    run = pick_run(table, which, cell)
    fig = accuracy_matrix(json_column(run.to_frame().T, "acc_matrix")[0], title=run_title(run))
    fig.axes[0].title.set_fontsize(10)  # three lines of settings over a small matrix
    return fig


# ---------------------------------------------------------------------- protocols
@styled
def protocol_comparison(metrics: dict[str, dict]) -> plt.Figure:
    """Accuracy matrices side by side, one per protocol, on one colour scale, with ACC and BWT.

    ``metrics`` maps a protocol name to its run's metrics.json content.
    """
    mats = {name: as_matrix(m["acc_matrix"]) for name, m in metrics.items()}
    low = max(0.0, math.floor(min(np.nanmin(a) for a in mats.values()) / 10) * 10)
    t = next(iter(mats.values())).shape[0]
    fig, axes = plt.subplots(1, len(mats), figsize=(0.6 + len(mats) * (1.2 + 0.75 * t), 1.2 + 0.6 * t),
                             squeeze=False)
    labels = [str(i + 1) for i in range(t)]
    for ax, (name, a) in zip(axes[0], mats.items()):
        m = metrics[name]
        sns.heatmap(pd.DataFrame(a, index=labels, columns=labels), annot=True, fmt=".1f", mask=np.isnan(a),
                    vmin=low, vmax=100, cmap="viridis", ax=ax, cbar=ax is axes[0][-1],
                    cbar_kws={"label": "accuracy (%)"}, annot_kws={"size": 8 if t > 6 else 10})
        ax.set(xlabel="evaluated on task j", ylabel="after training task i",
               title=f"{name}: ACC {m['acc']:.1f} %, BWT {m['bwt']:+.2f} pts")
        ax.grid(False)
    fig.suptitle("Accuracy matrix A[i][j] (%) under each protocol")
    fig.tight_layout()
    return fig
