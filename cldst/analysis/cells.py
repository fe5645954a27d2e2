"""A cell of the results table, the runs that differ only by seed, and one run picked from a table
(the median run of a cell by ACC, the best, or a run id): figure 5 of figures.ipynb draws its
accuracy matrix."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cldst.analysis.ordering import ordered
from cldst.config import ConfigError

CELL_KEYS = ("benchmark", "sparse_init", "growth", "sparsity", "update_frequency")  # a cell: all but the seed


DEFAULT_CELL = {"sparse_init": "ERK", "growth": "momentum", "sparsity": 0.8}  # the presets' method, 80 %


def select_cell(table: pd.DataFrame, cell: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """The runs of one cell of the table: the rows matching ``cell`` (column: value; numbers match
    to 1e-9). Every setting of CELL_KEYS that ``cell`` leaves out and that still varies takes the
    value with the most runs (on a tie, the first in order), so the runs differ only by seed
    (and settings outside CELL_KEYS that ``cell`` does not name)."""
    cell = dict(DEFAULT_CELL if cell is None else cell)
    rows = table
    for key, want in cell.items():
        if key not in table.columns:
            raise ConfigError(f"cell setting {key!r} is not a column of the results table: use one of "
                              f"{', '.join(CELL_KEYS)} (or another column)")
        column = rows[key]
        if pd.api.types.is_numeric_dtype(column) and isinstance(want, (int, float)) and not isinstance(want, bool):
            match = np.isclose(column.astype(float), float(want), rtol=0, atol=1e-9)
        else:
            match = column.astype(str) == str(want)
        if not match.any():
            values = ", ".join(str(v) for v in ordered(key, table[key].unique()))
            raise ConfigError(f"no run with {_cell_text(cell)} in the results table "
                              f"({key} there: {values})")
        rows = rows[match]
    for key in CELL_KEYS:
        if key in cell or key not in rows.columns:
            continue
        counts = rows[key].value_counts()
        top = [v for v in ordered(key, counts.index) if counts[v] == counts.max()]
        rows = rows[rows[key] == top[0]]
    return rows


def _cell_text(cell: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in cell.items())


def pick_run(table: pd.DataFrame, which: str = "median", cell: Mapping[str, Any] | None = None) -> pd.Series:
    """A row of the table: ``"median"``, the median run by ACC of ``cell`` (see select_cell; default
    DEFAULT_CELL; with an even number of runs, the lower of the two middle ones), or a run id, or a
    run directory ending in one (then ``cell`` is not used). ``"best"``, the run with the highest
    ACC of the whole table, is still allowed, but it is not a typical run."""
    if which == "median":
        runs = select_cell(table, cell).sort_values(["acc", "run_id"], ignore_index=True)
        run = runs.iloc[(len(runs) - 1) // 2].copy()
        run["cell_runs"] = len(runs)
        return run
    if which == "best":
        run = table.sort_values(["acc", "run_id"], ascending=[False, True]).iloc[0].copy()
        run["table_runs"] = len(table)
        return run
    name = Path(str(which).rstrip("/")).name
    found = table[(table["run_id"] == name) | (table["run_dir"].astype(str) == str(which))]
    if found.empty:
        raise ConfigError(f"run_dir={which!r} is not in the results table: give a run id from its run_id column, "
                          f"or 'median' (the median run by ACC of a cell)")
    return found.iloc[0]
