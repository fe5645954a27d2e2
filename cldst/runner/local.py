"""The local executor: N runs at a time, each a process on this machine, spread over its GPUs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from cldst.runner.jobs import RunJob, log_error, run_error
from cldst.runner.run_dir import RUN_LOG
from cldst.runner.sweep_bar import SweepBar


def _parent_death_signal() -> Callable[[], None] | None:
    """Linux: a function for the child (between fork and exec) that makes it get SIGTERM when the
    sweep dies, even by SIGKILL. Resolved here, so the child only calls it (no imports after fork)."""
    try:
        import ctypes

        prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def visible_gpus() -> list[str]:
    """The GPUs this machine's runs may use: CUDA_VISIBLE_DEVICES if set, else torch's count."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d.strip() for d in visible.split(",") if d.strip() and d.strip() != "-1"]
    try:
        import torch
    except ImportError:
        return []
    return [str(i) for i in range(torch.cuda.device_count())]


def pick_device(devices: list[str], running: list[str | None]) -> str | None:
    """The device for the next run: the first of ``devices`` with the fewest runs on it (round robin
    when there are more runs than devices); None without devices."""
    if not devices:
        return None
    return min(devices, key=lambda d: (running.count(d), devices.index(d)))


def run_local(jobs: list, parallel: int, progress: SweepBar, devices: list[str] | None = None,
              popen=subprocess.Popen) -> None:
    """N runs at a time, each a `python -m cldst.runner.jobs JOB` process (papermill inside), or
    packs (cldst/runner/pack.py's PackJob, `python -m cldst.runner.pack`), N packs at a time.

    With GPUs (``devices``, default: every visible one), each run sees one of them
    (CUDA_VISIBLE_DEVICES), spread evenly; the CPU's cores are split among the N runs."""
    env = dict(os.environ)
    threads = str(max(1, (os.cpu_count() or 1) // parallel))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # N runs share the cores instead of fighting
        env.setdefault(var, threads)
    devices = visible_gpus() if devices is None else devices
    pending, running = list(jobs), {}
    die_with_sweep = _parent_death_signal()
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        while pending or running:
            while pending and len(running) < parallel:
                job = pending.pop(0)
                Path(job.run_dir).mkdir(parents=True, exist_ok=True)
                log = open(Path(job.run_dir) / (RUN_LOG if isinstance(job, RunJob) else "pack.log"), "wb")
                device = pick_device(devices, [d for _, _, d in running.values()])
                job_env = env if device is None else {**env, "CUDA_VISIBLE_DEVICES": device}
                command = ([sys.executable, "-m", "cldst.runner.jobs", json.dumps(vars(job))]
                           if isinstance(job, RunJob) else job.command())
                proc = popen(command,
                             stdout=log, stderr=subprocess.STDOUT, env=job_env,
                             start_new_session=True, preexec_fn=die_with_sweep)
                running[proc] = (job, log, device)
                progress.running = len(running)
                progress.refresh()
            time.sleep(0.2)
            for proc in [p for p in running if p.poll() is not None]:
                job, log, _ = running.pop(proc)
                log.close()
                progress.running = len(running)
                if not isinstance(job, RunJob):  # a pack (cldst/runner/pack.py): each member counts
                    errors = job.errors(proc.returncode)
                    for member in job.members:
                        progress.done(member, errors[member.run_id])
                    continue
                error = None if job.finished else (run_error(job) or log_error(job, proc.returncode))
                progress.done(job, error)
    finally:
        signal.signal(signal.SIGTERM, previous)
        _stop(running)


def _stop(running: dict) -> None:
    """Stop unfinished runs: SIGINT lets papermill shut its kernel down; SIGKILL after 10 s."""
    for proc in running:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    deadline = time.monotonic() + 10
    for proc, (_, log, _) in running.items():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


