"""The baselines beside DST (grids/baselines-split-mnist.yaml): which baseline a run is, the runs of
the method itself, and a table of ACC, BWT and training FLOPs per baseline (cldst/method/flops.py
counts them, RigL's convention, relative to training the dense network on the same examples).
cldst/plots/baselines.py draws ACC against training FLOPs.
"""

from __future__ import annotations

import pandas as pd

from cldst.analysis.results import is_true
from cldst.analysis.summary import mean_std_text, sparsity_text
from cldst.config import GROWTHS, ConfigError, is_static

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
    if is_static(row["growth"], row["update_frequency"]):
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


def with_baselines(table: pd.DataFrame) -> pd.DataFrame:
    """The table with a ``baseline`` column (see baseline); refused without training FLOPs."""
    if "train_flops_vs_dense" not in table.columns or table["train_flops_vs_dense"].isna().all():
        raise ConfigError("the table has no training FLOPs (train_flops_vs_dense): its runs predate the "
                          "count; rerun them, e.g. `make baselines`")
    out = table.copy()
    out["baseline"] = [baseline(row) for _, row in table.iterrows()]
    return out


def baseline_order(names) -> list[str]:
    """Baseline names in the order of ORDER, others last."""
    return sorted(names, key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER))


def baselines_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Rows: sparsity and baseline; columns: ACC, BWT and training FLOPs relative to dense
    (mean ± std over seeds) and the number of runs."""
    t = with_baselines(table)
    rows = []
    for (sparsity, name), part in t.groupby(["sparsity", "baseline"]):
        def cell(col: str, spec: str, part=part) -> str:
            return mean_std_text(part[col].mean(), part[col].std(), len(part), spec)
        rows.append({"sparsity": sparsity_text(sparsity), "baseline": name, "ACC (%)": cell("acc", ".1f"),
                     "BWT": cell("bwt", "+.1f"), "training FLOPs vs dense": cell("train_flops_vs_dense", ".3f"),
                     "runs": len(part)})
    out = pd.DataFrame(rows)
    out["_s"] = [float(s.rstrip(" %")) for s in out["sparsity"]]
    out["_b"] = [baseline_order(ORDER + (b,)).index(b) for b in out["baseline"]]
    return out.sort_values(["_s", "_b"]).drop(columns=["_s", "_b"]).set_index(["sparsity", "baseline"])
