"""The baselines beside DST (grids/baselines-split-mnist.yaml): which baseline a run is, a table of
ACC, BWT and training FLOPs per baseline, and ACC against training FLOPs (cldst/flops.py counts
them, RigL's convention, relative to training the dense network on the same examples).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .config import GROWTHS, INITS, ConfigError
from .plots import styled
from .results import is_true

ORDER = ("static", *GROWTHS, "no reuse (gradient)", "fine-tuning (gradient)", "dense isolated")


def baseline(row: pd.Series) -> str:
    """The baseline a results-table row is: a DST growth rule, static, no reuse, fine-tuning or
    dense isolated (density 1)."""
    if float(row["density"]) == 1.0:
        return "dense isolated"
    if "isolation" in row.index and not is_true(row["isolation"]):
        return f"fine-tuning ({row['growth']})"
    if row.get("reuse") == "none":
        return f"no reuse ({row['growth']})"
    if row["growth"] == "none" or int(row["update_frequency"]) == 0:
        return "static"
    return str(row["growth"])


def dst_runs(table: pd.DataFrame) -> pd.DataFrame:
    """The runs of the method itself: isolated, reusing earlier tasks' weights, sparse (static
    included); the ones whose reuse and saturation the figures compare."""
    keep = table["density"] < 1
    if "reuse" in table.columns:
        keep &= table["reuse"].fillna("all") == "all"
    if "isolation" in table.columns:
        keep &= table["isolation"].map(is_true)
    return table[keep]


def _with_baselines(table: pd.DataFrame) -> pd.DataFrame:
    if "train_flops_vs_dense" not in table.columns or table["train_flops_vs_dense"].isna().all():
        raise ConfigError("the table has no training FLOPs (train_flops_vs_dense): its runs predate the "
                          "count; rerun them, e.g. `make baselines`")
    out = table.copy()
    out["baseline"] = [baseline(row) for _, row in table.iterrows()]
    return out


def _order(names) -> list[str]:
    return sorted(names, key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER))


def baselines_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Rows: sparsity and baseline; columns: ACC, BWT and training FLOPs relative to dense
    (mean ± std over seeds) and the number of runs."""
    t = _with_baselines(table)
    rows = []
    for (sparsity, name), part in t.groupby(["sparsity", "baseline"]):
        def cell(col: str, fmt: str, part=part) -> str:
            m, s = part[col].mean(), part[col].std()
            return format(m, fmt) if len(part) < 2 else f"{format(m, fmt)} ± {format(s, fmt.lstrip('+'))}"
        rows.append({"sparsity": f"{100 * sparsity:g} %", "baseline": name, "ACC (%)": cell("acc", ".1f"),
                     "BWT": cell("bwt", "+.1f"), "training FLOPs vs dense": cell("train_flops_vs_dense", ".3f"),
                     "runs": len(part)})
    out = pd.DataFrame(rows)
    out["_s"] = [float(s.rstrip(" %")) for s in out["sparsity"]]
    out["_b"] = [_order(ORDER + (b,)).index(b) for b in out["baseline"]]
    return out.sort_values(["_s", "_b"]).drop(columns=["_s", "_b"]).set_index(["sparsity", "baseline"])


@styled
def acc_vs_training_flops(table: pd.DataFrame) -> plt.Figure:
    """Final ACC against training FLOPs relative to dense (log scale): one point per run, a marker
    per baseline or growth rule, a colour per sparse init, the mean of each cell (init, baseline,
    sparsity) ringed; the sparsities sit apart along the FLOPs axis."""
    t = _with_baselines(table)
    names = _order(t["baseline"].unique())
    inits = [i for i in INITS if i in set(t["sparse_init"])]
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
    sparsities = ", ".join(f"{100 * s:g} %" for s in sorted(t["sparsity"].unique()))
    ax.set_title(f"{t['benchmark'].iloc[0]}: accuracy against training cost\n(sparsity {sparsities}; "
                 f"ringed: mean of {int(np.median(t.groupby(['sparse_init', 'baseline', 'sparsity']).size()))} "
                 "seeds)", fontsize="medium")
    fig.tight_layout()
    return fig
