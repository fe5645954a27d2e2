"""Choosing a configuration from finished runs: by validation accuracy, never by test accuracy,
unless it is labelled as the oracle (an upper bound, not a method).

``best_by_validation`` ranks the cells of a table (runs that differ only by seed) by their mean
``val_acc``, which exists only for runs with ``val_fraction`` > 0; the test column ``acc`` is
refused as a score. ``oracle_by_test`` ranks by ``acc`` and says so in its label.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from cldst.analysis.summary import cell_stats
from cldst.config import ConfigError

VALIDATION = "val_acc"
TEST = "acc"


def _rank(table: pd.DataFrame, keys: Sequence[str], score: str) -> pd.DataFrame:
    stats = cell_stats(table, keys, score).sort_values("mean", ascending=False, kind="stable")
    return stats.reset_index()


def best_by_validation(table: pd.DataFrame, keys: Sequence[str]) -> pd.Series:
    """The cell (``keys``' values) with the best mean validation accuracy, with its mean and runs."""
    if VALIDATION not in table.columns or table[VALIDATION].isna().any():
        raise ConfigError("choosing by validation needs val_acc in every run: run the grid with val_fraction > 0 "
                          "(the test set never chooses)")
    best = _rank(table, keys, VALIDATION).iloc[0]
    return best.rename({"mean": f"mean {VALIDATION}"})


def oracle_by_test(table: pd.DataFrame, keys: Sequence[str]) -> pd.Series:
    """The cell with the best mean test accuracy: an upper bound (it chose with the test set), labelled so."""
    best = _rank(table, keys, TEST).iloc[0]
    return pd.concat([best.rename({"mean": f"mean {TEST}"}), pd.Series({"label": "oracle (test-picked, upper bound)"})])
