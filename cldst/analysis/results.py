"""The results table: every finished run under a folder, one row each, for plotting.

Columns: ``run_id``, ``run_dir`` (relative to the folder), ``benchmark`` ("split-mnist, 5 tasks"),
every ExperimentConfig field, ``sparsity`` = 1 − density, the metrics ``acc``, ``bwt``,
``forgetting`` (%), ``capacity_final`` (fraction of weights owned after the last task),
``dead_tasks`` (JSON list of tasks that could not learn),
``total_seconds``, ``images_per_s`` (mean over tasks), ``ran_on`` (the device used), the JSON
strings ``acc_matrix`` (T×T, %, null where not measured) and ``capacity`` (per task), and the code
that finished the run: ``cldst_version``, ``git_commit``, ``git_dirty`` (empty for runs written
before cldst recorded them, and the git ones outside a git checkout; see cldst/runner/provenance.py).

The summary tables drawn from it are in cldst/analysis/summary.py.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import fields
from pathlib import Path

import numpy as np
import pandas as pd

from cldst.config import ConfigError, ExperimentConfig
from cldst.config.candidates import cell_text
from cldst.runner.provenance import KEYS as PROVENANCE_COLUMNS
from cldst.runner.run_dir import METRICS

CONFIG_COLUMNS = [f.name for f in fields(ExperimentConfig)]
METRIC_COLUMNS = ["sparsity", "acc", "bwt", "forgetting", "capacity_final", "dead_tasks", "total_seconds",
                  "images_per_s", "ran_on", "acc_matrix", "capacity", "train_flops_vs_dense",
                  "inference_flops_vs_dense", "reuse_mean", "reuse_matrix", "layer_capacity", "layer_saturation",
                  "val_acc", "val_acc_matrix", "chosen_init", "chosen_growth", "chosen_density",
                  "bandit_rules", *PROVENANCE_COLUMNS]


def benchmark_name(dataset: str, num_tasks: int) -> str:
    return f"{dataset}, {int(num_tasks)} tasks"


def result_row(metrics: dict, run_dir: str) -> dict:
    cfg = metrics["config"]
    return {
        "run_id": metrics["run_id"],
        "run_dir": run_dir,
        "benchmark": benchmark_name(cfg["dataset"], cfg["num_tasks"]),
        **{name: cell_text(cfg.get(name)) for name in CONFIG_COLUMNS},
        "data_dir": _portable(cfg.get("data_dir")),
        "sparsity": round(1.0 - cfg["density"], 10) if not isinstance(cfg["density"], list) else None,
        "acc": metrics["acc"],
        "bwt": metrics["bwt"],
        "forgetting": metrics["forgetting"],
        "capacity_final": metrics["capacity"][-1],
        "dead_tasks": json.dumps(metrics.get("dead_tasks", [])),
        "total_seconds": metrics["total_seconds"],
        "images_per_s": float(np.mean(metrics["images_per_s"])),
        "ran_on": metrics.get("device"),
        "acc_matrix": json.dumps(metrics["acc_matrix"]),
        "capacity": json.dumps(metrics["capacity"]),
        **_flops_columns(metrics.get("flops")),
        "reuse_mean": metrics.get("reuse_mean"),
        "reuse_matrix": json.dumps(metrics["reuse_matrix"]) if "reuse_matrix" in metrics else None,
        "layer_capacity": json.dumps(metrics["layer_capacity"]) if "layer_capacity" in metrics else None,
        "layer_saturation": json.dumps(metrics["layer_saturation"]) if "layer_saturation" in metrics else None,
        # val_fraction > 0: ACC on the validation images, what a choice between runs may read
        "val_acc": metrics.get("val_acc"),
        "val_acc_matrix": json.dumps(metrics["val_acc_matrix"]) if "val_acc_matrix" in metrics else None,
        # candidates: what each task chose, in task order
        **_chosen_columns(metrics.get("choices")),
        "bandit_rules": _bandit_rules(metrics.get("growth_choices")),
        **{name: metrics.get(name) for name in PROVENANCE_COLUMNS},
    }


def _chosen_columns(choices: list[dict] | None) -> dict[str, str | None]:
    """Per task, the chosen sparse_init, growth and density (JSON lists); None without candidates."""
    names = {"chosen_init": "sparse_init", "chosen_growth": "growth", "chosen_density": "density"}
    if not choices:
        return dict.fromkeys(names)
    ordered = sorted(choices, key=lambda c: c["task"])
    return {column: json.dumps([c["chosen"][key] for c in ordered]) for column, key in names.items()}


def _bandit_rules(growth_choices: list[list[dict]] | None) -> str | None:
    """The growth bandit's picks over the run, as JSON: {rule: number of topology updates}."""
    if not growth_choices:
        return None
    counts = Counter(update["rule"] for task in growth_choices for update in task)
    return json.dumps(dict(sorted(counts.items())))


def _flops_columns(flops: list[dict] | None) -> dict[str, float | None]:
    """The run's training MACs over dense training's (all tasks), and the tasks' mean inference
    MACs over the dense network's; None for runs written before cldst counted them."""
    if not flops:
        return {"train_flops_vs_dense": None, "inference_flops_vs_dense": None}
    dense_train = sum(f["train_macs"] / f["train_vs_dense"] for f in flops)
    return {"train_flops_vs_dense": sum(f["train_macs"] for f in flops) / dense_train,
            "inference_flops_vs_dense": float(np.mean([f["inference_vs_dense"] for f in flops]))}


def _portable(data_dir: str | None) -> str | None:
    """A sweep gives runs an absolute data_dir; under the current folder it is written relative, so
    a committed table holds no machine's path (data_dir never changes what a run computes)."""
    if not data_dir or not Path(data_dir).is_absolute():
        return data_dir
    try:
        return str(Path(data_dir).relative_to(Path.cwd()))
    except ValueError:
        return data_dir


def collect_results(root: str | Path) -> pd.DataFrame:
    """One row per metrics.json under ``root`` (at any depth), sorted by run id."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"{str(root)!r} is not a folder")
    rows = []
    for path in sorted(root.rglob(METRICS)):
        try:
            metrics = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise ConfigError(f"cannot read {path}: {e}") from None
        rows.append(result_row(metrics, str(path.parent.relative_to(root))))
    if not rows:
        raise ConfigError(f"no finished runs (metrics.json) under {str(root)!r}")
    columns = ["run_id", "run_dir", "benchmark", *CONFIG_COLUMNS, *METRIC_COLUMNS]
    return pd.DataFrame(rows, columns=columns).sort_values("run_id", ignore_index=True)


def write_results(table: pd.DataFrame, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False)
    return path


def read_results(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"results table {str(path)!r} does not exist: make it with `cldst results DIR`")
    return pd.read_csv(path)


def is_true(value) -> bool:
    """A boolean setting read back from a table: a bool, or its text ("True", "true")."""
    return value is True or str(value).lower() == "true"


def json_column(table: pd.DataFrame, name: str) -> list:
    """Decode a JSON-string column (``acc_matrix``, ``capacity``)."""
    return [json.loads(v) for v in table[name]]


def at_main_update_frequency(table: pd.DataFrame) -> tuple[pd.DataFrame, int | None]:
    """The runs at the most common update frequency (the smallest on a tie), so that figures about
    other settings do not mix frequencies; and that frequency, or None if the table has only one."""
    counts = table["update_frequency"].value_counts()
    if len(counts) == 1:
        return table, None
    main = int(min(f for f, c in counts.items() if c == counts.max()))
    return table[table["update_frequency"] == main], main

