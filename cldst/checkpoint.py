"""Import shim, to be removed after 2027-06: Slurm jobs queued before cldst's layered layout hold a
pickled ``cldst.checkpoint.RequeueableRun``; it lives in cldst/runner/requeue.py now."""

from cldst.runner.requeue import RequeueableRun  # noqa: F401
