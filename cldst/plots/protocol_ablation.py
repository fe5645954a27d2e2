"""What each reference-protocol quirk costs (grids/protocol-ablation.yaml): final ACC per variant,
the clean protocol, the reference protocol, and the reference protocol with one quirk turned off
at a time (the variants and their table: cldst/analysis/protocol_ablation.py;
docs/reference-protocol.md describes the quirks).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from cldst.analysis.protocol_ablation import CELL, variant_order, with_variants
from cldst.analysis.summary import cell_stats
from cldst.plots.style import styled


@styled
def ablation_figure(table: pd.DataFrame) -> plt.Figure:
    """Final ACC per variant: one marker per init / growth cell (mean over seeds, bars ± std), the
    reference and clean protocols as vertical lines."""
    t = with_variants(table)
    order = variant_order(t["variant"].unique())
    cells = t.groupby(CELL).size().index.tolist()
    fig, ax = plt.subplots(figsize=(7.5, 0.42 * len(order) + 1.6))
    offsets = np.linspace(-0.25, 0.25, len(cells))
    for (cell, off) in zip(cells, offsets):
        part = t[(t["sparse_init"] == cell[0]) & (t["growth"] == cell[1])]
        stats = cell_stats(part, ["variant"]).reindex(order)
        y = np.arange(len(order)) + off
        ax.errorbar(stats["mean"], y, xerr=stats["std"].fillna(0), fmt="o", ms=5, capsize=2,
                    label=f"{cell[0]} / {cell[1]}")
    for name, style in (("reference", ":"), ("clean", "--")):
        if name in order:
            ax.axvline(t.loc[t["variant"] == name, "acc"].mean(), color="0.4", ls=style, lw=1)
    ax.set_yticks(range(len(order)), order)
    ax.invert_yaxis()
    seeds = t["seed"].nunique()
    ax.set_xlabel(f"final ACC (%), mean ± std over {seeds} seeds")
    ax.set_title(f"{t['benchmark'].iloc[0]}: what each reference quirk changes\n"
                 "(dotted: reference mean, dashed: clean mean)", fontsize="medium")
    ax.legend(title="init / growth", fontsize="small", loc="lower left", bbox_to_anchor=(1.01, 0))
    fig.tight_layout()
    return fig
