"""Sweeps: a grid's validated configs (cldst/runner/grids.py reads the grid file) → one executed copy
of experiment.ipynb per run (cldst/runner/jobs.py).

Re-running a sweep skips finished runs (metrics.json present) and resumes the others from their
checkpoint, so a killed sweep loses nothing that had finished. Executors: ``local`` runs N
processes at a time on this machine (cldst/runner/local.py); ``slurm`` submits one submitit job
per run (cldst/runner/slurm.py).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cldst.config import ConfigError
from cldst.runner.grids import Grid
from cldst.runner.jobs import NOTEBOOK, RunJob, make_job
from cldst.runner.kernel import check_kernel
from cldst.runner.local import run_local, visible_gpus
from cldst.runner.run_dir import RUN_LOG
from cldst.runner.slurm import SlurmOptions, run_submitit
from cldst.runner.sweep_bar import SweepBar


@dataclass
class SweepReport:
    grid: Grid
    total: int
    skipped: int
    finished: int
    failures: list[tuple[str, str, Path]]  # run id, error line, where to read more (see _failure_file)

    @property
    def ok(self) -> bool:
        return not self.failures


def run_sweep(grid: Grid, executor: str = "local", jobs: int = 1, slurm: SlurmOptions | None = None,
              notebook: str | Path = NOTEBOOK, progress: bool = True, devices: list[str] | None = None,
              log: Callable[[str], None] = lambda s: print(s, file=sys.stderr), pack: int | str = 1) -> SweepReport:
    """Run every unfinished run of the grid; finished runs (metrics.json present) are skipped.
    ``pack`` > 1: runs that share every shape-setting train in packs of at most ``pack`` runs, each
    pack one process (cldst/runner/pack.py; ``jobs`` packs at a time, one Slurm job per pack);
    "auto": the largest that fits on the GPU, measured (cldst/runner/pack_probe.py; 1 on the CPU)."""
    notebook = Path(notebook)
    if not notebook.is_file():
        raise ConfigError(f"notebook {str(notebook)!r} does not exist: run sweeps from a cldst checkout")
    if executor not in ("local", "slurm"):
        raise ConfigError(f"executor={executor!r} is not allowed: expected local or slurm")
    if jobs < 1:
        raise ConfigError(f"jobs={jobs} is not allowed: expected an integer ≥ 1")
    if pack != "auto" and not (isinstance(pack, int) and pack >= 1):
        raise ConfigError(f"pack={pack!r} is not allowed: expected an integer ≥ 1 or auto")
    check_kernel()  # one line now, instead of the same line for every run
    all_jobs = [make_job(cfg, grid.root, notebook) for cfg in grid.configs]
    todo = [j for j in all_jobs if not j.finished]
    skipped = len(all_jobs) - len(todo)
    log(f"sweep {grid.name}: {len(all_jobs)} runs in {grid.root} ({skipped} already finished, "
        f"{len(todo)} to run, executor {executor})")
    units: list = todo
    if pack == "auto":
        from cldst.runner.pack_probe import choose_pack_size  # torch: only where packs are made

        by_id = {j.run_id: cfg for j, cfg in zip(all_jobs, grid.configs)}
        pack = choose_pack_size([by_id[j.run_id] for j in todo], executor=executor, jobs=jobs,
                                devices=visible_gpus() if devices is None else devices, log=log) if todo else 1
    if pack > 1:
        from cldst.runner.pack import make_packs, pack_summary  # torch: only where packs are made

        cfg_of = {j.run_id: cfg for j, cfg in zip(all_jobs, grid.configs)}
        units, refused = make_packs(todo, [cfg_of[j.run_id] for j in todo], pack)
        log(pack_summary(units, pack, refused))
    counts = SweepBar(total=len(all_jobs), skipped=skipped)
    counts.start(progress, grid.name)
    try:
        if todo and executor == "local":
            run_local(units, jobs, counts, devices=devices)
        elif todo:
            run_submitit(units, slurm or SlurmOptions(), grid.root / "_submitit", counts)
    finally:
        counts.close()
    by_id = {j.run_id: j for j in all_jobs}
    failures = [(rid, err, _failure_file(by_id[rid])) for rid, err in counts.failures.items()]
    return SweepReport(grid, len(all_jobs), skipped, counts.finished, failures)


def _failure_file(job: RunJob) -> Path:
    """The run's executed notebook; a packed run has none, its log says what its pack did."""
    output = Path(job.output)
    return output if output.exists() else Path(job.run_dir) / RUN_LOG

