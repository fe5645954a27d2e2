"""DST beside the field's sub-network methods (docs/methods-study.md): ACC against training FLOPs, and
the capacity each method has used after each task. The tables come from
cldst/analysis/methods_study.py (``comparison`` and ``per_task``).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import matplotlib.ticker as mticker
import pandas as pd
import seaborn as sns

from cldst.analysis.methods_study import ORDER
from cldst.plots.style import styled

MARKERS = dict(zip(ORDER, "o*sDv^X"))


def _colours() -> dict[str, tuple]:
    return dict(zip(ORDER, sns.color_palette("deep", len(ORDER))))


@styled
def acc_vs_training_flops(summary: pd.DataFrame) -> plt.Figure:
    """``comparison``: ACC (mean ± std over seeds) against training FLOPs relative to dense training
    (log scale), a panel per benchmark, a colour per method, a marker per sparsity; dense fine-tuning
    (the forgetting reference) as a line of text in the panel."""
    benches = list(dict.fromkeys(summary["benchmark"]))
    sparsities = list(dict.fromkeys(summary["sparsity"]))
    shapes = dict(zip(sparsities, "o^sDv"))
    colour = _colours()
    fig, axes = plt.subplots(1, len(benches), figsize=(5.2 * len(benches), 4.0), squeeze=False)
    for ax, bench in zip(axes[0], benches):
        rows = summary[summary["benchmark"] == bench]
        for _, r in rows[rows["sparsity"] != "dense"].iterrows():
            ax.errorbar(r["training FLOPs vs dense"], r["ACC"], yerr=0 if pd.isna(r["ACC std"]) else r["ACC std"],
                        fmt=shapes[r["sparsity"]], color=colour[r["method"]], capsize=3, ms=7)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(mticker.FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(mticker.NullFormatter())
        ax.set_xticks([0.1, 0.2, 0.3, 0.5, 0.7, 1.0])
        ax.set(title=bench, xlabel="training FLOPs vs dense (RigL's count)", ylabel="ACC (%)")
        # dense fine-tuning forgets far below the rest: said in words, so that the axis keeps their spread
        for _, r in rows[rows["sparsity"] == "dense"].iterrows():
            ax.text(0.5, 1.01, f"fine-tuning (dense): ACC {r['ACC']:.1f}, BWT {r['BWT']:+.1f}, "
                    f"{r['training FLOPs vs dense']:.2f}× dense FLOPs", transform=ax.transAxes, fontsize=8,
                    color=colour[r["method"]], ha="center", va="bottom")
            ax.set_title(bench, pad=16)
    present = [m for m in ORDER if m in set(summary["method"]) and m != ORDER[-1]]
    handles = [plt.Line2D([], [], marker="o", ls="", color=colour[m], label=m) for m in present]
    handles += [plt.Line2D([], [], marker=shapes[s], ls="", color="0.3", label=f"sparsity {s}")
                for s in sparsities if s != "dense"]
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3, fontsize=8)
    fig.suptitle("Accuracy against training cost (mean ± std over seeds)", fontsize="medium")
    fig.tight_layout()
    return fig


@styled
def capacity_vs_task(tasks: pd.DataFrame) -> plt.Figure:
    """``per_task``: the share of the backbone owned (frozen) after each task, a panel per benchmark
    (column) and sparsity (row), a line per method; SupSup owns nothing (its weights never train)."""
    sparse = tasks[tasks["sparsity"] != "dense"]  # fine-tuning freezes nothing and owns nothing
    benches = list(dict.fromkeys(sparse["benchmark"]))
    sparsities = list(dict.fromkeys(sparse["sparsity"]))
    colour = _colours()
    fig, axes = plt.subplots(len(sparsities), len(benches), figsize=(4.6 * len(benches), 3.2 * len(sparsities)),
                             squeeze=False, sharey=True)
    for i, sparsity in enumerate(sparsities):
        for j, bench in enumerate(benches):
            ax = axes[i][j]
            panel = sparse[(sparse["benchmark"] == bench) & (sparse["sparsity"] == sparsity)]
            for method in [m for m in ORDER if m in set(panel["method"])]:
                line = panel[panel["method"] == method]
                ax.plot(line["task"], line["capacity"], marker=MARKERS[method], color=colour[method], label=method,
                        ms=5, lw=1.4)
            ax.set(title=f"{bench}, sparsity {sparsity}", xlabel="task", ylabel="capacity used", ylim=(-0.03, 1.03))
            ax.xaxis.set_major_locator(mticker.MaxNLocator(integer=True))
    handles = {h.get_label(): h for row in axes for ax in row for h in ax.get_legend_handles_labels()[0]}
    fig.legend(handles.values(), handles.keys(), loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3, fontsize=8)
    fig.tight_layout()
    return fig
