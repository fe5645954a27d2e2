"""Sweeps: grid files, validation before anything runs, resume after a kill, failed runs, submitit."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cldst.cli import main
from cldst.config import ConfigError
from cldst.results import collect_results
from cldst.sweep import SlurmOptions, expand_grid, load_grid, run_sweep

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(num_tasks=2, num_classes=4, num_classes_per_task=2, width=0.125, epochs=2, batch_size=64,
            update_frequency=4, device="cpu")



@pytest.fixture(autouse=True)
def one_thread_per_kernel(monkeypatch):
    """Kernels and runs inherit this: a busy 2-core machine is not oversubscribed."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")

def write_grid(folder: Path, grid: dict, fixed: dict | None = None, **extra) -> Path:
    path = folder / "grid.yaml"
    path.write_text(json.dumps({"base": str(ROOT / "presets" / "split-mnist-smoke.yaml"),
                                "set": {**TINY, **(fixed or {})}, "grid": grid, **extra}))  # JSON is YAML
    return path


def test_expand_grid_is_the_cartesian_product():
    runs = expand_grid({"a": 1, "b": 1}, {"b": 2}, {"x": [1, 2], "y": ["p", "q", "r"]})
    assert len(runs) == 6
    assert runs[0] == {"a": 1, "b": 2, "x": 1, "y": "p"} and runs[-1] == {"a": 1, "b": 2, "x": 2, "y": "r"}


def test_shipped_grids():
    demo = load_grid(ROOT / "grids" / "demo-split-mnist.yaml")
    assert len(demo.configs) == 32 and demo.root == Path("sweeps/demo-split-mnist")
    assert {c.density for c in demo.configs} == {0.2, 0.05}
    assert {(c.dataset, c.num_tasks, c.width, c.epochs) for c in demo.configs} == {("split-mnist", 5, 0.25, 3)}
    paper = load_grid(ROOT / "grids" / "paper-cifar100.yaml")
    assert len(paper.configs) == 72 and len({c.run_id() for c in paper.configs}) == 72
    assert {(c.dataset, c.num_tasks, c.epochs) for c in paper.configs} == {("cifar100", 5, 100)}


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
    ({"grids": {"density": [0.2]}}, "unknown key 'grids'"),
    ({"base": "missing.yaml"}, "does not exist"),
])
def test_a_bad_grid_fails_with_one_line_before_anything_runs(tmp_path, capsys, grid, message):
    path = tmp_path / "bad.yaml"
    path.write_text(json.dumps(grid))
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        load_grid(path)
    assert "\n" not in str(info.value)
    assert main(["sweep", str(path), "--root", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cldst: error: ") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def finished(root: Path) -> dict[str, float]:
    return {p.parent.name: p.stat().st_mtime_ns for p in root.glob("*/metrics.json")}


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


def test_a_failed_run_is_reported_and_the_others_finish(tmp_path, capsys):
    empty = tmp_path / "no-data"
    empty.mkdir()
    grid = write_grid(tmp_path, {"dataset": ["split-mnist", "miniimagenet"]}, {"data_dir": str(empty)},
                      root=str(tmp_path / "out"))
    assert main(["sweep", str(grid), "--jobs", "2", "--no-progress"]) == 1
    out = capsys.readouterr().out
    failed = [line for line in out.splitlines() if line.startswith("failed ")]
    assert len(failed) == 1 and failed[0].startswith("failed miniimagenet-")
    assert "DataError: " in failed[0] and "(notebook " in failed[0]
    notebook = Path(failed[0].rsplit("(notebook ", 1)[1].rstrip(")"))
    assert notebook.name == "experiment.ipynb" and notebook.is_file()
    assert "1 of 2 runs finished" in out
    assert len(finished(tmp_path / "out")) == 1


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

