"""The Slurm executor (submitit): one job per run, submitted as a job array; requeued on a time
limit or a preemption (cldst/runner/requeue.py). With ``--pack R``, one job per pack."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cldst.config import ConfigError
from cldst.runner.jobs import RunJob, one_line
from cldst.runner.requeue import RequeueableRun
from cldst.runner.run_dir import atomic_write_json
from cldst.runner.sweep_bar import SweepBar


@dataclass
class SlurmOptions:
    partition: str | None = None
    account: str | None = None
    time_min: int = 720  # per run
    gpus: int = 1  # per run
    cpus: int = 8  # per run
    mem_gb: int = 32  # per run
    array_parallelism: int = 64  # runs of the job array allowed at once
    cluster: str = "slurm"  # "local": submitit's LocalExecutor (processes on this machine), for tests
    max_requeues: int = 20  # per run: time-limit requeues (preemptions are not counted)
    detach: bool = False  # submit, record the job ids in the sweep folder, and return


def run_submitit(jobs: list, options: SlurmOptions, folder: Path, progress: SweepBar,
                 poll_s: float = 5.0) -> None:
    """One submitit job per run (or per pack: cldst/runner/pack.py), submitted as a job array;
    waits for all of them."""
    try:
        import submitit
    except ImportError:
        raise ConfigError("--executor slurm needs submitit: pip install submitit") from None
    if options.cluster == "slurm" and shutil.which("sbatch") is None:
        raise ConfigError("--executor slurm needs Slurm (no sbatch on this machine): use --executor local")
    executor = submitit.AutoExecutor(folder=folder / "%j", cluster=options.cluster,
                                     slurm_max_num_timeout=options.max_requeues)
    params: dict[str, Any] = dict(name="cldst", timeout_min=options.time_min, cpus_per_task=options.cpus,
                                  gpus_per_node=options.gpus, mem_gb=options.mem_gb,
                                  slurm_array_parallelism=options.array_parallelism)
    if options.partition:
        params["slurm_partition"] = options.partition
    if options.account:
        params["slurm_account"] = options.account
    executor.update_parameters(**params)
    with executor.batch():
        futures = [executor.submit(RequeueableRun(), job) for job in jobs]
    record_jobs(folder, {m.run_id: str(f.job_id) for f, job in zip(futures, jobs) for m in _members(job)})
    if options.detach:
        return
    waiting = dict(zip(futures, jobs))
    progress.running = len(waiting)
    progress.refresh()
    try:
        while waiting:
            for future in [f for f in waiting if f.done()]:
                job = waiting.pop(future)
                try:
                    error = future.result()
                except Exception as e:  # the job itself failed (time limit, node failure, ...)
                    error = one_line(f"job {future.job_id}: {e}")
                progress.running = len(waiting)
                for m in _members(job):  # a pack's job: each member's error
                    progress.done(m, error.get(m.run_id) if isinstance(error, dict) else error)
            if waiting:
                time.sleep(poll_s)
    except KeyboardInterrupt:
        ids = " ".join(sorted({str(f.job_id).split("_")[0] for f in waiting}))
        raise ConfigError(f"stopped waiting; the jobs keep running (cancel them with: scancel {ids})") from None


def _members(job) -> list[RunJob]:
    return getattr(job, "members", [job])


JOBS_FILE = "jobs.json"  # in the submitit folder: run id → Slurm job id, of the latest submission


def record_jobs(folder: Path, job_ids: dict[str, str]) -> None:
    path = folder / JOBS_FILE
    known = json.loads(path.read_text()) if path.is_file() else {}
    atomic_write_json(path, {**known, **job_ids})


