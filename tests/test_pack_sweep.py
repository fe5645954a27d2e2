"""Sweeps with --pack: grouping by shape-settings, the dry run, packs as local processes and as
Slurm jobs (submitit's local executor), a finished member never rerun."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cldst.cli import main
from cldst.config import ConfigError
from cldst.runner.grids import load_grid
from cldst.runner.slurm import JOBS_FILE, SlurmOptions
from cldst.runner.sweep import run_sweep

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(num_tasks=2, num_classes=4, num_classes_per_task=2, width=0.125, epochs=1, batch_size=64,
            update_frequency=4, device="cpu")
RUN_FILES = ("config.json", "metrics.json", "history.csv", "checkpoint.pt", "progress.json")


@pytest.fixture(autouse=True)
def one_thread_per_process(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def write_grid(folder: Path, grid: dict) -> Path:
    path = folder / "grid.yaml"
    spec = {"base": str(ROOT / "presets" / "split-mnist-smoke.yaml"), "set": TINY, "grid": grid,
            "root": str(folder / "out")}
    path.write_text(json.dumps(spec))
    return path


def finished(root: Path) -> dict[str, int]:
    return {p.parent.name: p.stat().st_mtime_ns for p in root.glob("*/metrics.json")}


def test_dry_run_counts_the_packs(tmp_path, capsys):
    grid = write_grid(tmp_path, {"seed": [0, 1, 2], "batch_size": [32, 64],
                                 "growth": ["gradient", "gradient,momentum"], "val_fraction": [0.1],
                                 "epochs": [2]})
    assert main(["sweep", str(grid), "--dry-run", "--pack", "2"]) == 0
    out = capsys.readouterr().out
    assert "packs of at most 2: 4 runs in 2 packs (2, 2 runs each), 8 alone" in out
    assert "6 runs alone: sparse_init/growth/density with candidates (adaptive) cannot pack" in out


def test_sweep_in_packs_writes_every_run_folder(tmp_path, capsys):
    """Two batch sizes: two packs of 2 (one process each). A rerun skips every finished run."""
    grid = write_grid(tmp_path, {"seed": [0, 1], "batch_size": [32, 64]})
    assert main(["sweep", str(grid), "--pack", "3", "--jobs", "2", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "packs of at most 3: 4 runs in 2 packs (2, 2 runs each), 0 alone" in captured.err
    assert "4 of 4 runs finished" in captured.out
    root = tmp_path / "out"
    before = finished(root)
    assert len(before) == 4
    for run in root.iterdir():
        if run.is_dir() and not run.name.startswith("_"):
            assert all((run / f).is_file() for f in RUN_FILES)
            assert (run / "papermill.log").read_text().startswith("finished in a pack of 2")
    assert main(["sweep", str(grid), "--pack", "3", "--no-progress"]) == 0
    assert "4 already finished, 0 to run" in capsys.readouterr().err
    assert finished(root) == before


@pytest.mark.slow
def test_one_slurm_job_per_pack(tmp_path):
    pytest.importorskip("submitit")
    grid = load_grid(write_grid(tmp_path, {"growth": ["random", "momentum"]}))
    options = SlurmOptions(cluster="local", gpus=0, cpus=1, time_min=10)
    report = run_sweep(grid, executor="slurm", slurm=options, progress=False, pack=2)
    assert report.ok and report.finished == 2
    assert len(finished(tmp_path / "out")) == 2
    jobs = json.loads((tmp_path / "out" / "_submitit" / JOBS_FILE).read_text())
    assert len(jobs) == 2 and len(set(jobs.values())) == 1  # both runs, one job


def test_pack_auto_in_a_sweep(tmp_path, capsys, monkeypatch):
    """--pack auto: on the CPU no packs (said in one line, in the dry run too); with a GPU, packs of
    the size the probe allows (the probe and the runs stood in for: no GPU here)."""
    from cldst.method.pack_memory import PackMemory
    from cldst.runner import pack_probe, sweep
    from cldst.runner.pack import PackJob

    grid = write_grid(tmp_path, {"seed": [0, 1, 2, 3, 4]})
    assert main(["sweep", str(grid), "--dry-run", "--pack", "auto"]) == 0
    assert "--pack auto: 1 (no packs): the runs train on the CPU" in capsys.readouterr().out
    started = []
    monkeypatch.setattr(sweep, "run_local", lambda units, *a, **k: started.append(units))
    lines = []
    run_sweep(load_grid(grid), pack="auto", progress=False, log=lines.append)
    assert len(started[0]) == 5 and not any(isinstance(u, PackJob) for u in started[0])
    assert lines[1].startswith("--pack auto: 1 (no packs): the runs train on the CPU")
    gpu_grid = load_grid(write_grid(tmp_path, {"seed": [0, 1, 2, 3, 4], "device": ["auto"]}))
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match=r"^--pack auto: the memory probe failed on GPU 0 \(the probe measures "
                           r"a GPU's memory, and this run's device is cpu\): give --pack R$"):
            run_sweep(gpu_grid, pack="auto", progress=False, log=lines.append, devices=["0"])  # the real probe
    monkeypatch.setattr(pack_probe, "probe", lambda cfg, device: PackMemory(0, 2 ** 30, 4 * 2 ** 30, 8 * 2 ** 30))
    run_sweep(gpu_grid, pack="auto", progress=False, log=lines.append, devices=["0"])
    assert sorted(len(u.members) if isinstance(u, PackJob) else 1 for u in started[1]) == [2, 3]
    assert "packs of at most 3: 5 runs in 2 packs (3, 2 runs each), 0 alone" in lines
