"""The results table from run folders, its ordering and summary pivot, and the choice of run for
figure 5."""

from __future__ import annotations

import json
from dataclasses import fields

import numpy as np
import pandas as pd
import pytest

from cldst.analysis.cells import pick_run
from cldst.analysis.ordering import ordered
from cldst.analysis.results import collect_results, json_column
from cldst.analysis.summary import acc_summary, cell_stats, growth_grid, mean_std_text, overview_text
from cldst.config import ConfigError, ExperimentConfig


def write_run(root, name, density, seed, acc, **config):
    cfg = ExperimentConfig(density=density, seed=seed, **config)
    run = root / name
    run.mkdir(parents=True)
    matrix = [[acc, None], [acc, acc]]
    metrics = {"run_id": cfg.run_id(), "status": "finished", "acc_matrix": matrix, "acc": acc, "bwt": 0.0,
               "forgetting": 0.0, "capacity": [density, 1.5 * density], "layer_density": {},
               "task_seconds": [1.0, 2.0], "images_per_s": [100.0, 300.0], "total_seconds": 3.0,
               "device": "cpu", "config": cfg.to_dict()}
    (run / "metrics.json").write_text(json.dumps(metrics))
    return cfg


def test_collect_results(tmp_path):
    a = write_run(tmp_path, "a", 0.2, 0, 90.0, num_tasks=2, num_classes=4)
    write_run(tmp_path, "nested/b", 0.05, 1, 80.0, num_tasks=2, num_classes=4)
    (tmp_path / "unfinished").mkdir()
    (tmp_path / "unfinished" / "config.json").write_text("{}")
    table = collect_results(tmp_path)
    assert len(table) == 2
    assert {f.name for f in fields(ExperimentConfig)} <= set(table.columns)
    row = table[table["run_id"] == a.run_id()].iloc[0]
    assert row["run_dir"] == "a" and row["benchmark"] == "split-mnist, 2 tasks"
    assert row["sparsity"] == pytest.approx(0.8) and row["acc"] == 90.0 and row["capacity_final"] == pytest.approx(0.3)
    assert row["total_seconds"] == 3.0 and row["images_per_s"] == 200.0 and row["ran_on"] == "cpu"
    assert json_column(table[table["run_id"] == a.run_id()], "acc_matrix") == [[[90.0, None], [90.0, 90.0]]]
    assert set(table["run_dir"]) == {"a", "nested/b"}
    assert "sparsity: 80 %, 95 %" in overview_text(table)
    summary = acc_summary(table)
    assert summary.loc[("split-mnist, 2 tasks", "80 %", "ERK"), "gradient"] == "90.00"


def test_results_record_the_code(tmp_path):
    a = write_run(tmp_path, "a", 0.2, 0, 90.0, num_tasks=2, num_classes=4)
    version = {"cldst_version": "0.1.0", "git_commit": "0123456789abcdef0123456789abcdef01234567", "git_dirty": True}
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    (tmp_path / "a" / "metrics.json").write_text(json.dumps({**metrics, **version}))
    write_run(tmp_path, "old", 0.05, 0, 80.0, num_tasks=2, num_classes=4)  # written before cldst recorded it
    table = collect_results(tmp_path)
    assert list(table.columns[-3:]) == ["cldst_version", "git_commit", "git_dirty"]
    row = table[table["run_id"] == a.run_id()].iloc[0]
    assert (row["cldst_version"], row["git_commit"], row["git_dirty"]) == tuple(version.values())
    assert table[table["run_id"] != a.run_id()][["cldst_version", "git_commit", "git_dirty"]].isna().all(axis=None)


def test_summary_with_seeds(tmp_path):
    for seed, acc in enumerate((90.0, 92.0)):
        write_run(tmp_path, f"r{seed}", 0.2, seed, acc, num_tasks=2, num_classes=4)
    summary = acc_summary(collect_results(tmp_path))
    assert summary.loc[("split-mnist, 2 tasks", "80 %", "ERK"), "gradient"] == "91.00 ± 1.41"


def test_no_runs_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="no finished runs"):
        collect_results(tmp_path)


def test_cli_results(tmp_path, capsys):
    from cldst.cli import main

    write_run(tmp_path, "a", 0.2, 0, 90.0, num_tasks=2, num_classes=4)
    assert main(["results", str(tmp_path)]) == 0
    assert (tmp_path / "results.csv").is_file() and "1 runs" in capsys.readouterr().out
    assert main(["results", str(tmp_path / "missing")]) == 2


def test_pick_run(tmp_path):
    a = write_run(tmp_path, "a", 0.2, 0, 90.0, num_tasks=2, num_classes=4)
    b = write_run(tmp_path, "b", 0.05, 0, 95.0, num_tasks=2, num_classes=4)
    table = collect_results(tmp_path)
    assert pick_run(table, "best")["run_id"] == b.run_id()
    assert pick_run(table, a.run_id())["run_id"] == a.run_id()
    assert pick_run(table, f"sweeps/x/{a.run_id()}/")["run_id"] == a.run_id()
    with pytest.raises(ConfigError, match="not in the results table"):
        pick_run(table, "nope")


def test_the_table_has_no_duplicate_column():
    """A config field and a metric with the same name would make two columns of one name."""
    from cldst.analysis.results import CONFIG_COLUMNS, METRIC_COLUMNS

    columns = ["run_id", "run_dir", "benchmark", *CONFIG_COLUMNS, *METRIC_COLUMNS]
    assert len(columns) == len(set(columns))


def test_ordered_follows_the_config_for_inits_and_growth_rules():
    assert ordered("growth", ["momentum", "other", "random", "gradient"]) == ["random", "gradient", "momentum", "other"]
    assert ordered("sparse_init", ["ERK", "uniform"]) == ["uniform", "ERK"]
    assert ordered("sparsity", [0.95, 0.8, 0.9]) == [0.8, 0.9, 0.95]


def test_mean_std_text():
    assert mean_std_text(91.0, 1.41421356, 2) == "91.00 ± 1.41"
    assert mean_std_text(91.0, np.nan, 1) == "91.00"
    assert mean_std_text(0.5, 0.3, 3, "+.1f") == "+0.5 ± 0.3"
    assert mean_std_text(np.nan, np.nan, np.nan) == ""


def hand_made_table(frequencies=(10, 10, 10, 10, 10)) -> pd.DataFrame:
    rows = [("b", 0.95, "ERK", "momentum", 70.0), ("b", 0.95, "ERK", "momentum", 72.0),
            ("b", 0.8, "uniform", "random", 80.0), ("b", 0.8, "ERK", "momentum", 90.0),
            ("b", 0.8, "uniform", "momentum", 85.0)]
    return pd.DataFrame([dict(benchmark=b, sparsity=s, sparse_init=i, growth=g, acc=a, update_frequency=f)
                         for (b, s, i, g, a), f in zip(rows, frequencies)])


def test_summary_pivot_on_a_hand_made_table():
    out = acc_summary(hand_made_table())
    assert list(out.index.names) == ["benchmark", "sparsity", "sparse init"]
    assert list(out.index) == [("b", "80 %", "uniform"), ("b", "80 %", "ERK"), ("b", "95 %", "ERK")]
    assert list(out.columns) == ["random", "momentum"]
    assert out.to_numpy().tolist() == [["80.00", "85.00"], ["", "90.00"], ["", "71.00 ± 1.41"]]
    varied = acc_summary(hand_made_table(frequencies=(10, 10, 10, 10, 20)))
    assert list(varied.index.names) == ["benchmark", "sparsity", "update frequency", "sparse init"]
    assert list(varied.index) == [("b", "80 %", 10, "uniform"), ("b", "80 %", 10, "ERK"), ("b", "80 %", 20, "uniform"),
                                  ("b", "95 %", 10, "ERK")]


def test_growth_grid_on_a_hand_made_table():
    stats = cell_stats(hand_made_table(), ["sparse_init", "growth"])
    mean, labels = growth_grid(stats, ["uniform", "ERK"], ["random", "momentum"])
    assert mean.loc["uniform"].tolist() == [80.0, 85.0] and np.isnan(mean.loc["ERK", "random"])
    assert labels.to_numpy().tolist() == [["80.0", "85.0"], ["", "77.3\n± 11.0"]]
