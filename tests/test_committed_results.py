"""The committed results tables measure the method: every task of every run learned clearly above
chance, the runs are exactly the grid's, and isolation left nothing forgotten."""

import json
from pathlib import Path

import pytest

from cldst.grids import load_grid
from cldst.results import read_results

ROOT = Path(__file__).resolve().parents[1]

# table → (its grid, the least accuracy every task must reach right after training it, in %)
TABLES = {
    "figures/demo-split-mnist/results.csv": ("grids/demo-split-mnist.yaml", 65.0),  # 2-class tasks: chance 50
    "figures/study-tinyimagenet-cpu/results.csv": ("grids/study-tinyimagenet-cpu.yaml", 15.0),  # 10-class: chance 10
}


@pytest.fixture(params=sorted(TABLES), ids=lambda p: Path(p).parent.name)
def table(request):
    path = ROOT / request.param
    return read_results(path), *TABLES[request.param]


def test_the_table_holds_exactly_the_grids_runs(table):
    results, grid_file, _ = table
    grid = load_grid(ROOT / grid_file)
    assert sorted(results["run_id"]) == sorted(cfg.run_id() for cfg in grid.configs)


def test_every_task_of_every_run_learned(table):
    results, _, least = table
    for run_id, matrix in zip(results["run_id"], results["acc_matrix"], strict=True):
        a = json.loads(matrix) if isinstance(matrix, str) else matrix
        diagonal = [a[j][j] for j in range(len(a))]
        assert min(diagonal) >= least, f"{run_id}: a task stayed near chance, A[j][j] = {diagonal}"


def test_no_dead_task_and_nothing_forgotten(table):
    results, _, _ = table
    assert all(json.loads(d) == [] if isinstance(d, str) else list(d) == [] for d in results["dead_tasks"])
    assert (results["bwt"] == 0).all() and (results["forgetting"] == 0).all()
