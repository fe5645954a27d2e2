"""Was every task learned? The accuracy of each task right after training it (the diagonal of the
accuracy matrix, %), each run's lowest one, chance level, and their summary table (figure 6 of
figures.ipynb draws them: cldst/plots/study.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from cldst.analysis.cells import CELL_KEYS
from cldst.analysis.results import json_column
from cldst.analysis.summary import by_growth, row_keys


def chance_level(run: Mapping[str, Any]) -> float | None:
    """Accuracy (%) of a uniform guess on one task: 1 / its classes (1 / all classes when the
    argmax is over all classes); None if the table does not have the class counts."""
    all_classes = bool(run.get("eval_all_classes")) if pd.notna(run.get("eval_all_classes", np.nan)) else False
    classes = run.get("num_classes" if all_classes else "num_classes_per_task")
    if classes is None or pd.isna(classes) or classes <= 0:
        return None
    return 100.0 / float(classes)


def diagonal_accuracy(table: pd.DataFrame) -> pd.DataFrame:
    """One row per run and task j: ``task_acc`` = A[j][j], the accuracy (%) on task j right after
    training it, with the run's settings and ``chance`` (see chance_level)."""
    keep = [c for c in ("run_id", *CELL_KEYS, "seed") if c in table.columns]
    rows = []
    for (_, run), matrix in zip(table.iterrows(), json_column(table, "acc_matrix")):
        for j, row in enumerate(matrix):
            if j < len(row) and row[j] is not None:
                rows.append({**{k: run[k] for k in keep}, "task": j + 1, "task_acc": float(row[j]),
                             "chance": chance_level(run)})
    return pd.DataFrame(rows)


def every_task_learned(table: pd.DataFrame) -> pd.DataFrame:
    """One row per run: ``min_task_acc`` = min_j A[j][j], the accuracy of its worst-learned task right
    after training it, ``worst_task`` (that j, from 1), and ``chance``; sorted from the lowest."""
    diag = diagonal_accuracy(table)
    worst = diag.loc[diag.groupby("run_id", sort=False)["task_acc"].idxmin()]
    out = worst.rename(columns={"task_acc": "min_task_acc", "task": "worst_task"})
    return out.sort_values(["min_task_acc", "run_id"], ignore_index=True)


def tasks_learned_summary(table: pd.DataFrame) -> pd.DataFrame:
    """The lowest A[j][j] (%) of any task of any run, per benchmark, sparsity (update frequency where
    it varies) and init (rows) and growth rule (columns), with the task: "61.5 (task 4)"."""
    worst = every_task_learned(table)
    keys = row_keys(worst)
    low = worst.loc[worst.groupby([*keys, "growth"])["min_task_acc"].idxmin()]
    cells = pd.Series([f"{v:.1f} (task {t})" for v, t in zip(low["min_task_acc"], low["worst_task"])],
                      index=pd.MultiIndex.from_frame(low[[*keys, "growth"]]))
    return by_growth(cells, keys).fillna("")
