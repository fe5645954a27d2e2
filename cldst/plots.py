"""Seaborn figures: one run's metrics (experiment.ipynb) and the study's figures from the results
table (figures.ipynb). Nothing here trains; every function returns a matplotlib Figure.

Accuracies are in percent, sparsity = 1 − density is shown in percent. Where several runs share
a plotted point (seeds), the point is their mean and the band or label their standard deviation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .config import GROWTHS, INITS, ConfigError
from .results import at_main_update_frequency, json_column

sns.set_theme(style="whitegrid", context="notebook")


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


def capacity_per_task(capacity: Sequence[float]) -> plt.Figure:
    """Fraction of the backbone's weights owned by some task, after each task."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    tasks = np.arange(1, len(capacity) + 1)
    sns.barplot(x=tasks, y=100 * np.asarray(capacity), color="C0", ax=ax)
    ax.set(xlabel="after training task", ylabel="capacity used (% of weights)",
           title="Capacity used: weights owned by some task")
    return fig


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


# ---------------------------------------------------------------------- the study
def _prepare(table: pd.DataFrame) -> pd.DataFrame:
    return table.assign(sparsity_pct=(100 * table["sparsity"]).round(2))


def _orders(table: pd.DataFrame) -> dict[str, list]:
    return {"sparse_init": [i for i in INITS if i in set(table["sparse_init"])],
            "growth": [g for g in GROWTHS if g in set(table["growth"])]}


def _legend_titles(g: sns.FacetGrid) -> None:
    """Legend entries say "sparse init", not the column name "sparse_init"."""
    for text in [g.legend.get_title(), *g.legend.get_texts()]:
        if text.get_text() == "sparse_init":
            text.set_text("sparse init")


def _spread_note(table: pd.DataFrame, keys: list[str]) -> str:
    counts = table.groupby(keys).size()
    if counts.max() == 1:
        return "one run per point"
    return f"mean ± std over {counts.min()}–{counts.max()} seeds" if counts.min() != counts.max() \
        else f"mean ± std over {counts.max()} seeds"


def _one_frequency(table: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    d, main = at_main_update_frequency(table)
    return d, "" if main is None else f", update frequency {main} steps"


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
    note = _spread_note(d, ["benchmark", "sparse_init", "growth", "sparsity"])
    g.figure.suptitle(f"Final average accuracy vs sparsity ({note}{freq_note})", y=1.03)
    return g.figure


def init_growth_heatmaps(table: pd.DataFrame) -> plt.Figure:
    """Figure 2: ACC (%) by sparse init × growth rule, one heatmap per sparsity level (and benchmark)."""
    d, freq_note = _one_frequency(_prepare(table))
    order = _orders(d)
    benchmarks, levels = sorted(d["benchmark"].unique()), sorted(d["sparsity_pct"].unique())
    stats = d.groupby(["benchmark", "sparsity_pct", "sparse_init", "growth"])["acc"].agg(["mean", "std", "size"])
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
            mean = s["mean"].unstack("growth").reindex(index=order["sparse_init"], columns=order["growth"])
            std = s["std"].unstack("growth").reindex_like(mean)
            size = s["size"].unstack("growth").reindex_like(mean)
            labels = mean.map(lambda v: "" if pd.isna(v) else f"{v:.1f}")
            spread = (size > 1) & std.notna()
            labels = labels.where(~spread, labels + "\n± " + std.map(lambda v: f"{v:.1f}"))
            sns.heatmap(mean, annot=labels, fmt="", vmin=vmin, vmax=vmax, cmap="viridis", ax=ax,
                        cbar=c == len(levels) - 1, cbar_kws={"label": "final ACC (%)"},
                        annot_kws={"size": 9})
            ax.set(title=f"{bench}, sparsity {level:g} %", xlabel="growth", ylabel="sparse init" if c == 0 else "")
            ax.tick_params(axis="x", rotation=0)
            ax.tick_params(axis="y", rotation=0)
    note = _spread_note(d, ["benchmark", "sparse_init", "growth", "sparsity"])
    fig.suptitle(f"Final ACC (%) by sparse init and growth ({note}{freq_note})")
    return fig


def update_frequency_effect(table: pd.DataFrame) -> plt.Figure:
    """Figure 3: final ACC against the update frequency, one line per growth rule (style: init)."""
    d = _prepare(table)
    order = _orders(d)
    freqs = sorted(d["update_frequency"].unique())
    g = sns.relplot(d, x="update_frequency", y="acc", hue="growth", hue_order=order["growth"],
                    style="sparse_init", style_order=order["sparse_init"], col="sparsity_pct",
                    row="benchmark", kind="line", markers=True, errorbar="sd", height=3, aspect=1.1,
                    facet_kws={"margin_titles": True})
    g.set_axis_labels("update frequency (steps)", "final ACC (%)")
    g.set_titles(col_template="sparsity {col_name:g} %", row_template="{row_name}")
    _legend_titles(g)
    if len(freqs) > 1 and freqs[-1] / freqs[0] >= 10:
        g.set(xscale="log")
    g.set(xticks=freqs)
    if len(freqs) == 1:
        title = (f"Effect of the update frequency: this table has one update frequency only "
                 f"({int(freqs[0])} steps);\nsweep update_frequency to see its effect")
    else:
        note = _spread_note(d, ["benchmark", "sparse_init", "growth", "sparsity", "update_frequency"])
        title = f"Final ACC vs update frequency, optimizer steps between topology updates ({note})"
    g.figure.suptitle(title, y=1.03 + 0.05 * title.count("\n"))
    return g.figure


def capacity_vs_task(table: pd.DataFrame) -> plt.Figure:
    """Figure 4: capacity used (% of weights owned by some task) after each task, per init (style: growth)."""
    d, freq_note = _one_frequency(_prepare(table))
    order = _orders(d)
    rows = [dict(benchmark=b, sparsity_pct=s, sparse_init=i, growth=g, seed=seed, task=t + 1, capacity=100 * c)
            for b, s, i, g, seed, caps in zip(d["benchmark"], d["sparsity_pct"], d["sparse_init"], d["growth"],
                                              d["seed"], json_column(d, "capacity"))
            for t, c in enumerate(caps)]
    long = pd.DataFrame(rows)
    g = sns.relplot(long, x="task", y="capacity", hue="sparse_init", hue_order=order["sparse_init"],
                    style="growth", style_order=order["growth"], col="sparsity_pct", row="benchmark",
                    kind="line", markers=True, errorbar="sd", height=3, aspect=1.1,
                    facet_kws={"margin_titles": True})
    g.set_axis_labels("after training task", "capacity used (% of weights)")
    g.set_titles(col_template="sparsity {col_name:g} %", row_template="{row_name}")
    _legend_titles(g)
    for ax in g.axes.flat:
        ax.xaxis.get_major_locator().set_params(integer=True)
    note = _spread_note(d, ["benchmark", "sparse_init", "growth", "sparsity"])
    g.figure.suptitle(f"Capacity used after each task ({note}{freq_note})", y=1.03)
    return g.figure


def pick_run(table: pd.DataFrame, which: str = "best") -> pd.Series:
    """A row of the table: "best" (highest ACC), or a run id, or a run directory ending in one."""
    if which == "best":
        return table.sort_values(["acc", "run_id"], ascending=[False, True]).iloc[0]
    name = Path(str(which).rstrip("/")).name
    found = table[(table["run_id"] == name) | (table["run_dir"].astype(str) == str(which))]
    if found.empty:
        raise ConfigError(f"run_dir={which!r} is not in the results table: give a run id from its run_id column, or 'best'")
    return found.iloc[0]


def run_accuracy_matrix(table: pd.DataFrame, which: str = "best") -> plt.Figure:
    """Figure 5: the accuracy matrix of one run of the table."""
    run = pick_run(table, which)
    chosen = "best run: " if which == "best" else ""
    title = (f"Accuracy matrix, {chosen}{run['benchmark']}, {run['sparse_init']}, growth {run['growth']},\n"
             f"sparsity {100 * run['sparsity']:g} %, seed {run['seed']}: ACC {run['acc']:.1f} %, "
             f"BWT {run['bwt']:.2f}, forgetting {run['forgetting']:.2f} (points)")
    return accuracy_matrix(json_column(run.to_frame().T, "acc_matrix")[0], title=title)


STUDY_FIGURES = {
    "fig1-acc-vs-sparsity": acc_vs_sparsity,
    "fig2-init-growth-heatmaps": init_growth_heatmaps,
    "fig3-update-frequency": update_frequency_effect,
    "fig4-capacity-vs-task": capacity_vs_task,
}


# ---------------------------------------------------------------------- protocols
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
