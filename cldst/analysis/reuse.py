"""Results-table summaries of task capacity and reuse (definitions: cldst/method/reuse.py): the mean
reused fraction per cell, the task at which each layer saturates, and the capacity each layer has
used after the last task. They read the JSON columns ``reuse_matrix`` (a run's R),
``layer_saturation`` (layer name → saturation task or null) and ``layer_capacity`` (layer name →
capacity after each task). cldst/plots/reuse.py draws them."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from cldst.analysis.ordering import ordered
from cldst.analysis.summary import by_growth, cell_stats, row_keys
from cldst.config import ConfigError
from cldst.method.reuse import reuse_summary


def need_column(table: pd.DataFrame, column: str) -> None:
    """Raise a ConfigError saying where the column comes from if the table does not have it."""
    if column not in table.columns:
        hint = ("it comes from runs that record reuse (cldst/method/reuse.py), collected with `cldst results DIR`"
                if column in ("reuse_matrix", "layer_saturation") else "make the table with `cldst results DIR`")
        raise ConfigError(f"the results table has no {column!r} column: {hint}")


def _recorded(table: pd.DataFrame, column: str) -> tuple[pd.DataFrame, list]:
    """The rows with a value in the JSON ``column`` (older runs leave it empty), and those values."""
    need_column(table, column)
    rows = table[table[column].notna() & (table[column].astype(str).str.strip() != "")]
    if rows.empty:
        raise ConfigError(f"no run of the results table has a value in its {column!r} column")
    return rows, [json.loads(v) if isinstance(v, str) else v for v in rows[column]]


def mean_reuse_table(table: pd.DataFrame) -> pd.DataFrame:
    """Mean reused fraction (reuse_summary of each run, then the mean over seeds): rows benchmark,
    sparsity (update frequency where it varies) and init, columns growth, as summary.acc_summary."""
    for k in ("reuse_matrix", "sparse_init", "growth", "sparsity"):
        need_column(table, k)
    rows, matrices = _recorded(table, "reuse_matrix")
    rows = rows.assign(reused=[reuse_summary(m) for m in matrices])
    keys = row_keys(rows)
    return by_growth(cell_stats(rows, [*keys, "growth"], "reused")["mean"], keys)


def saturation_table(table: pd.DataFrame) -> pd.DataFrame:
    """Per layer (rows, in the runs' order), the median task (from 1) at which it saturates, for
    each benchmark, init, growth and sparsity (columns); "never" counts as after every task, and a
    median of never is NaN."""
    for k in ("layer_saturation", "sparse_init", "growth", "sparsity"):
        need_column(table, k)
    rows, sats = _recorded(table, "layer_saturation")
    layers = list(dict.fromkeys(n for s in sats for n in s))
    if not layers:
        raise ConfigError("the 'layer_saturation' column of the results table names no layer")
    keys = [k for k in ("benchmark", "sparse_init", "growth", "sparsity") if k in rows.columns]
    long = pd.DataFrame([{**dict(zip(keys, r)), "layer": n, "task": np.inf if s.get(n) is None else s[n] + 1}
                         for r, s in zip(rows[keys].itertuples(index=False), sats) for n in s])
    med = long.groupby([*keys, "layer"])["task"].median().replace(np.inf, np.nan).unstack(keys)
    cols = sorted(med.columns, key=lambda c: tuple(
        ordered(k, rows[k].unique()).index(v) for k, v in zip(keys, c)))
    return med.reindex(index=layers, columns=cols)


def saturation_panels(table: pd.DataFrame) -> dict[str | None, pd.DataFrame]:
    """saturation_table of each benchmark (its own layers), in the table's order; one table under
    None if the table has no benchmark column."""
    need_column(table, "layer_saturation")
    if "benchmark" not in table.columns:
        return {None: saturation_table(table)}
    return {b: saturation_table(table[table["benchmark"] == b]) for b in dict.fromkeys(table["benchmark"])}


def final_capacity_table(table: pd.DataFrame) -> pd.DataFrame:
    """Per layer (rows, by name) and init / growth / sparsity (columns): the fraction of the layer's
    weights owned by some task after the last task, median over seeds."""
    rows, caps = _recorded(table, "layer_capacity")
    keys = [k for k in ("sparse_init", "growth", "sparsity") if k in rows.columns]
    final = pd.DataFrame([{k: r[k] for k in keys} | {name: c[-1] for name, c in cap.items()}
                          for (_, r), cap in zip(rows.iterrows(), caps)])
    layers = list(caps[0])
    return final.groupby(keys)[layers].median().T
