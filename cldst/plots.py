"""Seaborn figures of one run: its metrics (experiment.ipynb), one run picked from the results table
(figure 5 of figures.ipynb), and the runs of several protocols side by side (protocols.ipynb); the
style and the saving that every figure shares. The study's figures over the whole results table
are in cldst/study_plots.py. Nothing here trains; every function returns a matplotlib Figure.

Accuracies are in percent.

Importing this module changes no global matplotlib setting: each figure function draws inside
``mpl.rc_context(theme())`` (seaborn's whitegrid style, notebook context and deep palette).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .config import GROWTHS, INITS, ConfigError
from .metrics import forgetting_text
from .results import json_column


# ---------------------------------------------------------------------- style
def theme() -> dict[str, Any]:
    """The rcParams of every figure here: what ``sns.set_theme(style="whitegrid", context="notebook")``
    would set globally, to be used in a context instead."""
    return {**sns.axes_style("whitegrid"), **sns.plotting_context("notebook"),
            "axes.prop_cycle": mpl.cycler(color=sns.color_palette("deep"))}


def styled(draw: Callable[..., plt.Figure]) -> Callable[..., plt.Figure]:
    """Run a figure function inside ``mpl.rc_context(theme())``: the style applies to its figure only."""
    @functools.wraps(draw)
    def wrapper(*args, **kwargs):
        with mpl.rc_context(theme()):
            fig = draw(*args, **kwargs)
            interactive = mpl.is_interactive()
        # Not a style setting: a backend that pyplot first loads in here may switch interactive mode
        # on for good (IPython's inline backend does, and shows only figures made in that mode).
        mpl.interactive(interactive)
        return fig
    return wrapper


# ---------------------------------------------------------------------- saving
def save_figure(fig: plt.Figure, directory: str | Path | None, name: str) -> list[Path]:
    """Write ``name``.png and ``name``.pdf into ``directory`` (nothing if it is None)."""
    if directory is None:
        return []
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    png, pdf = directory / f"{name}.png", directory / f"{name}.pdf"
    # No dates or versions in the files, so regenerating unchanged figures changes no bytes.
    fig.savefig(png, dpi=150, bbox_inches="tight", metadata={"Software": None})
    fig.savefig(pdf, bbox_inches="tight", metadata={"CreationDate": None, "Creator": None, "Producer": None})
    return [png, pdf]


# ---------------------------------------------------------------------- one run
@styled
def accuracy_matrix(matrix: Sequence[Sequence[float | None]], title: str = "Accuracy matrix") -> plt.Figure:
    """A[i][j]: accuracy (%) on task j after training task i; blank where not measured."""
    a = np.array([[np.nan if v is None else v for v in row] for row in matrix], dtype=float)
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
CELL_KEYS = ("benchmark", "sparse_init", "growth", "sparsity", "update_frequency")  # a cell: all but the seed


DEFAULT_CELL = {"sparse_init": "ERK", "growth": "momentum", "sparsity": 0.8}  # the presets' method, 80 %


def select_cell(table: pd.DataFrame, cell: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """The runs of one cell of the table: the rows matching ``cell`` (column: value; numbers match
    to 1e-9). Every setting of CELL_KEYS that ``cell`` leaves out and that still varies takes the
    value with the most runs (on a tie, the first in order), so the runs differ only by seed
    (and settings outside CELL_KEYS that ``cell`` does not name)."""
    cell = dict(DEFAULT_CELL if cell is None else cell)
    rows = table
    for key, want in cell.items():
        if key not in table.columns:
            raise ConfigError(f"cell setting {key!r} is not a column of the results table: use one of "
                              f"{', '.join(CELL_KEYS)} (or another column)")
        column = rows[key]
        if pd.api.types.is_numeric_dtype(column) and isinstance(want, (int, float)) and not isinstance(want, bool):
            match = np.isclose(column.astype(float), float(want), rtol=0, atol=1e-9)
        else:
            match = column.astype(str) == str(want)
        if not match.any():
            values = ", ".join(str(v) for v in _sorted_values(key, table[key].unique()))
            raise ConfigError(f"no run with {_cell_text(cell)} in the results table "
                              f"({key} there: {values})")
        rows = rows[match]
    for key in CELL_KEYS:
        if key in cell or key not in rows.columns:
            continue
        counts = rows[key].value_counts()
        top = [v for v in _sorted_values(key, counts.index) if counts[v] == counts.max()]
        rows = rows[rows[key] == top[0]]
    return rows


def _sorted_values(name: str, values) -> list:
    order = {"sparse_init": INITS, "growth": GROWTHS}.get(name)
    if order is None:
        return sorted(values)
    return sorted(values, key=lambda v: order.index(v) if v in order else len(order))


def _cell_text(cell: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in cell.items())


def pick_run(table: pd.DataFrame, which: str = "median", cell: Mapping[str, Any] | None = None) -> pd.Series:
    """A row of the table: ``"median"``, the median run by ACC of ``cell`` (see select_cell; default
    DEFAULT_CELL; with an even number of runs, the lower of the two middle ones), or a run id, or a
    run directory ending in one (then ``cell`` is not used). ``"best"``, the run with the highest
    ACC of the whole table, is still allowed, but it is not a typical run."""
    if which == "median":
        runs = select_cell(table, cell).sort_values(["acc", "run_id"], ignore_index=True)
        run = runs.iloc[(len(runs) - 1) // 2].copy()
        run["cell_runs"] = len(runs)
        return run
    if which == "best":
        run = table.sort_values(["acc", "run_id"], ascending=[False, True]).iloc[0].copy()
        run["table_runs"] = len(table)
        return run
    name = Path(str(which).rstrip("/")).name
    found = table[(table["run_id"] == name) | (table["run_dir"].astype(str) == str(which))]
    if found.empty:
        raise ConfigError(f"run_dir={which!r} is not in the results table: give a run id from its run_id column, "
                          f"or 'median' (the median run by ACC of a cell)")
    return found.iloc[0]


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
    """Figure 5: the accuracy matrix of one run of the table (see pick_run), its settings in the title."""
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
    mats = {name: np.array([[np.nan if v is None else v for v in row] for row in m["acc_matrix"]], dtype=float)
            for name, m in metrics.items()}
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
