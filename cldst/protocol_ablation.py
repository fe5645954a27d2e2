"""What each reference-protocol quirk costs: the clean protocol, the reference protocol, and the
reference protocol with one quirk turned off at a time (grids/protocol-ablation.yaml), as a table
and a figure of final ACC per variant (docs/reference-protocol.md describes the quirks).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .config import QUIRKS, ConfigError
from .plots import styled
from .results import _ordered, is_true

CELL = ["sparse_init", "growth"]


def variant(row: pd.Series) -> str:
    """A run's variant: "clean", "reference", or "reference − <quirk>" (the one quirk turned off)."""
    if row["protocol"] == "clean":
        return "clean"
    off = [q for q in QUIRKS if q in row.index and not is_true(row[q])]
    if row.get("free_init") == "theta0":
        off.append("free_init")
    if len(off) > 1:
        raise ConfigError(f"run {row['run_id']} turns off {', '.join(off)}: the ablation turns off one at a time")
    return f"reference − {off[0]}" if off else "reference"


def with_variants(table: pd.DataFrame) -> pd.DataFrame:
    """The table with a ``variant`` column; quirks that no run turns off are not variants."""
    out = table.copy()
    out["variant"] = [variant(row) for _, row in table.iterrows()]
    return out


def _variant_order(names) -> list[str]:
    head = [v for v in ("clean", "reference") if v in names]
    return head + sorted(v for v in names if v not in head)


def ablation_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per variant (rows) and init / growth cell: ACC and BWT, mean ± std over seeds, then the mean
    ACC over cells and its change from the reference protocol (points)."""
    t = with_variants(table)
    stats = t.groupby(["variant", *CELL])[["acc", "bwt"]].agg(["mean", "std"])
    cells = [(i, g) for i in _ordered("sparse_init", t["sparse_init"].unique())
             for g in _ordered("growth", t["growth"].unique())]
    rows = {}
    for name in _variant_order(t["variant"].unique()):
        row = {}
        for i, g in cells:
            s = stats.loc[(name, i, g)]
            row[f"{i} / {g} ACC"] = f"{s[('acc', 'mean')]:.1f} ± {s[('acc', 'std')]:.1f}"
            row[f"{i} / {g} BWT"] = f"{s[('bwt', 'mean')]:+.1f}"
        row["mean ACC"] = stats.loc[name][("acc", "mean")].mean()
        rows[name] = row
    out = pd.DataFrame.from_dict(rows, orient="index")
    if "reference" in out.index:
        out["Δ ACC vs reference"] = out["mean ACC"] - out.loc["reference", "mean ACC"]
    out.index.name = "variant"
    return out


@styled
def ablation_figure(table: pd.DataFrame) -> plt.Figure:
    """Final ACC per variant: one marker per init / growth cell (mean over seeds, bars ± std), the
    reference and clean protocols as vertical lines."""
    t = with_variants(table)
    order = _variant_order(t["variant"].unique())
    cells = t.groupby(CELL).size().index.tolist()
    fig, ax = plt.subplots(figsize=(7.5, 0.42 * len(order) + 1.6))
    offsets = np.linspace(-0.25, 0.25, len(cells))
    for (cell, off) in zip(cells, offsets):
        part = t[(t["sparse_init"] == cell[0]) & (t["growth"] == cell[1])]
        stats = part.groupby("variant")["acc"].agg(["mean", "std"]).reindex(order)
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
