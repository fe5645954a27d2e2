"""One run of a sweep as a job: its folder, its notebook's parameters, and executing it (papermill).

Run k's folder is ``root/<run id>``; it ends up holding config.json, metrics.json, history.csv,
checkpoint.pt and ``experiment.ipynb``, the papermill copy that ran it. A run is finished when its
metrics.json exists.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cldst.config import ExperimentConfig
from cldst.runner import kernel
from cldst.runner.run_dir import METRICS, RUN_LOG, RUN_NOTEBOOK

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "experiment.ipynb"


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
    """Execute the notebook into the run folder. Returns None, or the run's error as one line.

    The kernel is this Python's, whatever kernelspecs are registered (cldst/runner/kernel.py)."""
    try:
        kernel.check_kernel()
    except kernel.KernelError as e:  # before papermill: not an older notebook's error
        return str(e)
    Path(job.run_dir).mkdir(parents=True, exist_ok=True)
    try:
        kernel.execute_notebook(job.notebook, job.output, parameters=job.parameters,
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



def log_error(job: RunJob, returncode: int) -> str:
    log = Path(job.run_dir) / RUN_LOG
    text = log.read_text(errors="replace") if log.is_file() else ""
    lines = [line for line in text.splitlines() if line.strip()]
    return one_line(lines[-1]) if lines else f"the run's process exited with code {returncode}"




if __name__ == "__main__":  # one run, as the local executor starts it: python -m cldst.runner.jobs JOB_JSON
    error = execute_run(RunJob(**json.loads(sys.argv[1])))
    if error:
        print(error, file=sys.stderr)
    sys.exit(1 if error else 0)
