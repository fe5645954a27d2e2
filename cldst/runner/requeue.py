"""The Slurm job's callable, pickled into every queued job: it runs one job and, on Slurm's signal,
checkpoints the run and requeues itself."""

from __future__ import annotations

from cldst.runner.jobs import execute_run
from cldst.runner.stop import request_stop


class RequeueableRun:
    """The Slurm job's callable, checkpointable by submitit: on Slurm's signal before the time limit
    (or a preemption), :meth:`checkpoint` asks the run to checkpoint its current step and stop, then
    returns a submission of itself, which submitit requeues; the requeued job resumes the run."""

    def __init__(self, wait_s: float = 60.0):
        self.wait_s = wait_s

    def __call__(self, job) -> str | None:
        return execute_run(job)

    def checkpoint(self, job):
        from submitit.helpers import DelayedSubmission

        request_stop(job.run_dir, self.wait_s)
        return DelayedSubmission(self, job)
