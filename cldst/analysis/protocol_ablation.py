"""What each reference-protocol quirk costs: the clean protocol, the reference protocol, and the
reference protocol with one quirk turned off at a time (grids/protocol-ablation.yaml): each run's
variant and a table of final ACC and BWT per variant (docs/reference-protocol.md describes the
quirks). cldst/plots/protocol_ablation.py draws ACC per variant.
"""

from __future__ import annotations

import pandas as pd

from cldst.analysis.ordering import ordered
from cldst.analysis.results import is_true
from cldst.analysis.summary import cell_stats, mean_std_text
from cldst.config import QUIRKS, ConfigError

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


def variant_order(names) -> list[str]:
    """Clean, reference, then the variants with one quirk off, by name."""
    head = [v for v in ("clean", "reference") if v in names]
    return head + sorted(v for v in names if v not in head)


def ablation_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per variant (rows) and init / growth cell: ACC and BWT, mean ± std over seeds, then the mean
    ACC over cells and its change from the reference protocol (points)."""
    t = with_variants(table)
    acc, bwt = (cell_stats(t, ["variant", *CELL], value) for value in ("acc", "bwt"))
    cells = [(i, g) for i in ordered("sparse_init", t["sparse_init"].unique())
             for g in ordered("growth", t["growth"].unique())]
    rows = {}
    for name in variant_order(t["variant"].unique()):
        row = {}
        for i, g in cells:
            a, b = acc.loc[(name, i, g)], bwt.loc[(name, i, g)]
            row[f"{i} / {g} ACC"] = mean_std_text(a["mean"], a["std"], a["size"], ".1f")
            row[f"{i} / {g} BWT"] = f"{b['mean']:+.1f}"
        row["mean ACC"] = acc.loc[name]["mean"].mean()
        rows[name] = row
    out = pd.DataFrame.from_dict(rows, orient="index")
    if "reference" in out.index:
        out["Δ ACC vs reference"] = out["mean ACC"] - out.loc["reference", "mean ACC"]
    out.index.name = "variant"
    return out
