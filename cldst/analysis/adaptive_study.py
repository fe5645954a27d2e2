"""Adaptive DST against fixed choices (grids/adaptive-tinyimagenet-cpu.yaml): the comparison table and
the per-task choices. Pandas only, no drawing.

Each run is one of: a fixed cell (one init, growth rule and density), ``adaptive`` (each task
chooses its init × growth on validation images), ``bandit`` (growth chosen at every topology
update) or ``budget`` (each task chooses its density under a capacity budget). Runs are compared
within a benchmark and a nominal sparsity (1 − the densest candidate). The best fixed cell is picked
by validation (cldst/analysis/choice.py), and, as an upper bound labelled so, by test accuracy.
"""

from __future__ import annotations

import json

import pandas as pd

from cldst.analysis.choice import best_by_validation, oracle_by_test
from cldst.analysis.summary import comparison_text as summary_text
from cldst.analysis.summary import paired_difference, sparsity_text

KIND_LABELS = {"adaptive": "adaptive init × growth", "bandit": "growth bandit", "budget": "density under a budget"}
CELL = ("sparse_init", "growth")


def run_kind(row: pd.Series) -> str:
    """fixed, adaptive, bandit or budget (see the module's docstring)."""
    budget = row.get("capacity_budget", 0.0)
    if pd.notna(budget) and float(budget) > 0:
        return "budget"
    if row["growth"] == "bandit":
        return "bandit"
    if "|" in str(row["sparse_init"]) or "|" in str(row["growth"]) or "|" in str(row["density"]):
        return "adaptive"
    return "fixed"


def nominal_sparsity(density) -> float:
    """1 − the densest candidate: a density list such as ``0.05|0.025`` is nominally sparsity 95 %."""
    values = [float(d) for d in str(density).split("|")]
    return round(1.0 - max(values), 10)


def with_kinds(table: pd.DataFrame) -> pd.DataFrame:
    out = table.copy()
    out["kind"] = [run_kind(r) for _, r in table.iterrows()]
    out["nominal_sparsity"] = [nominal_sparsity(d) for d in table["density"]]
    return out


def _row(runs: pd.DataFrame, method: str, configuration: str, picked: pd.DataFrame | None) -> dict:
    row = {"method": method, "configuration": configuration, "seeds": len(runs),
           "ACC": runs["acc"].mean(), "ACC std": runs["acc"].std(), "BWT": runs["bwt"].mean(),
           "training FLOPs vs dense": runs["train_flops_vs_dense"].mean(),
           "capacity after last task": runs["capacity_final"].mean(), "val ACC": runs["val_acc"].mean()}
    if picked is not None:  # paired by seed with the validation-picked cell
        row["Δ ACC vs val-picked"] = paired_difference(runs, picked)
    return row


def comparison(table: pd.DataFrame) -> pd.DataFrame:
    """Per benchmark and nominal sparsity: the fixed cell picked by validation, the oracle (test-picked,
    an upper bound), ERK + gradient (the study's default and the budget's reference), and each
    adaptive kind; mean over seeds, and the mean paired difference to the validation-picked cell."""
    table = with_kinds(table)
    rows = []
    for (bench, sparsity), group in table.groupby(["benchmark", "nominal_sparsity"], sort=True):
        fixed = group[group["kind"] == "fixed"]
        cells = fixed.groupby(list(CELL)).size()
        picked = None
        head = {"benchmark": bench, "sparsity": sparsity_text(sparsity)}
        if len(cells) > 1:
            best = best_by_validation(fixed, CELL)
            picked = fixed[(fixed["sparse_init"] == best["sparse_init"]) & (fixed["growth"] == best["growth"])]
            oracle = oracle_by_test(fixed, CELL)
            top = fixed[(fixed["sparse_init"] == oracle["sparse_init"]) & (fixed["growth"] == oracle["growth"])]
            rows.append({**head, **_row(picked, "best fixed, picked by validation",
                                        f"{best['sparse_init']} {best['growth']}", picked)})
            rows.append({**head, **_row(top, "oracle: best fixed by test (upper bound)",
                                        f"{oracle['sparse_init']} {oracle['growth']}", picked)})
        default = fixed[(fixed["sparse_init"] == "ERK") & (fixed["growth"] == "gradient")]
        if len(default):
            picked = default if picked is None else picked
            rows.append({**head, **_row(default, "fixed ERK gradient (study default)", "ERK gradient", picked)})
        for kind, label in KIND_LABELS.items():
            runs = group[group["kind"] == kind]
            if len(runs):
                rows.append({**head, **_row(runs, label, _configuration(runs.iloc[0], kind), picked)})
    return pd.DataFrame(rows)


def _configuration(run: pd.Series, kind: str) -> str:
    """What a run that chooses chooses among, in a few words."""
    if kind == "adaptive":
        n = 1
        for name in ("sparse_init", "growth", "density"):
            n *= len(str(run[name]).split("|"))
        return f"{n} candidates"
    if kind == "budget":
        return f"{run['sparse_init']} {run['growth']}, density {run['density']}, {run['capacity_budget']:g} point"
    return f"{run['sparse_init']} {run['growth']}"


def comparison_text(summary: pd.DataFrame) -> pd.DataFrame:
    """The comparison as printed (cldst/analysis/summary.py's comparison_text)."""
    return summary_text(summary, ["val ACC"], "Δ ACC vs val-picked")


def choice_counts(table: pd.DataFrame) -> pd.DataFrame:
    """For the runs that chose per task: how often each configuration was chosen, over tasks and
    seeds, per benchmark, kind and nominal sparsity."""
    table = with_kinds(table)
    rows = []
    for _, run in table[table["chosen_init"].notna()].iterrows():
        chosen = zip(*(json.loads(run[c]) for c in ("chosen_init", "chosen_growth", "chosen_density")))
        for task, (init, growth, density) in enumerate(chosen):
            rows.append({"benchmark": run["benchmark"], "method": KIND_LABELS[run["kind"]],
                         "sparsity": sparsity_text(run["nominal_sparsity"]), "task": task + 1,
                         "chosen": f"{init} {growth} {density:g}"})
    if not rows:
        return pd.DataFrame()
    counts = pd.DataFrame(rows).groupby(["benchmark", "method", "sparsity", "chosen"]).size()
    return counts.rename("tasks").reset_index()


def bandit_shares(table: pd.DataFrame) -> pd.DataFrame:
    """For the growth bandit's runs: the share (%) of all topology updates at which it picked each
    rule, per benchmark and nominal sparsity, over seeds."""
    table = with_kinds(table)
    runs = table[(table["kind"] == "bandit") & table["bandit_rules"].notna()] if "bandit_rules" in table else table.iloc[0:0]
    rows = [{"benchmark": r["benchmark"], "sparsity": sparsity_text(r["nominal_sparsity"]), **json.loads(r["bandit_rules"])}
            for _, r in runs.iterrows()]
    if not rows:
        return pd.DataFrame()
    counts = pd.DataFrame(rows).fillna(0).groupby(["benchmark", "sparsity"]).sum()
    return (100 * counts.div(counts.sum(axis=1), axis=0)).round(1).reset_index()
