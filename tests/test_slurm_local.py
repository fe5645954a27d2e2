"""The Slurm path end to end on submitit's LocalExecutor: a sweep's run gets the preemption signal
mid-task, checkpoints, requeues itself, and finishes with the metrics of an uninterrupted run.

How submitit 1.5.4's local executor simulates Slurm's signal: its controller process
(``python -m submitit.local._local``) starts the task (``python -m submitit.core._submit``, here
papermill running the run's notebook in a kernel) and, shortly before the time limit, forwards
``LocalJobEnvironment._usr_sig()`` (SIGUSR2) to the task (``Controller.wait``/``_forward_signal``).
The task's ``SignalHandler.checkpoint_and_try_requeue`` calls ``RequeueableRun.checkpoint``, dumps
the DelayedSubmission it returns, and exits with ``LOCAL_REQUEUE_RETURN_CODE`` (144); the
controller then starts the task again (``Controller.run``), which loads that submission.

The test sends the controller's signal to the task itself, once the run is under way: the
controller sends it ``signal_delay_s`` (30, which AutoExecutor does not let one change) before
``timeout_min`` (a whole number through AutoExecutor), so at 30 s at the earliest, and again after
each requeue; and ``LocalJob._interrupt()`` sends it to the controller, which has no handler for it
and dies of it, leaving the task running, never signalled.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest

from cldst import run_experiment
from cldst.runner import jobs, sweep
from cldst.runner.grids import load_grid
from cldst.runner.run_dir import PROGRESS, RunDir
from cldst.runner.slurm import JOBS_FILE, SlurmOptions
from cldst.runner.status import read_json
from cldst.runner.sweep import run_sweep

ROOT = Path(__file__).resolve().parents[1]
# 2 tasks of 6 epochs: ~5 s of training on one core, well past the 2 s in which a run sees a STOP file
TINY = dict(num_tasks=2, num_classes=4, num_classes_per_task=2, width=0.125, epochs=6, batch_size=64,
            update_frequency=4, device="cpu")
KEYS = ("acc_matrix", "acc", "bwt", "forgetting", "capacity", "layer_density", "dead_tasks")

pytestmark = [pytest.mark.slow,  # submitit, papermill, subprocesses
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc for the job's task")]


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (name)": state, ppid, ...
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def wait_for(condition, what: str, timeout_s: float = 120.0, poll_s: float = 0.05):
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(poll_s)


def training_notebook(path: Path) -> Path:
    """experiment.ipynb's parameters cell and its run, without the tables and figures after it (whose
    imports and drawing would double the two executions' time): what the job executes is the same."""
    shipped = nbformat.read(jobs.NOTEBOOK, as_version=4)
    (parameters,) = [c for c in shipped.cells if "parameters" in c.metadata.get("tags", [])]
    nb = nbformat.v4.new_notebook(metadata=shipped.metadata)
    nb.cells = [
        nbformat.v4.new_code_cell("from typing import Optional\n\nfrom cldst import notebook, run_experiment\n\n"
                                  "notebook.setup()"),
        parameters,
        nbformat.v4.new_code_cell("cfg = notebook.config_from_parameters(globals())\n"
                                  "run_dir = notebook.run_directory(cfg, out_dir)\n"
                                  "metrics = run_experiment(cfg, run_dir, resume=resume, progress=progress)"),
    ]
    nbformat.write(nb, path)
    return path


def history_rows(run_dir: Path) -> list[str]:
    rows = (run_dir / "history.csv").read_text().splitlines()
    return [",".join(r.split(",")[:-1]) for r in rows]  # the last column is seconds


def test_sweep_run_preempted_on_local_executor_requeues_and_matches_an_uninterrupted_run(
        tmp_path, monkeypatch, one_thread):
    pytest.importorskip("submitit")
    from submitit.core.utils import DelayedSubmission
    from submitit.local.local import LocalJobEnvironment

    from cldst.runner.requeue import RequeueableRun
    from cldst.runner.run_dir import STOP_FILE

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the kernel's torch: as this process's (one_thread)
    monkeypatch.setattr(sweep, "run_submitit", functools.partial(sweep.run_submitit, poll_s=0.2))
    grid_file = tmp_path / "grid.yaml"
    grid_file.write_text(json.dumps({"base": str(ROOT / "presets" / "split-mnist-smoke.yaml"), "set": TINY,
                                     "grid": {"seed": [0]}}))
    grid = load_grid(grid_file, root=tmp_path / "out")
    (cfg,) = grid.configs
    run_dir = grid.root / cfg.run_id()
    # time_min=60: the controller's own signal would come after 59.5 minutes, and submitit counts
    # a signal in the first 48 minutes as a preemption (no time-limit requeue used up)
    options = SlurmOptions(cluster="local", gpus=0, cpus=1, time_min=60)
    notebook = training_notebook(tmp_path / "experiment.ipynb")

    pool = ThreadPoolExecutor(1)
    sweeping = pool.submit(run_sweep, grid, executor="slurm", slurm=options, notebook=notebook, progress=False,
                           log=lambda s: None)
    controller = None
    try:
        wait_for(lambda: sweeping.done() or read_json(run_dir / PROGRESS).get("status") == "running",
                 "the run's first step")
        if sweeping.done():
            pytest.fail(f"the sweep ended before the run's first step: {sweeping.result().failures}")
        controller = int(read_json(grid.root / "_submitit" / JOBS_FILE)[cfg.run_id()])  # a LocalJob's id: its pid
        tasks = children(controller)
        assert len(tasks) == 1, tasks  # python -m submitit.core._submit (papermill's kernel is its child)
        signalled = time.time()
        os.kill(tasks[0], LocalJobEnvironment._usr_sig())  # what Controller.wait forwards before the limit

        stopped = wait_for(lambda: read_json(run_dir / PROGRESS).get("status") in ("preempted", "finished")
                           and read_json(run_dir / PROGRESS), "the run to checkpoint and stop")
        assert stopped["status"] == "preempted", "the run finished before it saw the stop request"
        saved = RunDir(run_dir).read_checkpoint()  # the interrupted job's checkpoint (weights_only)
        assert (run_dir / "checkpoint.pt").stat().st_mtime >= signalled - 1
        assert saved["state"]["next_task"] < cfg.num_tasks and not (run_dir / "metrics.json").exists()
        before = (run_dir / "history.csv").read_text().splitlines()
        assert any(row.startswith("epoch,0,") for row in before), before  # epochs done before the stop
        # the uninterrupted run, in this process while the job starts again
        full = run_experiment(cfg, tmp_path / "full", progress=False, progress_file=False)
        report = sweeping.result(timeout=120)
    finally:
        if controller is not None and not sweeping.done():  # a failure above: end the job's processes
            for pid in children(controller) + [controller]:  # the task, then its controller
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        pool.shutdown(wait=True)

    # submitit requeued the job: the same job id ran twice, the second time from checkpoint()'s submission
    assert report.ok and report.finished == 1, report.failures
    job_folder = grid.root / "_submitit" / str(controller)
    log = "".join((job_folder / f"{controller}_0_log.{kind}").read_text() for kind in ("out", "err"))
    assert log.count("Starting with JobEnvironment") == 2, log
    assert "Caught signal SIGUSR2" in log and "this job is preempted" in log, log
    assert "Calling checkpoint method" in log and f"Requeued job {controller}" in log, log
    assert log.count("Job completed successfully") == 1, log
    resubmitted = DelayedSubmission.load(job_folder / f"{controller}_submitted.pkl")
    assert isinstance(resubmitted.function, RequeueableRun) and resubmitted.args[0].run_dir == str(run_dir)

    # the requeued job resumed the checkpoint (the epochs before it, with their seconds, are kept)
    # and finished exactly as the uninterrupted run
    assert (run_dir / "history.csv").read_text().splitlines()[:len(before)] == before
    assert read_json(run_dir / PROGRESS)["status"] == "finished" and not (run_dir / STOP_FILE).exists()
    requeued = RunDir(run_dir).read_metrics()
    assert requeued["acc_matrix"] == json.loads(json.dumps(full["acc_matrix"]))
    for key in KEYS:
        assert requeued[key] == json.loads(json.dumps(full[key])), key
    assert history_rows(run_dir) == history_rows(tmp_path / "full")
