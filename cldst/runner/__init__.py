"""Running experiments: the run folder, provenance, stop and resume, observers that write what the
learner emits (history, checkpoints, progress, TensorBoard), one experiment, grids, local and Slurm
execution, sweeps, their status and cost estimate."""
