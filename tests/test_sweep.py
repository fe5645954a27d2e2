"""Sweeps: grid files, validation before anything runs, resume after a kill, failed runs, submitit."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cldst.analysis.results import collect_results
from cldst.cli import main
from cldst.config import GROWTHS, INITS, ConfigError
from cldst.runner.grids import expand_grid, load_grid
from cldst.runner.slurm import SlurmOptions
from cldst.runner.sweep import run_sweep

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(num_tasks=2, num_classes=4, num_classes_per_task=2, width=0.125, epochs=2, batch_size=64,
            update_frequency=4, device="cpu")



@pytest.fixture(autouse=True)
def one_thread_per_kernel(monkeypatch):
    """Kernels and runs inherit this: a busy 2-core machine is not oversubscribed."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")

def write_grid(folder: Path, grid: dict | None, fixed: dict | None = None, **extra) -> Path:
    path = folder / "grid.yaml"
    spec = {"base": str(ROOT / "presets" / "split-mnist-smoke.yaml"), "set": {**TINY, **(fixed or {})}}
    if grid is not None:
        spec["grid"] = grid
    path.write_text(json.dumps({**spec, **extra}))  # JSON is YAML
    return path


def test_expand_grid_is_the_cartesian_product():
    runs = expand_grid({"a": 1, "b": 1}, {"b": 2}, {"x": [1, 2], "y": ["p", "q", "r"]})
    assert len(runs) == 6
    assert runs[0] == {"a": 1, "b": 2, "x": 1, "y": "p"} and runs[-1] == {"a": 1, "b": 2, "x": 2, "y": "r"}


SHIPPED_GRIDS = {  # grid file → (runs, dataset, tasks (a set where several), epochs per task)
    "demo-split-mnist": (54, "split-mnist", 5, 3),
    "protocol-ablation": (180, "split-mnist", 5, 2),
    "baselines-split-mnist": (45, "split-mnist", 5, 3),
    "paper-cifar100-5task": (72, "cifar100", 5, 100),
    "paper-cifar100-10task": (72, "cifar100", 10, 100),
    "paper-cifar100-20task": (72, "cifar100", 20, 100),
    "paper-miniimagenet-10task": (72, "miniimagenet", 10, 100),
    "paper-update-frequency": (60, "cifar100", 5, 100),
    "ablation-clean-fixes": (32, "split-mnist", 5, 3),
    "study-tinyimagenet-cpu": (32, "tinyimagenet", 10, 2),
    "study-tinyimagenet-gpu": (72, "tinyimagenet", 10, 100),
    "adaptive-tinyimagenet-cpu": (48, "tinyimagenet", {10, 20}, 2),
    "methods-tinyimagenet-cpu": (26, "tinyimagenet", 10, 2),
    "methods-cifar10-cpu": (34, "cifar10", 5, 2),
}
FEWER_SEEDS = {"ablation-clean-fixes": {0}, "study-tinyimagenet-cpu": {0, 1}, "adaptive-tinyimagenet-cpu": {0, 1},
               "methods-tinyimagenet-cpu": {0, 1}, "methods-cifar10-cpu": {0, 1}}


def test_every_shipped_grid_builds_its_runs():
    assert {p.stem for p in (ROOT / "grids").glob("*.yaml")} == set(SHIPPED_GRIDS)
    for name, (runs, dataset, tasks, epochs) in SHIPPED_GRIDS.items():
        grid = load_grid(ROOT / "grids" / f"{name}.yaml")
        assert len(grid.configs) == runs and len({c.run_id() for c in grid.configs}) == runs, name
        tasks = tasks if isinstance(tasks, set) else {tasks}
        assert {(c.dataset, c.num_tasks, c.epochs) for c in grid.configs} == {(dataset, t, epochs) for t in tasks}, name
        assert {c.num_tasks * c.num_classes_per_task for c in grid.configs} == {c.num_classes for c in grid.configs}
        assert {c.seed for c in grid.configs} == FEWER_SEEDS.get(name, {0, 1, 2}), name
        if name.startswith("paper-") and name != "paper-update-frequency":
            assert grid.root == Path("sweeps") / name
            assert {(c.sparse_init, c.growth, c.density) for c in grid.configs} == \
                {(i, g, d) for i in INITS for g in GROWTHS for d in (0.2, 0.1, 0.05)}


def test_demo_grid_is_a_main_study_and_an_update_frequency_slice():
    demo = load_grid(ROOT / "grids" / "demo-split-mnist.yaml")
    assert demo.root == Path("sweeps/demo-split-mnist")
    assert {(c.width, c.batch_size) for c in demo.configs} == {(0.25, 16)}
    main = [c for c in demo.configs if c.update_frequency == 10]
    assert len(main) == 48
    assert {(c.sparse_init, c.growth, c.density) for c in main} == \
        {(i, g, d) for i in INITS for g in GROWTHS for d in (0.2, 0.05)}
    other = [c for c in demo.configs if c.update_frequency != 10]
    assert len(other) == 6 and {c.update_frequency for c in other} == {40}
    assert {(c.sparse_init, c.growth, c.density) for c in other} == {("ERK", g, 0.2) for g in ("random", "gradient")}


def test_update_frequency_grid_shares_its_runs_at_100_steps_with_the_5task_grid():
    five = load_grid(ROOT / "grids" / "paper-cifar100-5task.yaml")
    freq = load_grid(ROOT / "grids" / "paper-update-frequency.yaml")
    assert freq.root == five.root
    assert {c.update_frequency for c in freq.configs} == {50, 100, 200, 400, 800}
    assert {(c.sparse_init, c.density) for c in freq.configs} == {("ERK", 0.1)}
    shared = {c.run_id() for c in freq.configs} & {c.run_id() for c in five.configs}
    assert shared == {c.run_id() for c in freq.configs if c.update_frequency == 100} and len(shared) == 12


def test_grids_list_holds_several_products(tmp_path):
    path = write_grid(tmp_path, None, {"density": 0.2}, grids=[
        {"grid": {"growth": ["random", "gradient"], "density": [0.2, 0.05]}},
        {"set": {"growth": "random"}, "grid": {"update_frequency": [4, 8], "seed": [0, 1]}},
        {"set": {"seed": 3}},  # one run: base + shared set + the block's set
    ])
    grid = load_grid(path)
    settings = [(c.growth, c.density, c.update_frequency, c.seed) for c in grid.configs]
    # block 2's update_frequency 4, seed 0 is block 1's (random, 0.2) run: kept once
    assert settings == [("random", 0.2, 4, 0), ("random", 0.05, 4, 0), ("gradient", 0.2, 4, 0),
                        ("gradient", 0.05, 4, 0), ("random", 0.2, 4, 1), ("random", 0.2, 8, 0),
                        ("random", 0.2, 8, 1), ("gradient", 0.2, 4, 3)]
    assert {(c.num_tasks, c.width) for c in grid.configs} == {(2, 0.125)}  # the shared set applies to each


def test_blocks_override_the_shared_set(tmp_path):
    path = write_grid(tmp_path, None, {"epochs": 1}, grids=[{"set": {"epochs": 2}}, {"grid": {"seed": [5]}}])
    assert [(c.epochs, c.seed) for c in load_grid(path).configs] == [(2, 0), (1, 5)]


def test_grid_paths_and_root(tmp_path):
    (tmp_path / "presets").mkdir()
    (tmp_path / "presets" / "p.yaml").write_text("dataset: split-mnist\nwidth: 0.125\n")
    grids = tmp_path / "grids"
    grids.mkdir()
    path = grids / "mine.yaml"
    path.write_text("base: ../presets/p.yaml\ngrid:\n  seed: [0, 1]\n")
    grid = load_grid(path)  # base relative to the grid file
    assert [c.width for c in grid.configs] == [0.125, 0.125] and grid.root == Path("sweeps/mine")
    assert load_grid(path, root=tmp_path / "elsewhere").root == tmp_path / "elsewhere"


@pytest.mark.parametrize("grid, message", [
    ({"grid": {"density": [0.2, 1.5]}}, "run 2 of 2 (density=1.5): density=1.5 is not allowed"),
    ({"grid": {"dens": [0.2]}}, "run 1 of 1 (dens=0.2): unknown setting 'dens'"),
    ({"grid": {"density": 0.2}}, "grid.density must be a non-empty list"),
    ({"grld": {"density": [0.2]}}, "unknown key 'grld'"),
    ({"grids": {"density": [0.2]}}, "'grids' must be a non-empty list of blocks"),
    ({"grids": []}, "'grids' must be a non-empty list of blocks"),
    ({"grid": {"seed": [0]}, "grids": [{"grid": {"seed": [1]}}]}, "use either 'grid' (one product) or 'grids'"),
    ({"grids": [{"grid": {"seed": [0]}}, "seed"]}, "grids[2] must be a mapping with 'set' and/or 'grid'"),
    ({"grids": [{}]}, "grids[1] must be a mapping with 'set' and/or 'grid'"),
    ({"grids": [{"grid": {"seed": [0]}, "root": "x"}]}, "grids[1]: unknown key 'root': a block has set, grid"),
    ({"grids": [{"grid": {"seed": [0]}}, {"grid": {"seed": 1}}]}, "grids[2].grid.seed must be a non-empty list"),
    ({"grids": [{"set": [1, 2]}]}, "grids[1].set must be a mapping of setting: value"),
    ({"grids": [{"grid": {"seed": [0]}}, {"set": {"density": 0.2}, "grid": {"growth": ["random", "grow"]}}]},
     "run 3 of 3 (grids[2]: density=0.2, growth='grow'): growth='grow' is not allowed"),
    ({"base": "missing.yaml"}, "does not exist"),
])
def test_a_bad_grid_fails_with_one_line_before_anything_runs(tmp_path, capsys, grid, message):
    path = tmp_path / "bad.yaml"
    path.write_text(json.dumps(grid))
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        load_grid(path)
    assert "\n" not in str(info.value)
    assert main(["sweep", str(path), "--root", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cldst: error: ") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def finished(root: Path) -> dict[str, float]:
    return {p.parent.name: p.stat().st_mtime_ns for p in root.glob("*/metrics.json")}


@pytest.mark.slow
def test_killed_sweep_loses_no_finished_run(tmp_path):
    grid = write_grid(tmp_path, {"density": [0.2, 0.1, 0.05]})
    root = tmp_path / "out"
    cmd = [sys.executable, "-m", "cldst.cli", "sweep", str(grid), "--root", str(root), "--jobs", "1"]
    sweep = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while not finished(root) and time.monotonic() < deadline and sweep.poll() is None:
        time.sleep(0.05)
    assert len(finished(root)) == 1, sweep.communicate()[0].decode()[-2000:]
    sweep.send_signal(signal.SIGTERM)  # while the second run is under way
    assert sweep.wait(timeout=30) == 130
    before = finished(root)
    assert len(before) == 1
    done = next(iter(before))
    notebook_mtime = (root / done / "experiment.ipynb").stat().st_mtime_ns

    rerun = subprocess.run(cmd + ["--no-progress"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "1 already finished, 2 to run" in rerun.stderr
    after = finished(root)
    assert len(after) == 3 and after[done] == before[done]  # the finished run was not redone
    assert (root / done / "experiment.ipynb").stat().st_mtime_ns == notebook_mtime
    table = collect_results(root)
    assert len(table) == 3 and sorted(table["density"]) == [0.05, 0.1, 0.2]


@pytest.mark.slow
def test_a_failed_run_is_reported_and_the_others_finish(tmp_path, capsys):
    empty = tmp_path / "no-data"
    empty.mkdir()
    grid = write_grid(tmp_path, {"dataset": ["split-mnist", "miniimagenet"]}, {"data_dir": str(empty)},
                      root=str(tmp_path / "out"))
    assert main(["sweep", str(grid), "--jobs", "2", "--no-progress"]) == 1
    out = capsys.readouterr().out
    failed = [line for line in out.splitlines() if line.startswith("failed ")]
    assert len(failed) == 1 and failed[0].startswith("failed miniimagenet-")
    assert "DataError: " in failed[0] and "(see " in failed[0]
    notebook = Path(failed[0].rsplit("(see ", 1)[1].rstrip(")"))
    assert notebook.name == "experiment.ipynb" and notebook.is_file()
    assert "1 of 2 runs finished" in out
    assert len(finished(tmp_path / "out")) == 1


@pytest.mark.slow
def test_submitit_local_executor(tmp_path):
    pytest.importorskip("submitit")
    grid = load_grid(write_grid(tmp_path, {"growth": ["random", "momentum"]}), root=tmp_path / "out")
    options = SlurmOptions(cluster="local", gpus=0, cpus=1, time_min=10)
    report = run_sweep(grid, executor="slurm", slurm=options, progress=False)
    assert report.ok and report.finished == 2
    assert len(finished(tmp_path / "out")) == 2
    assert all((tmp_path / "out" / c.run_id() / "experiment.ipynb").is_file() for c in grid.configs)
    # a second sweep submits nothing
    assert run_sweep(grid, executor="slurm", slurm=options, progress=False).skipped == 2


def test_slurm_without_slurm_is_one_line(tmp_path, capsys, monkeypatch):
    pytest.importorskip("submitit")
    monkeypatch.setattr("shutil.which", lambda name: None)
    grid = write_grid(tmp_path, {"seed": [0]}, root=str(tmp_path / "out"))
    assert main(["sweep", str(grid), "--executor", "slurm", "--no-progress"]) == 2
    assert "needs Slurm (no sbatch on this machine)" in capsys.readouterr().err



def test_a_failed_run_points_to_its_notebook_or_its_packs_log(tmp_path):
    """A run alone failed in its executed notebook; a packed run has none, its log says what happened."""
    from cldst.runner.jobs import RunJob
    from cldst.runner.sweep import _failure_file

    job = RunJob("r", str(tmp_path), "experiment.ipynb", {})
    assert _failure_file(job) == tmp_path / "papermill.log"
    job.output.write_text("{}")
    assert _failure_file(job) == job.output
