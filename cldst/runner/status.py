"""A sweep's status (``cldst sweep GRID --status``): each run finished, running, queued or failed,
from its folder (metrics.json, progress.json, its executed notebook or log)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from cldst.runner.jobs import NOTEBOOK, log_error, make_job, run_error
from cldst.runner.run_dir import METRICS, PROGRESS, RUN_LOG


@dataclass
class SweepStatus:
    finished: list[str] = field(default_factory=list)
    running: list[tuple[str, dict]] = field(default_factory=list)  # run id, its progress.json
    queued: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # run id, error line

    def lines(self) -> list[str]:
        out = [f"{len(self.finished)} finished, {len(self.running)} running, {len(self.queued)} queued, "
               f"{len(self.failed)} failed"]
        for run_id, p in self.running:
            out.append(f"running {run_id}: {progress_line(p)}")
        for run_id, error in self.failed:
            out.append(f"failed {run_id}: {error}")
        return out


def progress_line(p: dict) -> str:
    if not p:
        return "starting"
    parts = [f"task {p.get('task', '?')}/{p.get('num_tasks', '?')}", f"epoch {p.get('epoch', '?')}/{p.get('epochs', '?')}",
             f"step {p.get('step', '?')}/{p.get('steps_per_task', '?')}"]
    if p.get("loss") is not None:
        parts.append(f"loss {p['loss']:.3f}")
    if p.get("train_acc") is not None:
        parts.append(f"acc {p['train_acc']:.1f}%")
    if p.get("images_per_s"):
        parts.append(f"{p['images_per_s']:.0f} img/s")
    if p.get("eta_s") is not None:
        parts.append(f"ETA {_duration(p['eta_s'])}")
    if p.get("status") == "preempted":
        parts.append("preempted (resumes when rerun)")
    if p.get("updated"):
        parts.append(f"updated {_duration(time.time() - p['updated'])} ago")
    return ", ".join(parts)


def _duration(seconds: float) -> str:
    minutes, s = divmod(int(max(seconds, 0)), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours} h {m:02d} min" if hours else f"{m} min {s:02d} s"


def sweep_status(run_dirs: dict[str, Path], error_of) -> SweepStatus:
    """Each run's state from its folder: finished (metrics.json), failed (``error_of(run_dir)``
    gives an error line: the run's notebook or log recorded an error), running (progress.json or an
    executed notebook, no error), queued (nothing yet)."""
    status = SweepStatus()
    for run_id, path in run_dirs.items():
        path = Path(path)
        if (path / METRICS).is_file():
            status.finished.append(run_id)
            continue
        error = error_of(path)
        progress = read_json(path / PROGRESS)
        if error is not None and progress.get("status") not in ("running", "preempted"):
            status.failed.append((run_id, error))
        elif progress or any(path.glob("*")):
            status.running.append((run_id, progress))
        else:
            status.queued.append(run_id)
    return status


def read_json(path: Path) -> dict:
    """A JSON file's object, or {} if it is missing or half-written."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def grid_status(grid, notebook: str | Path | None = None) -> SweepStatus:
    """Finished, running, queued and failed runs of the grid, from its folder ."""
    notebook = Path(notebook or NOTEBOOK)
    jobs = {j.run_id: j for j in (make_job(cfg, grid.root, notebook) for cfg in grid.configs)}

    def error_of(path: Path) -> str | None:
        job = jobs[path.name]
        if job.output.is_file():
            return run_error(job)
        log = path / RUN_LOG
        if log.is_file() and "Error" in log.read_text(errors="replace"):
            return log_error(job, -1)
        return None

    return sweep_status({rid: Path(j.run_dir) for rid, j in jobs.items()}, error_of)
