"""The method: the backbone, sparse masks and DST rules, per-task isolation, the task trainer, the
learner that runs the task loop, evaluation, and what a run measures (metrics, FLOPs, reuse).
It computes and emits events; it writes no files."""
