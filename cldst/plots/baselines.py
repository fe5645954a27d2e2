"""The baselines beside DST (grids/baselines-split-mnist.yaml): final ACC against training FLOPs
(cldst/method/flops.py counts them, RigL's convention, relative to training the dense network on
the same examples). Which baseline a run is, and the table per baseline: cldst/analysis/baselines.py.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from cldst.analysis.baselines import baseline_order, with_baselines
from cldst.analysis.ordering import ordered
from cldst.analysis.summary import sparsity_text
from cldst.plots.style import styled


@styled
def acc_vs_training_flops(table: pd.DataFrame) -> plt.Figure:
    """Final ACC against training FLOPs relative to dense (log scale): one point per run, a marker
    per baseline or growth rule, a colour per sparse init, the mean of each cell (init, baseline,
    sparsity) ringed; the sparsities sit apart along the FLOPs axis."""
    t = with_baselines(table)
    names = baseline_order(t["baseline"].unique())
    inits = ordered("sparse_init", t["sparse_init"].unique())
    markers = dict(zip(names, "osD^vPX*hp"))
    colours = dict(zip(inits, sns.color_palette("deep", len(inits))))
    fig, ax = plt.subplots(figsize=(7.5, 4.4))
    for (init, name, _), part in t.groupby(["sparse_init", "baseline", "sparsity"]):
        ax.scatter(part["train_flops_vs_dense"], part["acc"], marker=markers[name], color=colours[init],
                   alpha=0.35, s=22)
        ax.scatter(part["train_flops_vs_dense"].mean(), part["acc"].mean(), marker=markers[name],
                   facecolor="none", edgecolor=colours[init], s=110, lw=1.6)
    ax.set_xscale("log")
    ax.set_xlabel("training FLOPs relative to dense training (RigL's count)")
    ax.set_ylabel("final ACC (%)")
    handles = [plt.Line2D([], [], marker=markers[n], ls="", color="0.3", label=n) for n in names]
    handles += [plt.Line2D([], [], marker="s", ls="", color=colours[i], label=f"{i} init") for i in inits]
    ax.legend(handles=handles, fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
    sparsities = ", ".join(sparsity_text(s) for s in sorted(t["sparsity"].unique()))
    ax.set_title(f"{t['benchmark'].iloc[0]}: accuracy against training cost\n(sparsity {sparsities}; "
                 f"ringed: mean of {int(np.median(t.groupby(['sparse_init', 'baseline', 'sparsity']).size()))} "
                 "seeds)", fontsize="medium")
    fig.tight_layout()
    return fig
