"""DST beside the field's sub-network methods (grids/methods-*-cpu.yaml, docs/methods-study.md): which
method a run is, the comparison table and the per-task curves. Pandas only, no drawing.

A run is one of: a DST cell (a growth rule under its sparse init), static sparse (growth none),
``packnet``, ``supsup``, ``wsn`` (the ``method`` setting) or fine-tuning (isolation false, the
forgetting reference). Runs are compared within a benchmark and a sparsity. DST's best fixed cell is
picked by validation accuracy (cldst/analysis/choice.py), never by test accuracy; fine-tuning is dense
and appears once per benchmark.
"""

from __future__ import annotations

import pandas as pd

from cldst.analysis.choice import best_by_validation
from cldst.analysis.results import is_true, json_column
from cldst.analysis.summary import comparison_text as summary_text
from cldst.analysis.summary import paired_difference, sparsity_text
from cldst.config import ConfigError, is_static

DST_BEST, DST_DEFAULT = "DST, best cell by validation", "DST, ERK gradient (study default)"
LABELS = {"static": "static sparse", "packnet": "PackNet", "supsup": "SupSup", "wsn": "WSN",
          "fine-tuning": "fine-tuning (dense, forgetting reference)"}
ORDER = (DST_BEST, DST_DEFAULT, *LABELS.values())
CELL = ("sparse_init", "growth")


def study_method(row: pd.Series) -> str:
    """dst, static, packnet, supsup, wsn or fine-tuning (see the module's docstring); a table written
    before the ``method`` setting holds DST runs only."""
    method = row.get("method")
    if pd.notna(method) and method != "dst":
        return str(method)
    if "isolation" in row.index and not is_true(row["isolation"]):
        return "fine-tuning"
    if is_static(row["growth"], row["update_frequency"]):
        return "static"
    return "dst"


def with_methods(table: pd.DataFrame) -> pd.DataFrame:
    out = table.copy()
    out["study_method"] = [study_method(r) for _, r in table.iterrows()]
    return out


def _diagonal(runs: pd.DataFrame) -> list[list[float]]:
    """Per run, A[j][j]: the accuracy on task j right after training it."""
    return [[m[j][j] for j in range(len(m))] for m in json_column(runs, "acc_matrix")]


def _row(runs: pd.DataFrame, method: str, configuration: str, reference: pd.DataFrame | None) -> dict:
    diagonals = _diagonal(runs)
    row = {"method": method, "configuration": configuration, "seeds": len(runs),
           "ACC": runs["acc"].mean(), "ACC std": runs["acc"].std(), "BWT": runs["bwt"].mean(),
           "capacity after last task": runs["capacity_final"].mean(),
           "training FLOPs vs dense": runs["train_flops_vs_dense"].mean(),
           "mean A[j][j]": sum(sum(d) / len(d) for d in diagonals) / len(diagonals),
           "min A[j][j]": min(min(d) for d in diagonals)}
    if reference is not None:  # paired by seed with DST's default cell
        row["Δ ACC vs DST default"] = paired_difference(runs, reference)
    return row


def _dst_configuration(run: pd.Series) -> str:
    return f"{run['sparse_init']} {run['growth']}"


def labelled_runs(table: pd.DataFrame) -> pd.DataFrame:
    """Every run the comparison uses, with its ``label`` (a row of ``comparison``) and ``sparsity``
    text ("dense" for fine-tuning); a DST run is labelled by the cell it belongs to, and the best
    cell by validation appears twice where it is also the default."""
    t = with_methods(table)
    parts = []
    for (_, sparsity), group in t.groupby(["benchmark", "sparsity"], sort=True):
        group = group.assign(sparsity_text="dense" if sparsity == 0 else sparsity_text(sparsity))
        dst = group[group["study_method"] == "dst"]
        if len(dst):
            best = best_by_validation(dst, CELL)
            picked = (dst["sparse_init"] == best["sparse_init"]) & (dst["growth"] == best["growth"])
            default = (dst["sparse_init"] == "ERK") & (dst["growth"] == "gradient")
            parts += [dst[picked].assign(label=DST_BEST), dst[default].assign(label=DST_DEFAULT)]
        parts += [group[group["study_method"] == method].assign(label=label) for method, label in LABELS.items()]
    if not parts:
        raise ConfigError("the table has no runs")
    return pd.concat(parts, ignore_index=True)


def comparison(table: pd.DataFrame) -> pd.DataFrame:
    """Per benchmark and sparsity, a row per method (ORDER): mean over seeds of ACC, BWT, capacity
    after the last task, training FLOPs vs dense and A[j][j] (mean and the lowest of any task and
    seed), and the mean difference in ACC to DST's default cell, paired by seed."""
    if "train_flops_vs_dense" not in table.columns or table["train_flops_vs_dense"].isna().any():
        raise ConfigError("the table has runs without training FLOPs (train_flops_vs_dense): rerun them")
    runs = labelled_runs(table)
    rows = []
    for (bench, _), group in runs.groupby(["benchmark", "sparsity"], sort=True):
        reference = group[group["label"] == DST_DEFAULT]
        reference = reference if len(reference) else None
        for label in ORDER:
            part = group[group["label"] == label]
            if len(part):
                config = _dst_configuration(part.iloc[0]) if label == DST_BEST else ""
                rows.append({"benchmark": bench, "sparsity": part["sparsity_text"].iloc[0],
                             **_row(part, label, config, reference)})
    return pd.DataFrame(rows)


def comparison_text(summary: pd.DataFrame) -> pd.DataFrame:
    """The comparison as printed (cldst/analysis/summary.py's comparison_text)."""
    return summary_text(summary, ["mean A[j][j]", "min A[j][j]"], "Δ ACC vs DST default")


def per_task(table: pd.DataFrame) -> pd.DataFrame:
    """A row per benchmark, sparsity, method and task: A[j][j] and the capacity after the task,
    mean over seeds."""
    runs = labelled_runs(table)
    rows = []
    for (_, run), diagonal, capacity in zip(runs.iterrows(), _diagonal(runs), json_column(runs, "capacity"),
                                            strict=True):
        for task, (a, c) in enumerate(zip(diagonal, capacity, strict=True)):
            rows.append({"benchmark": run["benchmark"], "sparsity": run["sparsity_text"], "method": run["label"],
                         "task": task + 1, "A[j][j]": a, "capacity": c})
    keys = ["benchmark", "sparsity", "method", "task"]
    return pd.DataFrame(rows).groupby(keys, sort=False).mean().reset_index()


def diagonal_table(tasks: pd.DataFrame) -> pd.DataFrame:
    """``per_task`` of one benchmark as a table to read: A[j][j] (%, one decimal), a row per sparsity
    and method, a column per task."""
    wide = tasks.pivot_table(index=["sparsity", "method"], columns="task", values="A[j][j]", sort=False)
    return wide.round(1)


def diagonal_text(tasks: pd.DataFrame) -> str:
    """``diagonal_table`` of each benchmark, under its name."""
    return "\n\n".join(f"{bench}\n{diagonal_table(part).to_string()}"
                       for bench, part in tasks.groupby("benchmark", sort=False))
