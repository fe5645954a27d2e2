"""Figures of task capacity and reuse (definitions: cldst/method/reuse.py): one run's reuse matrix
and per-layer capacity, and, over the results table, the task at which each layer saturates and
the capacity each layer has used after the last task (the tables: cldst/analysis/reuse.py).

Tasks are numbered from 1 in the figures, as in cldst/plots/run.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.patches import Rectangle

from cldst.analysis.reuse import final_capacity_table, saturation_panels
from cldst.analysis.summary import sparsity_text
from cldst.method.metrics import as_matrix
from cldst.method.reuse import reuse_summary
from cldst.plots.style import styled


# ---------------------------------------------------------------------- one run's figures
def short_name(name: str) -> str:
    """``layer2.0.shortcut.0.weight`` → ``L2.0.sc.0``; ``layers.3.conv1.weight`` → ``3.conv1``."""
    name = name.removesuffix(".weight").replace("shortcut", "sc")
    if name.startswith("layers."):
        return name.removeprefix("layers.")
    return "L" + name.removeprefix("layer") if name.startswith("layer") else name


@styled
def reuse_heatmap(matrix: Sequence[Sequence[float | None]], title: str | None = None) -> plt.Figure:
    """R (%) as a T×T heatmap: row t = task t's mask, column s = the task owning those weights;
    the diagonal (outlined) is the new part, the weights task t took from the free pool."""
    a = 100 * as_matrix(matrix)
    t = a.shape[0]
    labels = [str(i + 1) for i in range(t)]
    fig, ax = plt.subplots(figsize=(2.0 + 0.75 * t, 1.6 + 0.6 * t))
    sns.heatmap(pd.DataFrame(a, index=labels, columns=labels), annot=True, fmt=".0f", mask=np.isnan(a),
                vmin=0, vmax=100, cmap="viridis", ax=ax, cbar_kws={"label": "share of the task's weights (%)"},
                annot_kws={"size": 8 if t > 6 else 10})
    for i in range(t):
        ax.add_patch(Rectangle((i, i), 1, 1, fill=False, edgecolor="white", lw=2))
    ax.set(xlabel="owner task (diagonal: new weights, owned by the row's task)", ylabel="task",
           title=title or (f"Where each task's weights come from (%), mean reuse "
                           f"{100 * reuse_summary(matrix):.0f} %\nrow: a task's mask; column: the task that owns "
                           "those weights"))
    ax.title.set_fontsize(10)
    ax.grid(False)
    return fig


@styled
def layer_capacity(capacity: Mapping[str, Sequence[float]], threshold: float = 1.0) -> plt.Figure:
    """Per layer (rows), the capacity (%) owned after each task (columns); saturated cells hatched."""
    names = list(capacity)
    a = 100 * np.array([list(capacity[n]) for n in names], dtype=float)
    layers, t = a.shape
    full = a >= 100 * threshold
    labels = np.where(full, "full", np.vectorize(lambda v: f"{v:.0f}")(a)) if layers * t <= 200 else False
    fig, ax = plt.subplots(figsize=(2.8 + 0.6 * t, 1.4 + 0.26 * layers))
    sns.heatmap(pd.DataFrame(a, index=[short_name(n) for n in names], columns=[str(i + 1) for i in range(t)]),
                annot=labels, fmt="", vmin=0, vmax=100, cmap="viridis", ax=ax,
                cbar_kws={"label": "positions owned (%)"}, annot_kws={"size": 7})
    for r, c in zip(*np.nonzero(full)):
        ax.add_patch(Rectangle((c, r), 1, 1, fill=False, hatch="//", edgecolor=(1, 1, 1, 0.35), lw=0))
    ax.set(xlabel="after training task", ylabel="",
           title="Capacity of each layer (%): positions owned by some task\n"
                 "hatched, full: saturated, no free weights left")
    ax.title.set_fontsize(10)
    ax.tick_params(axis="y", labelsize=8, rotation=0)
    ax.grid(False)
    return fig


# ---------------------------------------------------------------------- the results table
@styled
def saturation_figure(table: pd.DataFrame) -> plt.Figure:
    """Heatmap of saturation_table: one panel per benchmark (its own layers), a column per
    init / growth / sparsity; blank where the layer (median over seeds) never saturates."""
    by_benchmark = saturation_panels(table)
    benches, panels = list(by_benchmark), list(by_benchmark.values())
    finite = [v for p in panels for v in p.to_numpy(dtype=float).ravel() if np.isfinite(v)]
    vmax = max(finite, default=1.0)
    width = max(len(p.columns) for p in panels)
    fig, axes = plt.subplots(1, len(benches), squeeze=False, layout="constrained",
                             figsize=(2.2 + len(benches) * (1.0 + 0.8 * width), 2.4 + 0.26 * max(map(len, panels))))
    for k, (ax, bench, panel) in enumerate(zip(axes[0], benches, panels)):
        keys = [n for n in panel.columns.names if n != "benchmark"]
        labels = ["\n".join(sparsity_text(v) if n == "sparsity" else str(v) for n, v in zip(panel.columns.names, c)
                            if n != "benchmark") for c in panel.columns]
        data = pd.DataFrame(panel.to_numpy(dtype=float), index=[short_name(n) for n in panel.index], columns=labels)
        sns.heatmap(data, annot=data.size <= 400, fmt="g", mask=data.isna(), vmin=1, vmax=max(vmax, 1.0),
                    cmap="magma_r", ax=ax, cbar=k == len(benches) - 1, annot_kws={"size": 8},
                    cbar_kws={"label": "task (median over seeds)"})
        ax.set(title=bench or "", xlabel=" / ".join(n.replace("_", " ") for n in keys), ylabel="")
        ax.tick_params(axis="x", labelsize=8, rotation=0)
        ax.tick_params(axis="y", labelsize=8, rotation=0)
        ax.grid(False)
    fig.suptitle("Task after which each layer has no free weights left (blank: never)", fontsize=11)
    return fig


@styled
def final_capacity_figure(table: pd.DataFrame) -> plt.Figure:
    """Heatmap of final_capacity_table: per layer (rows) and init / growth / sparsity (columns), the
    fraction of the layer's weights owned by some task after the last task, median over seeds;
    "full" marks a saturated layer.
    Where no layer saturates, this shows how close each came."""
    med = final_capacity_table(table)
    keys = list(med.columns.names)
    med.index = [short_name(n) for n in med.index]
    med.columns = ["\n".join(sparsity_text(v) if k == "sparsity" else str(v) for k, v in zip(keys, c))
                   for c in med.columns]
    labels = med.map(lambda v: "full" if v >= 1.0 else f"{100 * v:.0f}")
    fig, ax = plt.subplots(figsize=(2.0 + 0.8 * med.shape[1], 1.6 + 0.26 * med.shape[0]), layout="constrained")
    sns.heatmap(med, annot=labels, fmt="", vmin=0, vmax=1, cmap="mako_r", ax=ax, annot_kws={"size": 7},
                cbar_kws={"label": "fraction owned after the last task"})
    ax.set(xlabel=" / ".join(k.replace("_", " ") for k in keys), ylabel="",
           title="Capacity used per layer after the last task (%; full: no free weight left)")
    ax.tick_params(axis="both", labelsize=8, rotation=0)
    return fig
