"""Watching runs and sweeps: progress.json, `cldst sweep --status`, one GPU per local run, and the
Slurm job's checkpoint-and-requeue callable."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from cldst.cli import main
from cldst.runner.grids import load_grid
from cldst.runner.jobs import RunJob
from cldst.runner.local import pick_device, run_local
from cldst.runner.observers import ProgressFile
from cldst.runner.requeue import RequeueableRun
from cldst.runner.run_dir import PROGRESS, STOP_FILE
from cldst.runner.status import grid_status
from cldst.runner.sweep_bar import SweepBar

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(num_tasks=2, num_classes=4, num_classes_per_task=2, width=0.125, epochs=2, batch_size=64,
            update_frequency=4, device="cpu")


def test_progress_file_is_throttled_but_written_at_every_epoch(tmp_path):
    now = [0.0]
    p = ProgressFile(tmp_path, num_tasks=2, epochs=3, every_s=60, clock=lambda: now[0])
    p.step(0, 0, 1, 30, 2.5, 64, 1.0)  # the first step writes
    first = json.loads((tmp_path / PROGRESS).read_text())
    assert first["task"] == 1 and first["step"] == 1 and first["loss"] == 2.5 and first["status"] == "running"
    assert first["images_per_s"] == 64 and first["eta_s"] == pytest.approx(59.0)  # 29 + 30 steps at 1/s
    now[0] = 30.0
    p.step(0, 0, 2, 30, 1.0, 128, 2.0)  # within a minute: not written
    assert json.loads((tmp_path / PROGRESS).read_text())["step"] == 1
    p.epoch(0, dict(epoch=0, loss=0.5, train_acc=90.0, lr=1e-3, seconds=10.0), 640, 30, 10)
    after = json.loads((tmp_path / PROGRESS).read_text())
    assert (after["epoch"], after["step"], after["train_acc"]) == (1, 10, 90.0)
    p.stopped("finished")
    assert json.loads((tmp_path / PROGRESS).read_text())["status"] == "finished"


def test_pick_device_round_robin():
    assert pick_device([], []) is None
    assert pick_device(["0", "1"], []) == "0"
    assert pick_device(["0", "1"], ["0"]) == "1"
    assert pick_device(["0", "1"], ["0", "1"]) == "0"
    assert pick_device(["2", "3"], ["2", "2", "3"]) == "3"


class FakeProc:
    """A run process that has already exited (run_local's log then reports it as failed)."""

    started: list[dict] = []
    returncode = 1

    def __init__(self, argv, env, **kw):
        FakeProc.started.append(env)

    def poll(self):
        return 1

    def wait(self, timeout=None):
        return 1


def test_local_sweep_gives_each_run_its_own_device(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    FakeProc.started = []
    jobs = [RunJob(f"r{i}", str(tmp_path / f"r{i}"), "nb.ipynb", {}) for i in range(3)]
    counts = SweepBar(total=3, skipped=0)
    counts.start(False, "test")
    run_local(jobs, parallel=2, progress=counts, devices=["0", "1"], popen=FakeProc)
    assert [env["CUDA_VISIBLE_DEVICES"] for env in FakeProc.started] == ["0", "1", "0"]
    assert all(env["OMP_NUM_THREADS"] == "2" for env in FakeProc.started)  # 4 cores, 2 runs at a time
    assert len(counts.failures) == 3
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    FakeProc.started = []
    run_local(jobs[:1], parallel=1, progress=counts, devices=[], popen=FakeProc)  # CPU only: not set
    assert "CUDA_VISIBLE_DEVICES" not in FakeProc.started[0] and FakeProc.started[0]["OMP_NUM_THREADS"] == "4"


def write_error_notebook(path: Path, message: str) -> None:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("run()")
    cell.outputs = [nbformat.v4.new_output("error", ename="ValueError", evalue=message, traceback=[])]
    nb.cells = [cell]
    nbformat.write(nb, path)


def test_sweep_status_counts_each_kind(tmp_path, capsys):
    grid_file = tmp_path / "grid.yaml"
    grid_file.write_text(json.dumps({"base": str(ROOT / "presets" / "split-mnist-smoke.yaml"), "set": TINY,
                                     "grid": {"seed": [0, 1, 2, 3, 4]}, "root": str(tmp_path / "sweep")}))
    grid = load_grid(grid_file)
    dirs = [grid.root / cfg.run_id() for cfg in grid.configs]
    for d in dirs[:4]:
        d.mkdir(parents=True)
    (dirs[0] / "metrics.json").write_text("{}")  # finished
    write_error_notebook(dirs[1] / "experiment.ipynb", "density=2 is not allowed\nmore")  # failed
    (dirs[2] / PROGRESS).write_text(json.dumps(dict(status="running", task=2, num_tasks=2, epoch=1, epochs=2,
                                                    step=30, steps_per_task=24, loss=0.25, train_acc=91.0,
                                                    images_per_s=500.0, eta_s=125.0)))
    write_error_notebook(dirs[3] / "experiment.ipynb", "an old attempt's error")  # rerun: running again
    (dirs[3] / PROGRESS).write_text(json.dumps(dict(status="running")))
    status = grid_status(grid)  # dirs[4]: nothing yet, queued
    assert (len(status.finished), len(status.running), len(status.queued), len(status.failed)) == (1, 2, 1, 1)
    assert status.failed == [(grid.configs[1].run_id(), "ValueError: density=2 is not allowed")]
    assert main(["sweep", str(grid_file), "--status"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "1 finished, 2 running, 1 queued, 1 failed"
    assert any("task 2/2, epoch 1/2, step 30/24, loss 0.250, acc 91.0%, 500 img/s, ETA 2 min 05 s" in line
               for line in out)
    assert f"failed {grid.configs[1].run_id()}: ValueError: density=2 is not allowed" in out


def test_requeueable_run_asks_the_run_to_stop_and_requeues_itself(tmp_path):
    pytest.importorskip("submitit")
    job = RunJob("r", str(tmp_path), "nb.ipynb", {})
    (tmp_path / PROGRESS).write_text(json.dumps({"status": "preempted", "updated": 1e12}))
    call = RequeueableRun(wait_s=5)
    delayed = call.checkpoint(job)
    assert (tmp_path / STOP_FILE).exists()  # what the run polls
    assert delayed.function is call and delayed.args == (job,)
