"""Epoch checkpoints, exact mid-task resume, weights_only checkpoints and preemption."""

import itertools
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from cldst import run_experiment
from cldst.method.events import Preempted
from cldst.runner.run_dir import RunDir

KEYS = ("acc_matrix", "acc", "bwt", "forgetting", "capacity", "layer_density", "dead_tasks")


def after_steps(k):
    """A stop request that turns true at the k-th step check."""
    calls = itertools.count(1)
    return lambda: next(calls) >= k


def signal_at(k, sig=signal.SIGUSR1):
    """Sends ``sig`` to this process at the k-th step check (run_experiment's handler then stops it)."""
    calls = itertools.count(1)
    return lambda: next(calls) == k and os.kill(os.getpid(), sig) and False


def cfg2(tiny_cfg, **kw):
    return tiny_cfg(num_tasks=2, num_classes=4, epochs=2, **kw)


def history_rows(path):
    return (path / "history.csv").read_text().splitlines()


# Stop checks of a tiny 2-task, 2-epoch run (12 steps per epoch): after each step but an epoch's
# last (11), at each epoch end (1), after each task (1). Task 1's checks are 26..49.
@pytest.mark.parametrize("overrides, stop_at", [
    (dict(growth="momentum"), 25 + 12 + 5),  # task 1, epoch 1, after batch 5: a mid-epoch checkpoint
    (dict(protocol="reference", growth="unfired"), 25 + 3),  # reference quirks: best epoch, grown-frozen zeros
    (dict(growth="bandit", update_frequency=2), 25 + 12 + 5),  # the bandit's plays and last growth are resumed
])  # the second stops by SIGUSR1 (a signal to this process), the first by the stop argument
@pytest.mark.slow
def test_stop_mid_task_and_resume_is_exact(tiny_cfg, tmp_path, one_thread, overrides, stop_at):
    cfg = cfg2(tiny_cfg, **overrides)
    full = run_experiment(cfg, tmp_path / "full", progress=False, progress_file=False)
    cut = tmp_path / "cut"
    with pytest.raises(Preempted, match="stopped on request"):
        stop = after_steps(stop_at) if overrides.get("protocol") != "reference" else signal_at(stop_at - 1)
        run_experiment(cfg, cut, progress=False, stop=stop)
    saved = RunDir(cut).read_checkpoint()  # weights_only=True
    assert saved["task"]["task"] == 1 and saved["state"]["next_task"] == 1
    assert json.loads((cut / "progress.json").read_text())["status"] == "preempted"
    resumed = run_experiment(cfg, cut, resume=True, progress=False)
    for key in (*KEYS, "growth_choices"):
        assert resumed.get(key) == full.get(key), key
    strip = lambda rows: [",".join(r.split(",")[:-1]) for r in rows]  # noqa: E731  (seconds differ)
    assert strip(history_rows(cut)) == strip(history_rows(tmp_path / "full"))
    assert json.loads((cut / "progress.json").read_text())["status"] == "finished"


@pytest.mark.parametrize("stop_at, where", [(37, (1, 1, 0)), (25, None)])
@pytest.mark.slow
def test_epoch_and_task_boundary_stops(tiny_cfg, tmp_path, one_thread, stop_at, where):
    """Stopped at the end of task 1's first epoch (an epoch checkpoint) or between the tasks: the
    checkpoint and history.csv hold every finished epoch, and resume gives the same final metrics."""
    cfg = cfg2(tiny_cfg)
    out = tmp_path / "run"
    with pytest.raises(Preempted):
        run_experiment(cfg, out, progress=False, stop=after_steps(stop_at))
    saved = RunDir(out).read_checkpoint()
    task = saved.get("task")
    assert (None if task is None else (task["task"], task["epoch"], task["batch"])) == where
    epochs = [r for r in history_rows(out) if r.startswith("epoch,")]
    assert len(epochs) == 2 + (0 if task is None else task["epoch"])
    assert isinstance(saved["state"], dict)
    resumed = run_experiment(cfg, out, resume=True, progress=False)
    full = run_experiment(cfg, tmp_path / "full", progress=False)
    for key in KEYS:
        assert resumed[key] == full[key], key


def test_checkpoints_load_with_weights_only(tiny_cfg, tmp_path, one_thread):
    cfg = tiny_cfg(num_tasks=2, num_classes=4)
    run_experiment(cfg, tmp_path, progress=False)
    torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    p = json.loads((tmp_path / "progress.json").read_text())
    assert p["status"] == "finished" and p["task"] == 2 and p["epoch"] == 1 and p["eta_s"] == 0


CLI = ["run", "--dataset", "split-mnist", "--num_tasks", "2", "--num_classes", "4",
       "--num_classes_per_task", "2", "--sparse_init", "ERK", "--growth", "random", "--density", "0.2",
       "--epochs", "2", "--update_frequency", "4", "--width", "0.125", "--batch_size", "64",
       "--device", "cpu", "--no-progress"]


# `cldst run` (cldst.cli's main) in a process whose run, once its first checkpoint exists, waits at
# its next stop check until a stop signal has come (at most 120 s): the signal always arrives
# mid-run, however fast or slow the machine. Only the waiting is added; the handler is the run's own.
HOLD_AFTER_FIRST_CHECKPOINT = """
import sys, time
from pathlib import Path
from cldst.runner import stop

checkpoint = Path(sys.argv[1]) / "checkpoint.pt"
check = stop.StopRequest.__call__

def held(self):
    deadline = time.monotonic() + 120
    while self.reason is None and checkpoint.is_file() and time.monotonic() < deadline:
        time.sleep(0.01)  # the signal handler sets self.reason
    return check(self)

stop.StopRequest.__call__ = held
from cldst.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.slow
def test_sigterm_checkpoints_and_exits_0_then_resume_is_exact(tmp_path, one_thread):
    """A `cldst run` process gets SIGTERM once its first checkpoint exists (the run is held there
    until it does): exit code 0, no metrics.json; `--resume` then gives the uninterrupted run's metrics.
    Both processes compute with one thread (OMP_NUM_THREADS=1, one_thread): the same float sums."""
    sig = signal.SIGTERM
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-c", HOLD_AFTER_FIRST_CHECKPOINT, str(out), *CLI, "--out", str(out)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / "checkpoint.pt").is_file():
        if proc.poll() is not None:
            pytest.fail(f"the run exited ({proc.returncode}) before its first checkpoint: {proc.communicate()[1]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no checkpoint after 120 s: {proc.communicate()[1]}")
        time.sleep(0.05)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert "stopped on request" in stderr, stderr
    assert not (out / "metrics.json").exists()
    assert json.loads((out / "progress.json").read_text())["status"] == "preempted"
    from cldst.cli import main

    assert main([*CLI, "--out", str(out), "--resume"]) == 0
    assert main([*CLI, "--out", str(tmp_path / "full")]) == 0
    a = json.loads((out / "metrics.json").read_text())
    b = json.loads((tmp_path / "full" / "metrics.json").read_text())
    for key in KEYS:
        assert a[key] == b[key], key
