"""Summary tables of the results table: the statistics of a cell's runs (mean, std, number of runs)
and their text ("91.00 ± 1.41"), the one pivot of every summary table (rows benchmark, sparsity,
update frequency where it varies and sparse init; a column per growth rule), the final-ACC
summary, and a text overview of what a table holds. Pandas only, no drawing."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from cldst.analysis.ordering import CONFIG_ORDER, ordered

OVERVIEW_SETTINGS = ("benchmark", "sparse_init", "growth", "sparsity", "update_frequency", "seed")


def sparsity_text(sparsity: float) -> str:
    """A sparsity (a fraction) as the tables and figures show it: ``0.8`` → ``"80 %"``."""
    return f"{100 * sparsity:g} %"


def overview_text(table: pd.DataFrame) -> str:
    """The number of runs and, a line each, the values of the settings the figures use."""
    lines = [f"{len(table)} runs"]
    for name in OVERVIEW_SETTINGS:
        values = ordered(name, table[name].unique())
        shown = [sparsity_text(v) if name == "sparsity" else str(v) for v in values]
        lines.append(f"{name}: {', '.join(shown)}")
    return "\n".join(lines)


# ---------------------------------------------------------------------- the runs of a cell
def cell_stats(table: pd.DataFrame, keys: Sequence[str], value: str = "acc") -> pd.DataFrame:
    """Per group of ``keys`` (a cell: the runs differ by seed), the ``mean``, ``std`` and ``size``
    (number of runs) of the column ``value``."""
    return table.groupby(list(keys))[value].agg(["mean", "std", "size"])


def mean_std_text(mean: float, std: float, runs: float, spec: str = ".2f", sep: str = " ") -> str:
    """``"mean"`` for a single run (or no std), ``"mean ± std"`` otherwise (std without the sign
    that ``spec`` may ask for), ``""`` where there is no mean."""
    if pd.isna(mean):
        return ""
    if not runs >= 2 or pd.isna(std):
        return format(mean, spec)
    return f"{format(mean, spec)}{sep}± {format(std, spec.lstrip('+'))}"


def spread_note(table: pd.DataFrame, keys: Sequence[str]) -> str:
    """How many runs make a point of ``keys``: "one run per point", "mean ± std over 3 seeds"."""
    counts = table.groupby(list(keys)).size()
    if counts.max() == 1:
        return "one run per point"
    return f"mean ± std over {counts.min()}–{counts.max()} seeds" if counts.min() != counts.max() \
        else f"mean ± std over {counts.max()} seeds"


# ---------------------------------------------------------------------- the summary pivot
def row_keys(table: pd.DataFrame) -> list[str]:
    """The rows of a summary table: benchmark, sparsity, the update frequency where it varies, and
    sparse init (those the table has)."""
    keys = [k for k in ("benchmark", "sparsity", "sparse_init") if k in table.columns]
    if "update_frequency" in table.columns and table["update_frequency"].nunique() > 1:
        keys.insert(keys.index("sparse_init") if "sparse_init" in keys else len(keys), "update_frequency")
    return keys


def by_growth(cells: pd.Series, keys: Sequence[str]) -> pd.DataFrame:
    """``cells`` indexed by (*keys, growth) as a table: a row per ``keys`` (sparse init last, in the
    config's order), a column per growth rule (in the config's order); sparsity shown in percent,
    the index levels named with spaces ("sparse init"). Cells without a value are NaN."""
    out = cells.unstack("growth")
    out = out.reindex(columns=ordered("growth", out.columns))
    inits = CONFIG_ORDER["sparse_init"]
    rank = {name: k for k, name in enumerate(inits)}
    out = out.reindex(sorted(out.index, key=lambda r: (*r[:-1], rank.get(r[-1], len(inits)))))
    out.index = pd.MultiIndex.from_tuples(
        [tuple(sparsity_text(v) if k == "sparsity" else v for k, v in zip(keys, row)) for row in out.index],
        names=[k.replace("_", " ") for k in keys])
    return out


def growth_grid(stats: pd.DataFrame, inits: Sequence[str], growths: Sequence[str],
                spec: str = ".1f") -> tuple[pd.DataFrame, pd.DataFrame]:
    """From cell_stats indexed by (sparse_init, growth): the means as a grid (a row per init, a
    column per growth rule, NaN where no run) and their labels, "mean\\n± std" (mean_std_text)."""
    mean = stats["mean"].unstack("growth").reindex(index=list(inits), columns=list(growths))
    std = stats["std"].unstack("growth").reindex_like(mean)
    size = stats["size"].unstack("growth").reindex_like(mean)
    labels = pd.DataFrame([[mean_std_text(m, s, n, spec, sep="\n") for m, s, n in zip(*rows)]
                           for rows in zip(mean.to_numpy(), std.to_numpy(), size.to_numpy())],
                          index=mean.index, columns=mean.columns)
    return mean, labels


def acc_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Final ACC (%): rows benchmark, sparsity (update frequency where it varies) and init, columns
    growth; mean ± std over seeds where a cell has several runs."""
    keys = row_keys(table)
    stats = cell_stats(table, [*keys, "growth"])
    cells = pd.Series([mean_std_text(m, s, n) for m, s, n in zip(stats["mean"], stats["std"], stats["size"])],
                      index=stats.index)
    return by_growth(cells, keys).fillna("")


def paired_difference(runs: pd.DataFrame, reference: pd.DataFrame, value: str = "acc") -> float:
    """Mean of ``value``'s difference to ``reference``, paired by seed (seeds in both only)."""
    return (runs.set_index("seed")[value] - reference.set_index("seed")[value]).dropna().mean()


def comparison_text(summary: pd.DataFrame, one_decimal: Sequence[str], delta: str) -> pd.DataFrame:
    """A study's comparison as printed: ACC as mean ± std and ``one_decimal`` columns to one decimal,
    BWT and the ``delta`` column signed (blank where there is none), FLOPs and capacity as fractions."""
    out = summary.copy()
    out["ACC"] = [f"{m:.1f} ± {s:.1f}" if pd.notna(s) else f"{m:.1f}" for m, s in zip(out["ACC"], out["ACC std"])]
    out["BWT"] = out["BWT"].map(lambda v: f"{v:+.1f}")
    for name in ("training FLOPs vs dense", "capacity after last task"):
        out[name] = out[name].map(lambda v: f"{v:.3f}")
    for name in one_decimal:
        out[name] = out[name].map(lambda v: f"{v:.1f}")
    if delta in out.columns:
        out[delta] = out[delta].map(lambda v: "" if pd.isna(v) else f"{v:+.1f}")
    return out.drop(columns=["ACC std"])
