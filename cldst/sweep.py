"""Sweeps: a grid's validated configs (cldst/grids.py reads the grid file) → one executed copy of
experiment.ipynb per run.

Run k's folder is ``root/<run id>``; it ends up holding config.json, metrics.json, history.csv,
checkpoint.pt and ``experiment.ipynb``, the papermill copy that ran it. A run is finished when its
metrics.json exists: re-running a sweep skips finished runs and resumes the others from their
checkpoint, so a killed sweep loses nothing that had finished.

Executors: ``local`` runs N papermill processes at a time on this machine; ``slurm`` submits one
submitit job per run (a job array) and waits for them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from .config import ConfigError, ExperimentConfig
from .grids import Grid
from .runs import METRICS

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "experiment.ipynb"
RUN_NOTEBOOK = "experiment.ipynb"  # the executed copy, in the run folder
RUN_LOG = "papermill.log"


# ---------------------------------------------------------------------- one run
@dataclass
class RunJob:
    """Everything needed to execute one run's notebook, in plain values (it is pickled for Slurm)."""

    run_id: str
    run_dir: str
    notebook: str
    parameters: dict[str, Any]

    @property
    def output(self) -> Path:
        return Path(self.run_dir) / RUN_NOTEBOOK

    @property
    def finished(self) -> bool:
        return (Path(self.run_dir) / METRICS).is_file()


def make_job(cfg: ExperimentConfig, root: Path, notebook: Path) -> RunJob:
    run_dir = (root / cfg.run_id()).resolve()
    params = cfg.to_dict()
    # Absolute paths: a Slurm job may start elsewhere; data_dir is not part of the run id.
    params["data_dir"] = str(Path(cfg.data_dir).resolve())
    params.update(out_dir=str(run_dir), resume=True, progress=False)
    return RunJob(cfg.run_id(), str(run_dir), str(notebook), params)


def execute_run(job: RunJob) -> str | None:
    """Execute the notebook into the run folder. Returns None, or the run's error as one line."""
    import papermill

    Path(job.run_dir).mkdir(parents=True, exist_ok=True)
    try:
        papermill.execute_notebook(job.notebook, str(job.output), parameters=job.parameters,
                                   progress_bar=False, log_output=False)
    except Exception as e:  # the notebook's error is reported, not raised: other runs go on
        return run_error(job) or one_line(f"{type(e).__name__}: {e}")
    return None if job.finished else "the notebook ended without writing metrics.json"


def run_error(job: RunJob) -> str | None:
    """The first error recorded in the run's executed notebook, as one line."""
    import nbformat

    try:
        nb = nbformat.read(job.output, as_version=4)
    except (OSError, ValueError):
        return None
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                return one_line(f"{out['ename']}: {out['evalue']}")
    return None


def one_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else "unknown error"


# ---------------------------------------------------------------------- executors
@dataclass
class Progress:
    """Counts shown in the sweep's bar, and the failures reported at the end."""

    total: int
    skipped: int
    finished: int = 0
    running: int = 0
    failures: dict[str, str] = field(default_factory=dict)  # run id → error line
    bar: Any = None

    def start(self, show: bool, name: str) -> None:
        self.bar = tqdm(total=self.total, initial=self.skipped, desc=f"sweep {name}", unit="run",
                        disable=not show, dynamic_ncols=True)
        self.refresh()

    def refresh(self, redraw: bool = True) -> None:
        if self.bar is not None:
            counts = {"finished": self.skipped + self.finished, "running": self.running,
                      "failed": len(self.failures)}
            self.bar.set_postfix(counts, refresh=redraw)

    def done(self, job: RunJob, error: str | None) -> None:
        if error is None:
            self.finished += 1
        else:
            self.failures[job.run_id] = error
        self.refresh(redraw=False)
        self.bar.update()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


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


def run_local(jobs: list[RunJob], parallel: int, progress: Progress, devices: list[str] | None = None,
              popen=subprocess.Popen) -> None:
    """N runs at a time, each a `python -m cldst.sweep JOB` process (papermill inside).

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
                log = open(Path(job.run_dir) / RUN_LOG, "wb")
                device = pick_device(devices, [d for _, _, d in running.values()])
                job_env = env if device is None else {**env, "CUDA_VISIBLE_DEVICES": device}
                proc = popen([sys.executable, "-m", "cldst.sweep", json.dumps(vars(job))],
                             stdout=log, stderr=subprocess.STDOUT, env=job_env,
                             start_new_session=True, preexec_fn=die_with_sweep)
                running[proc] = (job, log, device)
                progress.running = len(running)
                progress.refresh()
            time.sleep(0.2)
            for proc in [p for p in running if p.poll() is not None]:
                job, log, _ = running.pop(proc)
                log.close()
                error = None if job.finished else (run_error(job) or _log_error(job, proc.returncode))
                progress.running = len(running)
                progress.done(job, error)
    finally:
        signal.signal(signal.SIGTERM, previous)
        _stop(running)


def _log_error(job: RunJob, returncode: int) -> str:
    log = Path(job.run_dir) / RUN_LOG
    text = log.read_text(errors="replace") if log.is_file() else ""
    lines = [line for line in text.splitlines() if line.strip()]
    return one_line(lines[-1]) if lines else f"the run's process exited with code {returncode}"


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


def run_submitit(jobs: list[RunJob], options: SlurmOptions, folder: Path, progress: Progress,
                 poll_s: float = 5.0) -> None:
    """One submitit job per run, submitted as a job array; waits for all of them."""
    try:
        import submitit

        from .checkpoint import RequeueableRun
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
        futures = [executor.submit(RequeueableRun(), job) for job in jobs]  # cldst/checkpoint.py
    record_jobs(folder, {job.run_id: str(f.job_id) for f, job in zip(futures, jobs)})
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
                progress.done(job, error)
            if waiting:
                time.sleep(poll_s)
    except KeyboardInterrupt:
        ids = " ".join(sorted({str(f.job_id).split("_")[0] for f in waiting}))
        raise ConfigError(f"stopped waiting; the jobs keep running (cancel them with: scancel {ids})") from None


JOBS_FILE = "jobs.json"  # in the submitit folder: run id → Slurm job id, of the latest submission


def record_jobs(folder: Path, job_ids: dict[str, str]) -> None:
    from .runs import atomic_write_json

    path = folder / JOBS_FILE
    known = json.loads(path.read_text()) if path.is_file() else {}
    atomic_write_json(path, {**known, **job_ids})


# ---------------------------------------------------------------------- the sweep
@dataclass
class SweepReport:
    grid: Grid
    total: int
    skipped: int
    finished: int
    failures: list[tuple[str, str, Path]]  # run id, error line, its notebook

    @property
    def ok(self) -> bool:
        return not self.failures


def run_sweep(grid: Grid, executor: str = "local", jobs: int = 1, slurm: SlurmOptions | None = None,
              notebook: str | Path = NOTEBOOK, progress: bool = True, devices: list[str] | None = None,
              log: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> SweepReport:
    """Run every unfinished run of the grid; finished runs (metrics.json present) are skipped."""
    notebook = Path(notebook)
    if not notebook.is_file():
        raise ConfigError(f"notebook {str(notebook)!r} does not exist: run sweeps from a cldst checkout")
    if executor not in ("local", "slurm"):
        raise ConfigError(f"executor={executor!r} is not allowed: expected local or slurm")
    if jobs < 1:
        raise ConfigError(f"jobs={jobs} is not allowed: expected an integer ≥ 1")
    all_jobs = [make_job(cfg, grid.root, notebook) for cfg in grid.configs]
    todo = [j for j in all_jobs if not j.finished]
    skipped = len(all_jobs) - len(todo)
    log(f"sweep {grid.name}: {len(all_jobs)} runs in {grid.root} ({skipped} already finished, "
        f"{len(todo)} to run, executor {executor})")
    counts = Progress(total=len(all_jobs), skipped=skipped)
    counts.start(progress, grid.name)
    try:
        if todo and executor == "local":
            run_local(todo, jobs, counts, devices=devices)
        elif todo:
            run_submitit(todo, slurm or SlurmOptions(), grid.root / "_submitit", counts)
    finally:
        counts.close()
    by_id = {j.run_id: j for j in all_jobs}
    failures = [(rid, err, by_id[rid].output) for rid, err in counts.failures.items()]
    return SweepReport(grid, len(all_jobs), skipped, counts.finished, failures)


if __name__ == "__main__":  # one run, as the local executor starts it: python -m cldst.sweep JOB_JSON
    error = execute_run(RunJob(**json.loads(sys.argv[1])))
    if error:
        print(error, file=sys.stderr)
    sys.exit(1 if error else 0)
