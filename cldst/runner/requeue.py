"""The Slurm job's callable, pickled into every queued job: it runs one job and, on Slurm's signal,
checkpoints the run and requeues itself."""

from __future__ import annotations

from cldst.runner.jobs import execute_run
from cldst.runner.stop import request_stop


class RequeueableRun:
    """The Slurm job's callable (one run, or one pack of runs), checkpointable by submitit: on Slurm's signal before the time limit
    (or a preemption), :meth:`checkpoint` asks the run to checkpoint its current step and stop, then
    returns a submission of itself, which submitit requeues; the requeued job resumes the run."""

    def __init__(self, wait_s: float = 60.0):
        self.wait_s = wait_s

    def __call__(self, job) -> str | None | dict[str, str | None]:
        if hasattr(job, "execute"):  # a pack (cldst/runner/pack.py): each member's error, or None
            return job.execute()
        return execute_run(job)

    def checkpoint(self, job):
        from submitit.helpers import DelayedSubmission

        if hasattr(job, "request_stop"):  # a pack: every member
            job.request_stop(self.wait_s)
        else:
            request_stop(job.run_dir, self.wait_s)
        return DelayedSubmission(self, job)
